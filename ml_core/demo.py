"""The demo behind ``make demo``: hide half of the sample's OSM buildings and recover them.

Any other raster and complete building layer can stand in for the sample (``--raster``,
``--buildings``), which is how the gap-filling target is measured on held-out areas.

1. drop a seeded 50 % of the sample's buildings (``labels.drop_buildings``);
2. run the whole chain on the rest (``pipeline.run``: rasterise, fine-tune, extract);
3. score, one to one at IoU >= 0.5 (``evaluate.matching``), the new buildings against the
   dropped ones that the imagery shows (at least half of the footprint on valid pixels: masked
   or off-raster buildings cannot be found) and all footprints against all buildings the
   imagery shows, with the share of merged polygons; the coverage figures of before come as a
   secondary line. Write the scores (``demo_scores.json``, and under ``demo`` in
   ``report.json``) and a PNG preview.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

from ml_core.config import JobSpec
from ml_core.evaluate.matching import describe as describe_matching
from ml_core.evaluate.matching import describe_errors
from ml_core.evaluate.metrics import object_metrics, shown_on
from ml_core.events import CancelToken, ProgressCallback
from ml_core.io.atomic import atomic_output
from ml_core.io.vector import read_polygons
from ml_core.labels.rasterize import drop_buildings
from ml_core.pipeline import SAMPLE_BUILDINGS, SAMPLE_RASTER, run
from ml_core.preview import write_preview

PathLike = Union[str, os.PathLike]
KEPT_COLOUR = (255, 220, 0)  # yellow: OSM buildings given to training
DROPPED_COLOUR = (0, 200, 255)  # cyan: OSM buildings hidden from training
NEW_COLOUR = (255, 40, 40)  # red: buildings bfe proposes as new


def run_demo(
    outdir: PathLike,
    fraction: float = 0.5,
    seed: int = 0,
    job: Optional[JobSpec] = None,
    base: Optional[PathLike] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    raster: Optional[PathLike] = None,
    buildings: Optional[PathLike] = None,
) -> dict:
    """Drop, fine-tune, extract and score on ``raster`` + ``buildings`` (default: the shipped
    sample, whose OSM buildings are complete enough to score against); returns the scores."""
    out = Path(outdir)
    raster, buildings = raster or SAMPLE_RASTER, buildings or SAMPLE_BUILDINGS
    partial = drop_buildings(buildings, fraction, seed, out / "partial_buildings.gpkg")
    kept = f"{partial.path}|layername=buildings"
    kwargs = {} if base is None else {"base": base}
    report = run(raster, kept, out, job, progress=progress, cancel=cancel, **kwargs)
    scores = score_demo(raster, buildings, out, report["summary"]["seconds"])
    write_preview(
        raster,
        out / "preview.png",
        [
            (partial.path, "buildings", KEPT_COLOUR),
            (partial.path, "dropped", DROPPED_COLOUR),
            (out / "footprints.gpkg", "new_buildings", NEW_COLOUR),
        ],
    )
    with atomic_output(out / "demo_scores.json") as tmp:
        tmp.write_text(json.dumps(scores, indent=2), encoding="utf-8")
    with atomic_output(out / "report.json") as tmp:
        tmp.write_text(json.dumps({**report, "demo": scores}, indent=2, default=str),
                       encoding="utf-8")
    return scores


def _one_to_one(figures: dict) -> dict:
    """The one-to-one figures of an ``object_metrics`` dict, rounded for the report."""
    keys = ("f1", "precision", "recall", "mean_iou", "merged_share", "split_share", "matched",
            "n_pred", "n_truth")
    return {**{k: round(figures[k], 3) for k in keys}, "errors": figures["errors"]}


def score_demo(raster: PathLike, buildings: PathLike, outdir: PathLike, seconds: float) -> dict:
    """Scores of the run in ``outdir``: new buildings against the dropped ones the imagery shows
    and all footprints against all of ``buildings``, one to one; coverage figures secondary."""
    out = Path(outdir)
    partial = out / "partial_buildings.gpkg"
    new = f"{out / 'footprints.gpkg'}|layername=new_buildings"
    footprints = f"{out / 'footprints.gpkg'}|layername=footprints"
    dropped = read_polygons(f"{partial}|layername=dropped", None, what="dropped buildings")
    everything = read_polygons(buildings, None, what="buildings", prefer="buildings")
    shown, shown_all = shown_on(raster, dropped), shown_on(raster, everything)
    vs_dropped = object_metrics(new, shown)
    vs_all = object_metrics(footprints, shown_all)
    new_vs_all = object_metrics(new, shown_all)
    return {
        "buildings": len(everything.geoms),
        "buildings_off_imagery": len(everything.geoms) - len(shown_all.geoms),
        "dropped": len(dropped.geoms),
        "dropped_off_imagery": len(dropped.geoms) - len(shown.geoms),
        "new_buildings": vs_dropped["n_pred"],
        "footprints": vs_all["n_pred"],
        "new_vs_dropped": _one_to_one(vs_dropped),
        "footprints_vs_buildings": _one_to_one(vs_all),
        "coverage_recall_of_dropped": round(vs_dropped["coverage_recall"], 3),
        "coverage_precision_of_new": round(new_vs_all["coverage_precision"], 3),
        "seconds": seconds,
    }


def describe(scores: dict, outdir: PathLike) -> str:
    """A few lines for the terminal: the one-to-one figures first."""
    return (
        f"Dropped {scores['dropped']} of {scores['buildings']} OSM buildings "
        f"({scores['dropped_off_imagery']} of them mostly off the imagery, not scored); bfe "
        f"proposed {scores['new_buildings']} new buildings in {scores['seconds']:.0f} s.\n"
        f"New buildings vs the dropped ones, one to one at IoU >= 0.5: "
        f"{describe_matching(scores['new_vs_dropped'])}\n"
        f"All {scores['footprints']} footprints vs all buildings the imagery shows "
        f"({scores['buildings_off_imagery']} mostly off it, not scored): "
        f"{describe_matching(scores['footprints_vs_buildings'])}\n"
        f"Of those, {describe_errors(scores['footprints_vs_buildings']['errors'])}\n"
        f"Coverage (secondary; found = predictions cover >= 50 %, however many buildings one "
        f"covers): recall of the dropped buildings {scores['coverage_recall_of_dropped']:.2f}, "
        f"share of new buildings on a real one {scores['coverage_precision_of_new']:.2f}\n"
        f"Outputs in {outdir}: footprints.gpkg (layers footprints, new_buildings), "
        "new_buildings.gpkg, report.json, demo_scores.json, preview.png "
        "(yellow: kept OSM, cyan: dropped OSM, red: new)."
    )
