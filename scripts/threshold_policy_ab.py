"""The object threshold policy with and without the unknown-touching rule, on one trained model.

A ``bfe demo`` output folder holds the fine-tuned model, its probability raster and the label
mask it trained on. This script rebuilds that fine-tune's held-out crops exactly as
``ml_core.learn.train.finetune`` did (same blocks, ``ignore_confident`` by the base model),
chooses the building and seed thresholds there twice -- with today's rule (a prediction that
touches unknown pixels and overlaps no labelled building is not judged) and with the old one
(judged once more than half of it lies on labelled pixels) -- then extracts the probability
raster with each pair and scores both as the demo does. The model and the probability raster are
the same in both: only the thresholds differ. Nothing is tuned on the scored buildings.

    python scripts/threshold_policy_ab.py OUT_OF_BFE_DEMO --seed S [--raster R --buildings B]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml_core.config import ExtractOptions, TrainOptions  # noqa: E402
from ml_core.demo import score_demo  # noqa: E402
from ml_core.infer.extract import extract_footprints  # noqa: E402
from ml_core.infer.in_memory import predict_batches  # noqa: E402
from ml_core.io import raster as gdalio  # noqa: E402
from ml_core.learn import threshold  # noqa: E402
from ml_core.learn.confident import ignore_confident  # noqa: E402
from ml_core.learn.dataset import load_regions, split_blocks, val_crops  # noqa: E402
from ml_core.learn.modelfile import load_model  # noqa: E402
from ml_core.learn.train import DEFAULT_BASE  # noqa: E402
from ml_core.pipeline import SAMPLE_BUILDINGS, SAMPLE_RASTER  # noqa: E402


def held_out(run: Path, raster: Path, base: Path, seed: int
             ) -> tuple[np.ndarray, np.ndarray, tuple[int, float]]:
    """(probability bands, masks, smallest seed and building in pixels) of the run's held-out
    crops (``seed``: the demo's ``--seed``, which placed them)."""
    model = load_model(run / "model.safetensors")
    card, options = model.card, TrainOptions(seed=seed)
    ds = gdalio.open_raster(raster)
    mean, std = gdalio.band_statistics(ds, card.bands)
    regions = load_regions(raster, run / "labels.tif", card.bands, card.gsd_m, mean, std,
                           num_classes=model.net.num_classes)
    split = split_blocks(regions, options.crop_size // 2, options.val_fraction, options.seed)
    ignore_confident(load_model(base).net, split, options.ignore_confident, torch.device("cpu"),
                     validation=options.clean_validation)
    val = val_crops(split, options.crop_size)
    bands = predict_batches(model.net, np.stack([v[0] for v in val]), torch.device("cpu"), 8)
    return bands, np.stack([v[1] for v in val]), threshold.extraction_sizes(card.gsd_m)


def demo_run_arguments(description: str) -> argparse.ArgumentParser:
    """The options of a script that reads one ``bfe demo`` output (also
    ``threshold_vs_truth.py``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run", type=Path, help="a bfe demo output folder")
    parser.add_argument("--raster", type=Path, default=SAMPLE_RASTER)
    parser.add_argument("--buildings", type=Path, default=SAMPLE_BUILDINGS)
    parser.add_argument("--base", type=Path, default=DEFAULT_BASE)
    parser.add_argument("--seed", type=int, default=0, help="the demo's --seed")
    parser.add_argument("--json", type=Path, default=None)
    return parser


def main() -> None:
    args = demo_run_arguments(__doc__.splitlines()[0]).parse_args()
    bands, masks, sizes = held_out(args.run, args.raster, args.base, args.seed)
    chosen = {"unknown_touching_not_judged": threshold.choose_thresholds(
        bands, masks, "object_f1", *sizes)}
    today = threshold.unjudged_predictions
    threshold.unjudged_predictions = lambda pred, truth, valid: pred  # the old rule
    try:
        chosen["judged_when_half_labelled"] = threshold.choose_thresholds(
            bands, masks, "object_f1", *sizes)
    finally:
        threshold.unjudged_predictions = today
    kept = f"{args.run / 'partial_buildings.gpkg'}|layername=buildings"
    result = {"run": str(args.run), "held_out_crops": len(masks)}
    for name, t in chosen.items():
        folder = args.run / f"policy_{name}"
        folder.mkdir(exist_ok=True)
        shutil.copy(args.run / "partial_buildings.gpkg", folder / "partial_buildings.gpkg")
        extract_footprints(args.run / "probability.tif", folder / "footprints.gpkg",
                           ExtractOptions(threshold=t.building, seed_threshold=t.seed),
                           existing=kept)
        scores = score_demo(args.raster, args.buildings, folder, 0.0)
        result[name] = {"thresholds": [t.building, t.seed],
                        "new_vs_dropped": scores["new_vs_dropped"],
                        "footprints_vs_buildings": scores["footprints_vs_buildings"]}
        print(name, json.dumps(result[name]), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
