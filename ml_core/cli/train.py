"""``bfe finetune``, ``bfe run`` and ``bfe experiment``: training front ends with a progress bar."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Optional

from ml_core.cli import add_options, csv_list, job_from_args
from ml_core.config import ExtractOptions, LossOptions, RasterizeOptions, TrainOptions
from ml_core.errors import Cancelled
from ml_core.events import CancelToken, ProgressEvent


class ProgressBar:
    """Renders progress events as one refreshing line on stderr (plain lines when not a TTY)."""

    def __init__(self, stream=None, width: int = 24, min_interval: float = 0.2) -> None:
        self.stream = stream or sys.stderr  # looked up now: sys.stderr may have been replaced
        self.width = width
        self.min_interval = min_interval
        self._last = 0.0
        self._tty = self.stream.isatty()

    def __call__(self, ev: ProgressEvent) -> None:
        now = time.monotonic()
        final = ev.stage == "validate" or ev.fraction >= 1.0
        if not final and now - self._last < (self.min_interval if self._tty else 5.0):
            return
        self._last = now
        filled = round(self.width * min(max(ev.fraction, 0.0), 1.0))
        parts = [f"{ev.stage:<8}", "[" + "#" * filled + "-" * (self.width - filled) + "]",
                 f"{100 * ev.fraction:5.1f}%", ev.message]
        if ev.loss is not None:
            parts.append(f"loss {ev.loss:.3f}")
        if ev.val_dice is not None:
            parts.append(f"val Dice {ev.val_dice:.3f}")
        if ev.eta_s is not None:
            parts.append(f"ETA {int(ev.eta_s) // 60}:{int(ev.eta_s) % 60:02d}")
        if ev.device:
            parts.append(ev.device)
        line = " ".join(p for p in parts if p)
        end = "\n" if (final or not self._tty) else ""
        self.stream.write(("\r" + line.ljust(110) if self._tty else line) + end)
        self.stream.flush()


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received = [signal.SIGINT]  # the signal that cancelled the last command (its exit status)


def last_signal() -> int:
    """The signal behind the last cancellation (SIGINT unless a SIGTERM came)."""
    return int(_received[-1])


_pending: list = []  # a signal received while bfe started up, not acted on yet


def interrupt(signum: int, _frame) -> None:
    """Outside a cancellable step, SIGTERM interrupts like Ctrl-C (``finally`` blocks clean up)."""
    _received[:] = [signum]
    raise KeyboardInterrupt


def on_start_up(signum: int, _frame) -> None:
    """While bfe starts (imports torch and GDAL), a signal is noted and acted on once that is
    done: an import interrupted half-way can leave a module broken or swallow the interrupt.
    A second signal interrupts at once."""
    _received[:] = [signum]
    if _pending:
        raise KeyboardInterrupt
    _pending.append(signum)


def started() -> None:
    """Start-up is over: a signal noted meanwhile cancels now; later ones interrupt."""
    for s in _SIGNALS:
        signal.signal(s, interrupt)
    if _pending:
        _pending.clear()
        raise Cancelled("Cancelled by the user.")


@contextlib.contextmanager
def ctrl_c_cancels() -> Iterator[CancelToken]:
    """A cancel token set by Ctrl-C or SIGTERM while the block runs (training stops within
    ~2 s, unfinished outputs are removed); a second signal interrupts at once."""
    token = CancelToken()

    def handler(signum, _frame) -> None:
        _received[:] = [signum]
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()

    previous = {s: signal.signal(s, handler) for s in _SIGNALS}
    try:
        yield token
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _base_arg(value: str) -> Optional[str]:
    return None if value.lower() in ("none", "scratch", "") else value


TRAIN_SECTIONS = (RasterizeOptions, TrainOptions, LossOptions)  # what a training command sets


def add_train_args(p: argparse.ArgumentParser) -> None:
    """``--base``, ``--bands`` and the options of ``TRAIN_SECTIONS``."""
    from ml_core.learn.losses import LOSSES
    from ml_core.learn.train import DEFAULT_BASE

    p.add_argument("--base", type=_base_arg, default=str(DEFAULT_BASE),
                   help="Model to start from; 'none' trains from scratch (default: shipped base).")
    p.add_argument("--bands", type=csv_list(int), default=None,
                   help="Comma-separated 1-based bands (default: the base model's, else RGB).")
    add_options(p, RasterizeOptions)
    add_options(p, TrainOptions, choices={"loss": tuple(LOSSES)})
    add_options(p, LossOptions)


def _cmd_finetune(args: argparse.Namespace) -> int:
    from ml_core.learn.train import finetune

    job = job_from_args(args, TRAIN_SECTIONS)
    with ctrl_c_cancels() as cancel:
        result = finetune(args.raster, args.buildings or None, args.output, job.train,
                          base=args.base, bands=args.bands, mask=args.mask,
                          progress=ProgressBar(), cancel=cancel, resume=args.resume,
                          rasterize=job.rasterize, loss_options=job.loss)
    print(f"Model written to {result.model_path}: {result.describe()}; threshold "
          f"{result.threshold}.")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from ml_core.learn.modelfile import check_model
    from ml_core.pipeline import run

    if args.base is not None:
        check_model(args.base)  # before labels.tif is written

    with ctrl_c_cancels() as cancel:
        report = run(args.raster, args.buildings, args.output,
                     job_from_args(args, (*TRAIN_SECTIONS, ExtractOptions)), base=args.base,
                     bands=args.bands, progress=ProgressBar(), cancel=cancel)
    print(json.dumps(report["summary"], indent=2))
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    from ml_core.evaluate.experiment import ExperimentConfig, run_experiment, tabulate

    if args.merge:
        print("\n".join(str(p) for p in tabulate(args.merge, args.out)))
        return 0
    overrides = {k: tuple(v) if isinstance(v, list) else v for k in
                 ("losses", "missing", "minutes", "seeds") if (v := getattr(args, k)) is not None}
    config = replace(ExperimentConfig.preset(args.quick), **overrides)
    train = {k: v for k in ("epochs", "ignore_confident") if (v := getattr(args, k)) is not None}
    config = replace(config, train=replace(config.train, **train))
    with ctrl_c_cancels() as cancel:
        paths = run_experiment(args.data, args.out, config, base=args.base,
                               progress=ProgressBar(), cancel=cancel)
    print("\n".join(str(p) for p in paths))
    return 0


def register(subparsers) -> None:
    """Add the ``finetune``, ``run`` and ``experiment`` subcommands."""
    from ml_core.learn.train import DEFAULT_BASE

    p = subparsers.add_parser("finetune", help="Fine-tune a model on a raster and OSM buildings.")
    p.add_argument("raster")
    p.add_argument("buildings", nargs="*", help="Building polygon file(s); omit with --mask.")
    p.add_argument("-o", "--output", required=True, help="Output model (.safetensors).")
    p.add_argument("--mask", help="Ready label mask (1 building, 0 background, 255 unknown).")
    p.add_argument("--resume", action="store_true", help="Continue from the last checkpoint.")
    add_train_args(p)
    p.set_defaults(func=_cmd_finetune)

    p = subparsers.add_parser("run", help="Rasterise, fine-tune and extract in one go "
                                          "(no arguments: the shipped sample).")
    p.add_argument("raster", nargs="?")
    p.add_argument("buildings", nargs="?")
    p.add_argument("-o", "--output", default="bfe_output", help="Output folder.")
    add_train_args(p)
    add_options(p, ExtractOptions)
    p.set_defaults(func=_cmd_run)

    p = subparsers.add_parser("experiment", help="Reproduce the letter's Table I on real data.")
    p.add_argument("--data", default=None, help="Shared data folder (default: ../shared/data).")
    p.add_argument("--losses", type=csv_list(str), default=None, help="Comma-separated loss names.")
    p.add_argument("--missing", type=csv_list(float), default=None,
                   help="Missing rates, e.g. 0,0.5.")
    p.add_argument("--minutes", type=float, default=None,
                   help="Training minutes per run (default: an epoch budget).")
    p.add_argument("--epochs", type=int, default=None, help="Training epochs per run.")
    p.add_argument("--ignore-confident", type=float, default=None,
                   help="Train every loss with this ignore_confident (default: off).")
    p.add_argument("--seeds", type=csv_list(int), default=None, help="Seeds, e.g. 0,1.")
    p.add_argument("--quick", action="store_true", help="Small preset finishing in < 10 min.")
    p.add_argument("--base", type=_base_arg, default=str(DEFAULT_BASE),
                   help="Start model ('none': from scratch, as in the letter; default: the "
                        "shipped base, which never saw Kampala).")
    p.add_argument("--merge", nargs="+", metavar="CSV", default=None,
                   help="Train nothing: merge these results.csv files (e.g. grids run with other "
                        "seeds) into one table and chart in --out.")
    p.add_argument("--out", default="experiment_out", help="Output folder.")
    p.set_defaults(func=_cmd_experiment)
