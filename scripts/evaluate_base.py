"""Choose a trained base model's thresholds on its held-out blocks, score it on areas it never
saw, and write both into its card.

Run from the repository root after ``scripts/train_base.py`` (same ``--seed``):
    python scripts/evaluate_base.py build/base/base_unet.safetensors \
        --out ml_core/models/base_unet.safetensors

1. Thresholds: the training areas are read again exactly as ``train_base.py`` read them, the same
   spatial blocks are held out (same seed), and the threshold policy (``object_f1``,
   ``ml_core.learn.threshold``) chooses the building and seed thresholds there.
2. Held-out areas, each predicted at its own pixel size (``bfe predict`` then ``bfe extract``,
   defaults): pixel Dice of the footprints and one-to-one object precision, recall and F1 at
   IoU >= 0.5 against all its buildings that the imagery shows (``bfe evaluate``; those mostly
   off it are counted in ``truth_off_imagery``).

``--resample-to M`` predicts every held-out area at M metres instead (the alternative to native
prediction, for the comparison the card reports); ``--keep-thresholds`` skips step 1 and keeps
the card's thresholds; ``--areas`` scores only some areas. These write ``--json`` and leave the
card alone unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from train_base import area_regions, training_sources  # noqa: E402

from ml_core.config import ExtractOptions, TrainOptions  # noqa: E402
from ml_core.evaluate.metrics import evaluate  # noqa: E402
from ml_core.infer.extract import extract_footprints, seed_pixels  # noqa: E402
from ml_core.infer.in_memory import predict_batches  # noqa: E402
from ml_core.infer.predict import predict_raster  # noqa: E402
from ml_core.learn.dataset import split_blocks, val_crops  # noqa: E402
from ml_core.learn.modelfile import LoadedModel, load_model, save_model  # noqa: E402
from ml_core.learn.threshold import choose_thresholds  # noqa: E402

HELD_OUT = {  # name: (raster, buildings, kind)
    "kampala_z19_0.3m": ("hotosm/kampala/kampala_z19.tif",
                         "hotosm/kampala/kampala_buildings.gpkg", "drone"),
    "kampala_z20_0.15m": ("hotosm/kampala/kampala_z20.tif",
                          "hotosm/kampala/kampala_buildings.gpkg", "drone"),
    "dhaka_z19_0.3m": ("extra/dhaka_oam/dhaka_z19.tif",
                       "extra/dhaka_oam/dhaka_buildings.gpkg", "drone, very dense"),
    "atlanta_spacenet_0.5m": (
        "spacenet_atlanta/SN4_buildings_train_AOI_6_Atlanta_nadir10_catid_1030010003993E00"
        "_PS-RGBNIR_732701_3729639_clipped.tif",
        "spacenet_atlanta/SN4_buildings_train_AOI_6_Atlanta_geojson_buildings_732701_3729639"
        ".geojson", "satellite"),
}


def held_out_thresholds(loaded: LoadedModel, data: Path, seed: int, tmp: Path):
    """The policy's thresholds on the training run's own held-out blocks (read at the model's
    one pixel size when it was trained at one, ``train_base.py --fixed-gsd``)."""
    options = TrainOptions(val_fraction=0.1, seed=seed)
    fixed_gsd = None if loaded.card.gsd_range_m else loaded.card.gsd_m
    regions = []
    for raster, buildings in training_sources(data):
        regions += area_regions(raster, buildings, tmp, fixed_gsd)[0]
    split = split_blocks(regions, options.crop_size // 2, options.val_fraction, seed)
    val = val_crops(split, options.crop_size)
    bands = predict_batches(loaded.net, np.stack([v[0] for v in val]), torch.device("cpu"), 8)
    min_seed = seed_pixels(ExtractOptions().min_seed_m2, loaded.card.gsd_m)
    return choose_thresholds(bands, np.stack([v[1] for v in val]), "object_f1", min_seed), len(val)


def score_area(model: Path, data: Path, raster: str, buildings: str, tmp: Path) -> dict:
    """Base model alone on one area at its own pixel size: pixel Dice and object figures."""
    prob = predict_raster(data / raster, model, tmp / "prob.tif",
                          bands=[1, 2, 3] if "RGBNIR" in raster else None)
    footprints = extract_footprints(prob, tmp / "footprints.gpkg").path
    result = evaluate(footprints, data / buildings, raster=data / raster)
    obj, pix = result["object"], result["pixel"]
    return {"pixel_dice": round(pix["dice"], 4),
            **{k: round(obj[k], 4) for k in ("precision", "recall", "f1", "mean_iou",
                                              "merged_share", "split_share")},
            "n_pred": obj["n_pred"], "n_truth": obj["n_truth"],
            "truth_off_imagery": obj["truth_off_imagery"], "errors": obj["errors"]}


def resampled(model: Path, gsd_m: float, tmp: Path) -> Path:
    """A copy of ``model`` whose card has one pixel size, ``gsd_m``: every raster is resampled
    to it for prediction."""
    loaded = load_model(model)
    out = tmp / "resampled.safetensors"
    save_model(out, loaded.net, replace(loaded.card, gsd_m=gsd_m, gsd_range_m=None))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="model with the card written")
    parser.add_argument("--json", type=Path, default=None, help="the held-out figures")
    parser.add_argument("--resample-to", type=float, default=None, metavar="M")
    parser.add_argument("--keep-thresholds", action="store_true")
    parser.add_argument("--areas", nargs="+", choices=list(HELD_OUT), default=list(HELD_OUT))
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--training", default=None,
                        help="how the model was trained when it took several runs (for the card)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bfe_eval_") as tmp:
        loaded = load_model(args.model)
        card = loaded.card
        if not args.keep_thresholds:
            thresholds, n_val = held_out_thresholds(loaded, args.data, args.seed, Path(tmp))
            print(f"thresholds on {n_val} held-out crops: {thresholds}", flush=True)
            card = replace(card, threshold=thresholds.building, seed_threshold=thresholds.seed)
        chosen = Path(tmp) / "chosen.safetensors"
        save_model(chosen, loaded.net, card)
        if args.resample_to:
            chosen = resampled(chosen, args.resample_to, Path(tmp))
        held = {}
        for name in args.areas:
            raster, buildings, kind = HELD_OUT[name]
            held[name] = {"kind": kind, **score_area(chosen, args.data, raster, buildings,
                                                     Path(tmp))}
            print(name, held[name], flush=True)
    metrics = {**card.metrics, **({"training": args.training} if args.training else {}),
               "threshold_policy": "object_f1", "held_out": held,
               "evaluate": "python scripts/evaluate_base.py MODEL --out OUT"}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(args.model), "thresholds": [
            card.threshold, card.seed_threshold], "resample_to_m": args.resample_to,
            "held_out": held}, indent=1))
    if args.out:
        save_model(args.out, loaded.net, replace(card, metrics=metrics))
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
