"""The ``bfe`` command line: one subcommand per pipeline step, options from ``ml_core.config``.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``; a subcommand's parser sets
``func(args) -> int``. User errors are printed without a traceback and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import MISSING, fields, replace
from typing import Optional

from ml_core.config import JobSpec, PredictOptions, TrainOptions
from ml_core.errors import BfeError, Cancelled

COMMAND_MODULES = ("ml_core.cli.geo", "ml_core.cli.train", "ml_core.cli.demo")


def csv_list(kind: type):
    """An argparse type for comma-separated values, e.g. ``--bands 1,2,3``."""
    return lambda text: [kind(v) for v in text.split(",") if v]


def _csv_tuple(text: str) -> tuple[float, ...]:
    """A per-class option, e.g. ``--lace-prior 0.9,0.1``."""
    return tuple(csv_list(float)(text))


def add_options(parser: argparse.ArgumentParser, options_cls: type, skip: Sequence[str] = (),
                choices: Optional[dict] = None) -> None:
    """Add one ``--flag`` per field of an options dataclass, with its default and help.

    ``choices`` gives the allowed values of fields whose list lives in a registry (e.g. losses).
    """
    for f in fields(options_cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        help_text = f"{f.metadata.get('help', '')} (default: {default})".replace("%", "%%")
        if isinstance(default, bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
            continue
        allowed = (choices or {}).get(f.name, f.metadata.get("choices"))
        kind = type(default) if default is not None else float  # None defaults are floats
        kind = _csv_tuple if f.metadata.get("per_class") else kind
        parser.add_argument(flag, type=kind, default=default, choices=allowed, help=help_text)


def options_from_args(args: argparse.Namespace, options_cls: type):
    """Build an options dataclass from parsed arguments added by :func:`add_options`."""
    return options_cls(
        **{f.name: getattr(args, f.name) for f in fields(options_cls) if hasattr(args, f.name)}
    )


def job_from_args(args: argparse.Namespace, sections: Sequence[type]) -> JobSpec:
    """The :class:`JobSpec` of a command: ``sections`` (options classes) from the arguments,
    the others by default; prediction runs on the training device."""
    job = JobSpec.from_sections([options_from_args(args, cls) for cls in sections])
    if TrainOptions in sections and PredictOptions not in sections:
        job = replace(job, predict=replace(job.predict, device=job.train.device))
    return job


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bfe", description="Building footprints from incomplete OSM labels."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``bfe`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Cancelled:
        print("bfe: cancelled.", file=sys.stderr)
        return 130
    except BfeError as exc:
        print(f"bfe: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
