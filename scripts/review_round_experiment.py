"""Does one simulated review round improve gap filling? Object F1 of new buildings, measured.

On a held-out area (Kampala z19, not used by the base model): drop 50 % of the OSM buildings,
fine-tune from the shipped base model (round 0), extract, score the new buildings against the
dropped ones. A ground-truth reviewer then decides N proposals (``review.simulate_review``), the
next round fine-tunes from the round-0 model on the reviewed labels (``review.run_round``),
and the new buildings are scored again. A control round gets the same extra training with no
review answers, so the gain of the review is not confused with the gain of training longer.

F1 is reported twice: over all dropped buildings, and "unreviewed" (dropped buildings and
predictions touching a reviewed proposal left out), which shows whether the answers helped
beyond the very buildings they were about.

    nice -n 10 .venv/bin/python scripts/review_round_experiment.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from ml_core import review
from ml_core.config import ExtractOptions, PredictOptions, TrainOptions
from ml_core.extract import extract_footprints
from ml_core.geometry import BoxIndex, PolygonSet, read_polygons
from ml_core.labels import drop_buildings
from ml_core.metrics import object_metrics
from ml_core.modelfile import read_card
from ml_core.predict import predict_raster
from ml_core.train import DEFAULT_BASE, finetune

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "hotosm" / "kampala"


def extract(raster: Path, model: Path, existing: str, out: Path) -> Path:
    """Predict and polygonise with the model's own (held-out) threshold; returns the GPKG."""
    prob = predict_raster(raster, model, out.with_suffix(".prob.tif"), PredictOptions(device="cpu"))
    opts = replace(ExtractOptions(), threshold=read_card(model).threshold)
    return extract_footprints(prob, out, opts, existing=existing).path


def _away_from(polys: PolygonSet, reviewed: list) -> PolygonSet:
    """``polys`` without those touching any ``reviewed`` polygon."""
    index = BoxIndex(reviewed)
    keep = [p for p in polys.geoms
            if not any(p.Intersects(index.geoms[j]) for j in index.query(p.GetEnvelope()))]
    return PolygonSet(keep, polys.srs, polys.source)


def score(footprints: Path, dropped: str, reviewed: list) -> dict:
    """Object metrics of the new buildings against the dropped ones: all, and unreviewed."""
    pred = read_polygons(f"{footprints}|layername=new_buildings", what="new buildings")
    truth = read_polygons(dropped, pred.srs, "dropped buildings")
    out = {"all": object_metrics(pred, truth)}
    if reviewed:
        out["unreviewed"] = object_metrics(_away_from(pred, reviewed), _away_from(truth, reviewed))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raster", default=str(DATA / "kampala_z19.tif"))
    parser.add_argument("--buildings", default=str(DATA / "kampala_buildings.gpkg"))
    parser.add_argument("--n", type=int, default=20, help="review decisions")
    parser.add_argument("--order", default="score", choices=("score", "uncertainty"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=15, help="optimiser steps per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "docs" / "experiments" / "review_round.json"))
    args = parser.parse_args()
    raster = Path(args.raster)
    opts = TrainOptions(epochs=args.epochs, steps_per_epoch=args.steps, patience=args.epochs,
                        device="cpu", seed=args.seed)
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bfe_review_exp_"))
    partial = drop_buildings(args.buildings, 0.5, args.seed, work / "partial.gpkg")
    kept, dropped = f"{partial.path}|layername=buildings", f"{partial.path}|layername=dropped"
    base = DEFAULT_BASE if DEFAULT_BASE.exists() else None

    r0 = finetune(raster, kept, work / "r0.safetensors", opts, base=base)
    ext0 = extract(raster, r0.model_path, kept, work / "r0.gpkg")
    reviewed = work / "reviewed.gpkg"
    decided = review.simulate_review(ext0, args.buildings, reviewed, n=args.n, order=args.order)
    unreviewed = work / "unreviewed.gpkg"
    review.simulate_review(ext0, args.buildings, unreviewed, n=0)
    touched = [g for status in (review.ACCEPTED, review.REJECTED)
               for g in review.status_polygons(reviewed, status)[0]]

    rounds = {"round0": {"train": r0, "footprints": ext0}}
    for name, labels in (("control", unreviewed), ("round1", reviewed)):
        res = review.run_round(raster, kept, labels, r0.model_path, work / f"{name}.safetensors",
                               opts)
        rounds[name] = {"train": res.train,
                        "footprints": extract(raster, res.train.model_path, kept,
                                              work / f"{name}.gpkg")}
    result = {
        "raster": str(raster), "buildings": str(args.buildings), "dropped_fraction": 0.5,
        "base_model": str(base) if base else None, "n_decisions": args.n, "order": args.order,
        "decisions": asdict(decided), "train_options": asdict(opts), "workdir": str(work),
        "seconds": round(time.monotonic() - start, 1),
        "rounds": {name: {"val_dice": r["train"].best_val_dice,
                          "threshold": r["train"].threshold,
                          "epochs": r["train"].epochs_run,
                          "train_seconds": r["train"].seconds,
                          **score(r["footprints"], dropped, touched)}
                   for name, r in rounds.items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    for name, r in result["rounds"].items():
        rev = r.get("unreviewed", {})
        print(f"{name:8s} F1 {r['all']['f1']:.3f} (P {r['all']['precision']:.3f} "
              f"R {r['all']['recall']:.3f})  unreviewed F1 {rev.get('f1', float('nan')):.3f}  "
              f"val Dice {r['val_dice']}")
    print(f"decisions: {decided}; {result['seconds']} s; written to {out}")


if __name__ == "__main__":
    main()
