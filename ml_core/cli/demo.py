"""``bfe demo``: the shipped-sample demo run by ``make demo``."""

from __future__ import annotations

import argparse

from ml_core.cli import job_from_args
from ml_core.cli.train import TRAIN_SECTIONS, ProgressBar, add_train_args, ctrl_c_cancels

DEMO_MINUTES = 3.0  # fine-tuning budget of the demo, so that it ends in about five minutes


def _cmd_demo(args: argparse.Namespace) -> int:
    from ml_core.demo import describe, run_demo

    with ctrl_c_cancels() as cancel:
        scores = run_demo(args.output, args.fraction, args.drop_seed,
                          job_from_args(args, TRAIN_SECTIONS), base=args.base,
                          progress=ProgressBar(), cancel=cancel, raster=args.raster,
                          buildings=args.buildings)
    print(describe(scores, args.output))
    return 0


def register(subparsers) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser("demo", help="Drop half the sample's buildings, fine-tune, "
                                           "recover them and score the result.")
    p.add_argument("-o", "--output", default="out/demo", help="Output folder.")
    p.add_argument("--fraction", type=float, default=0.5, help="Share of buildings to drop.")
    p.add_argument("--drop-seed", type=int, default=0, help="Seed of the drop.")
    p.add_argument("--raster", default=None, help="Another raster (default: the sample).")
    p.add_argument("--buildings", default=None,
                   help="Its complete building layer, to drop from and score against.")
    add_train_args(p)
    p.set_defaults(func=_cmd_demo, minutes=DEMO_MINUTES)
