"""Choose a trained base model's thresholds on its held-out blocks, score it on areas it never
saw, and write both into its card.

Run from the repository root after ``scripts/train_base.py``:
    python scripts/evaluate_base.py build/base/base_unet.safetensors \
        --out ml_core/models/base_unet.safetensors

1. Thresholds: the training areas are read again exactly as ``train_base.py`` read them, the same
   spatial blocks are held out (the seed and left-out areas of the command in the model's card),
   and the threshold policy (``object_f1``, ``ml_core.learn.threshold``) chooses the building
   and seed thresholds there.
2. Held-out areas, each predicted at its own pixel size (``bfe predict`` then ``bfe extract``,
   defaults): pixel Dice of the footprints and one-to-one object precision, recall and F1 at
   IoU >= 0.5 against all its buildings that the imagery shows (``bfe evaluate``; those mostly
   off it are counted in ``truth_off_imagery``). The Cox's Bazar satellite chips are scored as
   one more area, their counts pooled over the chips, when the run left them out
   (``train_base.py --leave-out extra/coxsbazar_ramp``).

``--resample-to M`` predicts every held-out area at M metres instead (the alternative to native
prediction, for the comparison the card reports); ``--keep-thresholds`` skips step 1 and keeps
the card's thresholds; ``--areas`` scores only some areas. These write ``--json`` and leave the
card alone unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from train_base import SATELLITE_CHIPS, area_regions, command_line, training_sources  # noqa: E402

from ml_core.config import TrainOptions  # noqa: E402
from ml_core.evaluate.metrics import evaluate, pixel_metrics_from_counts  # noqa: E402
from ml_core.infer.extract import extract_footprints  # noqa: E402
from ml_core.infer.in_memory import predict_batches  # noqa: E402
from ml_core.infer.predict import predict_raster  # noqa: E402
from ml_core.learn.dataset import split_blocks, val_crops  # noqa: E402
from ml_core.learn.modelfile import LoadedModel, load_model, save_model  # noqa: E402
from ml_core.learn.threshold import choose_thresholds, extraction_sizes  # noqa: E402

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
CHIPS_AREA = "coxsbazar_chips_0.43m"  # scored only when left out of training


def training_run(card) -> argparse.Namespace:
    """The options of the ``train_base.py`` command recorded in ``card`` (its seed says which
    blocks were held out; ``leave_out`` which areas it never saw)."""
    words = shlex.split(card.command or "")
    return command_line().parse_args(words[2:] if len(words) > 2 else [])


def held_out_thresholds(loaded: LoadedModel, data: Path, run: argparse.Namespace, tmp: Path):
    """The policy's thresholds on the training run's own held-out blocks (read at the model's
    one pixel size when it was trained at one, ``train_base.py --fixed-gsd``)."""
    options = TrainOptions(val_fraction=0.1, seed=run.seed)
    fixed_gsd = None if loaded.card.gsd_range_m else loaded.card.gsd_m
    regions = []
    for raster, buildings in training_sources(data, tuple(run.leave_out)):
        regions += area_regions(raster, buildings, tmp, fixed_gsd)[0]
    split = split_blocks(regions, options.crop_size // 2, options.val_fraction, run.seed)
    val = val_crops(split, options.crop_size)
    bands = predict_batches(loaded.net, np.stack([v[0] for v in val]), torch.device("cpu"), 8)
    return choose_thresholds(bands, np.stack([v[1] for v in val]), "object_f1",
                             *extraction_sizes(loaded.card.gsd_m)), len(val)


def area_figures(model: Path, raster: Path, buildings: Path, tmp: Path) -> dict:
    """``bfe predict`` then ``bfe extract`` (defaults) on one raster at its own pixel size, then
    ``bfe evaluate``'s pixel and object figures against ``buildings``."""
    prob = predict_raster(raster, model, tmp / "prob.tif",
                          bands=[1, 2, 3] if "RGBNIR" in raster.name else None)
    footprints = extract_footprints(prob, tmp / "footprints.gpkg").path
    return evaluate(footprints, buildings, raster=raster)


def summarise(pixel: dict, obj: dict) -> dict:
    """The card's figures of one area from its pixel counts and object figures."""
    return {"pixel_dice": round(pixel["dice"], 4),
            **{k: round(obj[k], 4) for k in ("precision", "recall", "f1", "mean_iou",
                                              "merged_share", "split_share")},
            "n_pred": obj["n_pred"], "n_truth": obj["n_truth"],
            "truth_off_imagery": obj["truth_off_imagery"], "errors": obj["errors"]}


def score_area(model: Path, data: Path, raster: str, buildings: str, tmp: Path) -> dict:
    """Base model alone on one area at its own pixel size: pixel Dice and object figures."""
    result = area_figures(model, data / raster, data / buildings, tmp)
    return summarise(result["pixel"], result["object"])


def score_chips(model: Path, data: Path, tmp: Path) -> dict:
    """Base model alone on every labelled satellite chip, each at its own pixel size, with the
    counts pooled over the chips (one chip holds a few buildings; alone it says little)."""
    pixel, obj, merged, split, iou = Counter(), Counter(), 0.0, 0.0, 0.0
    errors: dict = {}
    for raster, buildings in training_sources(data):
        if SATELLITE_CHIPS not in str(raster):
            continue
        result = area_figures(model, raster, buildings, tmp)
        o = result["object"]
        pixel.update({k: result["pixel"][k] for k in ("tp", "fp", "fn")})
        obj.update({k: o[k] for k in ("matched", "n_pred", "n_truth", "truth_off_imagery")})
        merged += o["merged_share"] * o["n_pred"]
        split += o["split_share"] * o["n_truth"]
        iou += o["mean_iou"] * o["matched"]
        for side, reasons in o["errors"].items():
            errors.setdefault(side, Counter()).update(reasons)
    tp, n_pred, n_truth = obj["matched"], obj["n_pred"], obj["n_truth"]
    precision, recall = tp / max(n_pred, 1), tp / max(n_truth, 1)
    figures = {"precision": precision, "recall": recall,
               "f1": 2 * tp / max(n_pred + n_truth, 1), "mean_iou": iou / max(tp, 1),
               "merged_share": merged / max(n_pred, 1), "split_share": split / max(n_truth, 1),
               "n_pred": n_pred, "n_truth": n_truth,
               "truth_off_imagery": obj["truth_off_imagery"],
               "errors": {side: dict(c) for side, c in errors.items()}}
    return summarise(pixel_metrics_from_counts(pixel["tp"], pixel["fp"], pixel["fn"]), figures)


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
    parser.add_argument("--areas", nargs="+", choices=[*HELD_OUT, CHIPS_AREA], default=None,
                        help=f"default: all, {CHIPS_AREA} only when the run left it out")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--training", default=None,
                        help="how the model was trained when it took several runs (for the card)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bfe_eval_") as tmp:
        loaded = load_model(args.model)
        card = loaded.card
        run = training_run(card)
        chips_left_out = any(SATELLITE_CHIPS.startswith(p) for p in run.leave_out)
        areas = args.areas or [*HELD_OUT, *([CHIPS_AREA] if chips_left_out else [])]
        if CHIPS_AREA in areas and not chips_left_out:
            parser.error(f"{args.model} was trained on {SATELLITE_CHIPS}; they are scored "
                         "only for a run with --leave-out " + SATELLITE_CHIPS)
        if not args.keep_thresholds:
            thresholds, n_val = held_out_thresholds(loaded, args.data, run, Path(tmp))
            print(f"thresholds on {n_val} held-out crops: {thresholds}", flush=True)
            card = replace(card, threshold=thresholds.building, seed_threshold=thresholds.seed)
        chosen = Path(tmp) / "chosen.safetensors"
        save_model(chosen, loaded.net, card)
        if args.resample_to:
            chosen = resampled(chosen, args.resample_to, Path(tmp))
        held = {}
        for name in areas:
            if name == CHIPS_AREA:
                held[name] = {"kind": "satellite, left out of training",
                              **score_chips(chosen, args.data, Path(tmp))}
            else:
                raster, buildings, kind = HELD_OUT[name]
                held[name] = {"kind": kind, **score_area(chosen, args.data, raster, buildings,
                                                         Path(tmp))}
            print(name, held[name], flush=True)
    metrics = {**card.metrics, **({"training": args.training} if args.training else {}),
               "threshold_policy": "object_f1", "threshold_blocks_seed": run.seed,
               "left_out_of_training": run.leave_out, "held_out": held,
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
