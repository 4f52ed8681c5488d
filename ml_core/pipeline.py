"""One-shot chain for ``bfe run``: rasterise labels, fine-tune, predict, extract, report.

Writes into ``outdir``: ``labels.tif``, ``model.safetensors`` (+ card and last checkpoint),
``probability.tif``, ``footprints.gpkg`` (layers ``footprints`` and ``new_buildings``),
``new_buildings.gpkg`` (footprints not in the input buildings) and ``report.json`` (inputs,
options, training, counts, timings, the OSM-imagery offset). When the labels are aligned
(``align_labels``), also ``offset_probability.tif`` (the base model's) and
``aligned_labels.gpkg`` (the buildings moved onto the imagery, trained on).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Union

from osgeo import gdal

from ml_core.config import JobSpec
from ml_core.errors import InputError
from ml_core.events import CancelToken, ProgressCallback, check_cancel
from ml_core.infer.cluster.predict import predict_anywhere
from ml_core.infer.extract import extract_footprints
from ml_core.io.atomic import atomic_output, check_not_input, check_writable
from ml_core.labels.rasterize import rasterize_labels
from ml_core.learn.modelfile import read_card
from ml_core.learn.train import DEFAULT_BASE, finetune
from ml_core.osm.offset import align_labels

PathLike = Union[str, os.PathLike]
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"
SAMPLE_RASTER = SAMPLE_DIR / "banepa_sample.tif"
SAMPLE_BUILDINGS = SAMPLE_DIR / "banepa_sample_buildings.gpkg"


def copy_layer(src: PathLike, layer: str, dst: PathLike) -> Path:
    """Copy one layer of ``src`` into its own GeoPackage ``dst`` (written atomically)."""
    with atomic_output(dst) as tmp:
        gdal.VectorTranslate(str(tmp), str(src), format="GPKG", layers=[layer], layerName=layer)
    return Path(dst)


def run(raster: Optional[PathLike] = None, buildings: Optional[PathLike] = None,
        outdir: PathLike = "bfe_output", job: Optional[JobSpec] = None,
        base: Optional[PathLike] = DEFAULT_BASE, bands: Optional[list] = None,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None) -> dict:
    """Run the whole chain on ``raster`` + ``buildings`` (both None: the shipped sample) with
    the options of ``job`` (default: every default); the prediction runs where ``job.cluster``
    says (this process by default).

    Returns the report written to ``report.json``; ``report["summary"]`` is the short version.
    """
    job = job or JobSpec()
    if (raster is None) != (buildings is None):
        raise InputError("Give both a raster and a buildings file, or neither for the sample.")
    raster = Path(raster or SAMPLE_RASTER)
    buildings = Path(buildings or SAMPLE_BUILDINGS)
    out = Path(outdir)
    check_writable(out / "report.json")
    for name in ("new_buildings.gpkg", "report.json"):  # the steps check their own outputs
        check_not_input(out / name, raster, buildings, base)
    timings = {}
    start = time.monotonic()

    def lap(name: str) -> None:
        timings[name] = round(time.monotonic() - start - sum(timings.values()), 1)

    aligned, offset = align_labels(raster, buildings, base, out, job.train.align_labels,
                                   job.train.device, bands, progress, cancel)
    labels = rasterize_labels(raster, aligned, out / "labels.tif", job.rasterize,
                              progress=progress, cancel=cancel)
    lap("rasterize")
    trained = finetune(raster, buildings, out / "model.safetensors", job.train, base=base,
                       bands=bands, mask=labels, progress=progress, cancel=cancel,
                       rasterize=job.rasterize, loss_options=job.loss)
    lap("train")
    prob = predict_anywhere(raster, trained.model_path, out / "probability.tif", job.predict,
                            job.cluster, progress=progress, cancel=cancel)
    lap("predict")
    card = read_card(trained.model_path)
    result = extract_footprints(prob, out / "footprints.gpkg", job.extract, existing=buildings,
                                progress=progress, cancel=cancel)
    check_cancel(cancel)
    copy_layer(out / "footprints.gpkg", "new_buildings", out / "new_buildings.gpkg")
    lap("extract")
    summary = {"outdir": str(out), "footprints": result.footprints, "new_buildings": result.new,
               "threshold": card.threshold,
               "val_dice": trained.best_val_dice, "epochs": trained.epochs_run,
               "kept_start": trained.kept_start, "training": trained.describe(),
               "stopped": trained.stopped, "device": trained.device,
               "label_offset": offset.describe(),
               "seconds": round(time.monotonic() - start, 1)}
    report = {"summary": summary, "inputs": {"raster": str(raster), "buildings": str(buildings),
                                             "base": str(base) if base else None},
              "options": job.as_dict(), "training_history": trained.history,
              "label_offset": asdict(offset),
              "timings_s": timings}
    with atomic_output(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return report

