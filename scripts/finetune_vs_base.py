"""Does fine-tuning on complete labels end worse than its base model? Find out, and why.

Each condition fine-tunes the shipped base model on one raster with *all* its buildings (no
label dropped) for the same number of epochs, with ``keep_start`` on so that the base model
itself is scored on the same held-out blocks as epoch 0. Conditions change one candidate cause
at a time: validation blocks cleaned by ``ignore_confident`` (the default 0.5, or off), the
learning rate, and BatchNorm statistics (frozen, the default, or learnt). Printed and written
as JSON: the held-out pixel Dice (best over the building thresholds) of the base (epoch 0), of
the best epoch and of the last epoch.

    python scripts/finetune_vs_base.py --epochs 4 \
        --json docs/experiments/finetune_start/sample.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml_core.config import TrainOptions  # noqa: E402
from ml_core.learn.train import finetune  # noqa: E402
from ml_core.pipeline import SAMPLE_BUILDINGS, SAMPLE_RASTER  # noqa: E402

CONDITIONS = {
    "default": {},
    "val_not_cleaned": {"ignore_confident": 0.0},
    "lr_x0.1": {"ignore_confident": 0.0, "lr": 2e-4},
    "bn_learnt": {"ignore_confident": 0.0, "freeze_bn": False},
}


def run(raster: Path, buildings: Path, epochs: int, names: list[str]) -> dict:
    """Held-out Dice of the base, best and last epoch for each condition."""
    out = {}
    for name in names:
        options = TrainOptions(epochs=epochs, minutes=None, keep_start=True, patience=1000,
                               **CONDITIONS[name])
        with tempfile.TemporaryDirectory(prefix="bfe_ftvb_") as tmp:
            result = finetune(raster, buildings, Path(tmp) / "m.safetensors", options)
        dice = [h["val_dice"] for h in result.history]
        out[name] = {"base": dice[0], "best": max(dice[1:]), "last": dice[-1],
                     "best_epoch": result.best_epoch, "epochs": result.epochs_run,
                     "options": CONDITIONS[name], "history": dice}
        print(name, {k: v for k, v in out[name].items() if k != "history"}, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raster", type=Path, default=SAMPLE_RASTER)
    parser.add_argument("--buildings", type=Path, default=SAMPLE_BUILDINGS)
    parser.add_argument("--epochs", type=int, default=4,
                        help="epochs of the default 25 steps (no time budget: deterministic)")
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS),
                        choices=list(CONDITIONS))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = {"raster": str(args.raster), "buildings": str(args.buildings),
              "epochs": args.epochs, "conditions": run(args.raster, args.buildings,
                                                       args.epochs, args.conditions)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
