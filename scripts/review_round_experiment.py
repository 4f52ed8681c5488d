"""Review rounds measured on the fixed yardstick: object F1 of the proposals per round, with and
without a complete area, over several seeds.

On a held-out area (Kampala z19 by default, never seen by the base model): drop 50 % of the OSM
buildings (the mapper's layer), fine-tune from the base model (round 0) and extract. A
ground-truth reviewer answers ``--n`` proposals in review order (``review.simulate_review``);
complete areas are drawn over empty ground (boxes of 25 x 45 m that meet no true building).
Round 1 fine-tunes from the round-0 model on those answers (``review.run_round``), once without
and once with the complete areas. Every model is then scored two ways:

- ``yardstick``: its footprints on the held-out answers, the answers in one block in three by
  place (``ml_core.review.yardstick``), which no round trains on; the figure the dock reports.
  All models of a seed are scored on the same yardstick (the answers and the complete areas);
- ``dropped``: its new buildings against the dropped buildings, one to one at IoU >= 0.5: a
  check against the full truth, which no mapper has.

A round whose retrained model scores lower on its own held-out answers keeps the round-0 model
(``run_round``), as in the dock; ``model_changed`` says whether it did.

    nice -n 10 .venv/bin/python scripts/review_round_experiment.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import numpy as np
from osgeo import gdal

from ml_core.config import JobSpec, TrainOptions
from ml_core.evaluate.matching import match_polygons
from ml_core.infer.extract import extract_footprints
from ml_core.infer.predict import predict_raster
from ml_core.io import raster as gdalio
from ml_core.io.vector import AreaMeter, BoxIndex, envelope_polygon, read_polygons
from ml_core.labels.rasterize import drop_buildings
from ml_core.learn.train import DEFAULT_BASE, finetune
from ml_core.review import loop as review

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "hotosm" / "kampala"
VARIANTS = ("round0", "round1", "round1_complete")


def extract(raster: Path, model: Path, existing: str, out: Path, job: JobSpec) -> Path:
    """Predict and polygonise with the model's own threshold; returns the GeoPackage."""
    prob = predict_raster(raster, model, out.with_suffix(".prob.tif"), job.predict)
    return extract_footprints(prob, out, job.extract, existing=existing).path


def empty_areas(raster: Path, buildings: str, out: Path, count: int, size_m: list) -> Path:
    """Up to ``count`` non-overlapping boxes of ``size_m`` metres meeting no true building."""
    ds = gdal.Open(str(raster))
    gt, px_m = ds.GetGeoTransform(), gdalio.pixel_size_m(ds)
    w, h = (round(m / px_m) for m in size_m)
    index = BoxIndex(read_polygons(buildings, ds.GetSpatialRef(), "buildings").geoms)
    boxes: list = []
    for row in range(0, ds.RasterYSize - h, h // 2):
        for col in range(0, ds.RasterXSize - w, w // 2):
            x0, y0 = gt[0] + col * gt[1], gt[3] + row * gt[5]
            box = envelope_polygon((x0, x0 + w * gt[1], y0 + h * gt[5], y0))
            if len(boxes) < count and not index.meets(box) and \
                    not any(box.Intersects(b) for b in boxes):
                boxes.append(box)
    if not boxes:
        raise SystemExit(f"No empty ground of {size_m} m in {raster} for a complete area.")
    return review.write_polygons(boxes, ds.GetSpatialRef(), out)


def dropped_f1(footprints: Path, dropped: str, raster: Path) -> dict:
    """One-to-one figures of the new buildings against the dropped buildings, within the area
    they were predicted on (the measure's ``aoi.gpkg`` beside them, when it predicted only
    around the held-out answers): both counted when their centre lies in it."""
    ds = gdal.Open(str(raster))
    srs = ds.GetSpatialRef()
    pred = review.scored_polygons(footprints, srs, "new_buildings")[0]
    truth = read_polygons(dropped, srs, "dropped buildings").geoms
    aoi = footprints.parent / "aoi.gpkg"
    if aoi.exists():
        index = BoxIndex(read_polygons(aoi, srs, "measured area").geoms)
        pred, truth = ([g for g in geoms if index.meets(g.PointOnSurface())]
                       for geoms in (pred, truth))
    env = np.array([g.GetEnvelope() for g in truth])
    meter = AreaMeter(srs, (float(env[:, :2].mean()), float(env[:, 2:].mean())))
    m = match_polygons(pred, truth, meter)
    return {"precision": m.precision, "recall": m.recall, "f1": m.f1, "n_pred": m.n_pred,
            "n_truth": m.n_truth}


def folders(work: Path, discarded: dict) -> dict:
    """Where each variant's measured footprints are (a discarded round's: its start's)."""
    logged = work / "round1_complete" / "model.yardstick"
    out = {"round0": logged / "before",
           "round1_complete": logged / ("before" if discarded["round1_complete"] else "after")}
    out["round1"] = out["round0"] if discarded["round1"] else work / "round1" / "common"
    return out


def rescore(result: dict) -> list:
    """The runs of a result with their ``dropped`` figures computed again from the work
    folders (no training, no prediction)."""
    runs, raster = result["runs"], Path(result["raster"])
    for run in runs:
        work = Path(run["workdir"])
        where = folders(work, {name: r["discarded"] for name, r in run["rounds"].items()})
        for name, r in run["rounds"].items():
            r["dropped"] = dropped_f1(where[name] / "footprints.gpkg",
                                      f"{work / 'partial.gpkg'}|layername=dropped", raster)
    return runs


def run_once(raster: Path, buildings: str, seed: int, args, job: JobSpec) -> dict:
    """Round 0 and round 1 without / with complete areas, for one seeded drop of 50 %."""
    work = Path(tempfile.mkdtemp(prefix=f"bfe_review_exp_{seed}_"))
    job = replace(job, train=replace(job.train, seed=seed))
    partial = drop_buildings(buildings, 0.5, seed, work / "partial.gpkg")
    kept, dropped = f"{partial.path}|layername=buildings", f"{partial.path}|layername=dropped"
    base = DEFAULT_BASE if DEFAULT_BASE.exists() else None
    r0 = finetune(raster, kept, work / "r0.safetensors", job.train, base=base,
                  rasterize=job.rasterize, loss_options=job.loss)
    ext0 = extract(raster, r0.model_path, kept, work / "r0.gpkg", job)
    reviewed = work / "reviewed.gpkg"
    decided = review.simulate_review(ext0, buildings, reviewed, n=args.n, order=args.order)
    complete = empty_areas(raster, buildings, work / "complete.gpkg", args.areas, args.area_m)
    entries = {}
    for name, area in (("round1", None), ("round1_complete", complete)):
        (work / name).mkdir()  # own folder, own round log
        entries[name] = review.run_round(raster, kept, reviewed, r0.model_path,
                                         work / name / "model", job.for_review_round(),
                                         area, whole_up_to_px=args.whole_px).log_entry
    # round1_complete's yardstick is the common one (the answers and the complete areas): its
    # log holds round 0 ("before") and itself ("after"); round1 is measured on it here
    yard = review.split_answers(raster, reviewed, complete, kept).yardstick
    discarded = {name: entries[name]["discarded"] is not None for name in entries}
    where = folders(work, discarded)
    entry = entries["round1_complete"]
    measured = {"round0": entry["yardstick_before"], "round1_complete": entry["yardstick_after"]}
    measured["round1"] = measured["round0"] if discarded["round1"] else review.measure(
        raster, entries["round1"]["model"], yard, kept, where["round1"], job,
        whole_up_to_px=args.whole_px)
    figures = {}
    for name in VARIANTS:
        figure = measured[name]
        figures[name] = {"yardstick": {k: figure[k] for k in ("precision", "recall", "f1",
                                                              "n_pred", "n_truth")},
                         "dropped": dropped_f1(where[name] / "footprints.gpkg", dropped, raster),
                         "model_changed": entries.get(name, {}).get("model_changed"),
                         "discarded": entries.get(name, {}).get("discarded") is not None}
    return {"seed": seed, "workdir": str(work), "decisions": asdict(decided),
            "held_out": yard.counts, "rounds": figures}


def measurable(run: dict) -> bool:
    """Whether the yardstick of a run judged anything (held-out footprints or buildings)."""
    y = run["rounds"]["round0"]["yardstick"]
    return y["n_pred"] + y["n_truth"] > 0


def mean(runs: list, name: str, kind: str, key: str = "f1") -> Optional[float]:
    """Mean over the runs (yardstick: over those it could measure; None when none)."""
    values = [r["rounds"][name][kind][key] for r in runs
              if kind != "yardstick" or measurable(r)]
    return round(float(np.mean(values)), 3) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raster", default=str(DATA / "kampala_z19.tif"))
    parser.add_argument("--buildings", default=str(DATA / "kampala_buildings.gpkg"))
    parser.add_argument("--n", type=int, default=30, help="review decisions")
    parser.add_argument("--order", default="score", choices=("score", "uncertainty"))
    parser.add_argument("--areas", type=int, default=2, help="complete areas on empty ground")
    parser.add_argument("--area-m", type=float, nargs=2, default=[25.0, 45.0],
                        help="size of one complete area in metres (issue 21: 25 x 45)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="optimiser steps per epoch")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rescore", default=None,
                        help="a result file: recompute its 'dropped' figures from its work "
                             "folders and write it again (no training)")
    parser.add_argument("--whole-px", type=int, default=0,
                        help="predict rasters up to this many pixels whole when measuring "
                             "(default 0: only around the held-out answers, to save CPU)")
    parser.add_argument("--out", default=str(REPO / "docs" / "experiments" /
                                             "review_round_yardstick.json"))
    args = parser.parse_args()
    job = JobSpec(train=TrainOptions(epochs=args.epochs, steps_per_epoch=args.steps,
                                     patience=args.epochs, device="cpu"))
    start = time.monotonic()
    earlier = json.loads(Path(args.rescore).read_text(encoding="utf-8")) if args.rescore else {}
    runs = rescore(earlier) if args.rescore else []
    for seed in [] if args.rescore else args.seeds:
        runs.append(run_once(Path(args.raster), args.buildings, seed, args, job))
        for name, r in runs[-1]["rounds"].items():
            y, d = r["yardstick"], r["dropped"]
            print(f"seed {seed} {name:16s} yardstick F1 {y['f1']:.3f} (P {y['precision']:.3f} "
                  f"R {y['recall']:.3f}, {y['n_pred']} judged)  dropped F1 {d['f1']:.3f} "
                  f"(P {d['precision']:.3f})  changed {r['model_changed']}", flush=True)
        print(f"seed {seed} decisions {runs[-1]['decisions']}, held out "
              f"{runs[-1]['held_out']}", flush=True)
    summary = {name: {f"{kind}_{key}": mean(runs, name, kind, key)
                      for kind in ("yardstick", "dropped") for key in ("f1", "precision")}
               for name in VARIANTS}
    result = {"raster": args.raster, "buildings": args.buildings, "dropped_fraction": 0.5,
              "base_model": str(DEFAULT_BASE) if DEFAULT_BASE.exists() else None,
              "n_decisions": args.n, "order": args.order, "complete_areas": args.areas,
              "area_m": args.area_m, "job": job.as_dict(), "seeds": args.seeds,
              "seconds": round(time.monotonic() - start, 1), "mean": summary, "runs": runs}
    if args.rescore:  # the run's own settings and time; only 'dropped' and the means are new
        result = {**earlier, "mean": summary, "runs": runs, "dropped_rescored": True}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    print("| round | yardstick F1 | yardstick P | dropped F1 | dropped P |\n|---|---|---|---|---|")
    for name in VARIANTS:
        print("| " + " | ".join([name, *(f"{v:.3f}" if v is not None else "-"
                                          for v in summary[name].values())]) + " |")
    print(f"yardstick means over the {sum(map(measurable, runs))} of {len(runs)} seeds with "
          "held-out answers")
    print(f"{result['seconds']} s; written to {out}")


if __name__ == "__main__":
    main()
