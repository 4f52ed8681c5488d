"""The demo behind ``make demo``: hide half of the sample's OSM buildings and recover them.

Any other raster and complete building layer can stand in for the sample (``--raster``,
``--buildings``), which is how the gap-filling target is measured on held-out areas.

1. drop a seeded 50 % of the sample's buildings (``labels.drop_buildings``);
2. run the whole chain on the rest (``pipeline.run``: rasterise, fine-tune, extract);
3. score the new buildings against the dropped ones that the imagery shows (at least half of
   the footprint on valid pixels: masked or off-raster buildings cannot be found), and write a
   PNG preview.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Optional, Union

from ml_core.config import JobSpec
from ml_core.evaluate.metrics import object_metrics, visible_share
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
VISIBLE = 0.5  # a dropped building counts when at least this share of it is on valid imagery


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
    return scores


def score_demo(raster: PathLike, buildings: PathLike, outdir: PathLike, seconds: float) -> dict:
    """Scores of the new buildings in ``outdir`` against the dropped ones the imagery shows
    (recall) and against all of ``buildings`` (precision)."""
    out = Path(outdir)
    partial = out / "partial_buildings.gpkg"
    new = f"{out / 'footprints.gpkg'}|layername=new_buildings"
    dropped = read_polygons(f"{partial}|layername=dropped", None, what="dropped buildings")
    shown = visible_share(raster, dropped) >= VISIBLE
    vs_dropped = object_metrics(new, replace(dropped, geoms=[g for g, s in zip(dropped.geoms, shown)
                                                             if s]))
    vs_all = object_metrics(new, buildings)
    return {
        "buildings": vs_all["n_truth"],
        "dropped": len(dropped.geoms),
        "dropped_off_imagery": int((~shown).sum()),
        "new_buildings": vs_dropped["n_pred"],
        "recall_of_dropped": round(vs_dropped["recall"], 3),
        "precision": round(vs_all["precision"], 3),
        "precision_vs_dropped_only": round(vs_dropped["precision"], 3),
        "seconds": seconds,
    }


def describe(scores: dict, outdir: PathLike) -> str:
    """A few lines for the terminal."""
    return (
        f"Dropped {scores['dropped']} of {scores['buildings']} OSM buildings "
        f"({scores['dropped_off_imagery']} of them mostly off the imagery, not scored); bfe "
        f"proposed {scores['new_buildings']} new buildings in {scores['seconds']:.0f} s.\n"
        f"Recall of the dropped buildings: {scores['recall_of_dropped']:.2f} "
        "(found = predictions cover >= 50 % of it)\n"
        f"Precision of the new buildings:  {scores['precision']:.2f} "
        f"(overlap a real building; {scores['precision_vs_dropped_only']:.2f} counting only "
        "dropped ones)\n"
        f"Outputs in {outdir}: footprints.gpkg (layers footprints, new_buildings), "
        "new_buildings.gpkg, report.json, demo_scores.json, preview.png "
        "(yellow: kept OSM, cyan: dropped OSM, red: new)."
    )
