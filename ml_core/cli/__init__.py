"""The ``bfe`` command line: one subcommand per pipeline step, options from ``ml_core.config``.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``; a subcommand's parser sets
``func(args) -> int``. User errors are printed without a traceback and exit with status 2; Ctrl-C
and SIGTERM cancel (partial outputs removed) with status 130 and 143; anything unexpected is one
line (``BFE_DEBUG=1`` shows the traceback) with status 1. GDAL warnings are not printed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import math
import os
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import MISSING, fields, replace
from typing import Optional

from ml_core.config import JobSpec, PredictOptions, TrainOptions
from ml_core.errors import BfeError, Cancelled, OutputError

COMMAND_MODULES = ("ml_core.cli.geo", "ml_core.cli.train", "ml_core.cli.demo", "ml_core.cli.osm")


def csv_list(kind: type):
    """An argparse type for comma-separated values, e.g. ``--bands 1,2,3``."""
    return lambda text: [kind(v) for v in text.split(",") if v]


def _csv_tuple(text: str) -> tuple[float, ...]:
    """A per-class option, e.g. ``--lace-prior 0.9,0.1``."""
    return tuple(csv_list(float)(text))


def finite_float(text: str) -> float:
    """An argparse type: a finite number (NaN and infinity pass every range check otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def bounded_int(low: int):
    """An argparse type: a whole number of at least ``low``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value
    parse.__name__ = "int"  # argparse names the type in "invalid int value"
    return parse


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
        kind = finite_float if kind is float else kind
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


@contextlib.contextmanager
def _quiet_gdal() -> Iterator[None]:
    """GDAL prints warnings ("Warning 1: ...") itself; bfe reports what matters as messages."""
    from osgeo import gdal

    quiet = not os.environ.get("BFE_DEBUG")
    if quiet:
        gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        yield
    finally:
        if quiet:
            gdal.PopErrorHandler()


def _hide_close_errors(hook):
    """A GDAL dataset closed by garbage collection after a failed write raises where nothing
    can catch it; the write itself already reported that failure as one message."""
    def unraisable(info) -> None:
        if isinstance(info.exc_value, RuntimeError) and "delete_" in repr(info.object):
            return
        hook(info)
    return unraisable


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``bfe`` command."""
    from ml_core.cli.train import on_start_up

    # Ctrl-C and SIGTERM alike: noted during start-up, then they cancel (outputs cleaned up)
    previous = {s: signal.signal(s, on_start_up) for s in (signal.SIGINT, signal.SIGTERM)}
    hook, sys.unraisablehook = sys.unraisablehook, _hide_close_errors(sys.unraisablehook)
    try:
        return _run(argv)
    finally:
        gc.collect()  # datasets of a failed write, kept by reference cycles, close here
        for s, h in previous.items():
            signal.signal(s, h)
        sys.unraisablehook = hook


def _run(argv: Optional[Sequence[str]]) -> int:
    from ml_core.cli.train import last_signal, started

    try:
        args = build_parser().parse_args(argv)
        started()
        with _quiet_gdal():
            return int(args.func(args) or 0)
    except (Cancelled, KeyboardInterrupt):
        print("bfe: cancelled; unfinished outputs were removed.", file=sys.stderr)
        return 128 + last_signal()
    except BfeError as exc:
        print(f"bfe: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bfe: error: {OutputError(f'{exc.filename or exc}: {exc.strerror or exc}')}",
              file=sys.stderr)
        return 2
    except MemoryError:
        print("bfe: error: out of memory; use a smaller --tile-size, --batch-size or "
              "--crop-size.", file=sys.stderr)
        return 2
    except Exception as exc:  # the last resort: one line, never a traceback
        if os.environ.get("BFE_DEBUG"):
            traceback.print_exc()
        print(f"bfe: unexpected error (please report it): {type(exc).__name__}: {exc}. "
              "BFE_DEBUG=1 shows the details.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
