"""``pipeline.run`` (the dock's "Find missing buildings", ``bfe run``) predicts where the job's
``ClusterOptions`` say: on a local Dask cluster of one worker here, with the same probability
raster and footprints as the trained model gives in one process."""

from __future__ import annotations

import json

import numpy as np
import pytest
from osgeo import gdal

from ml_core.config import ClusterOptions, JobSpec, PredictOptions, TrainOptions
from ml_core.infer.extract import extract_footprints
from ml_core.infer.predict import predict_raster
from ml_core.pipeline import SAMPLE_BUILDINGS, SAMPLE_RASTER, run

pytest.importorskip("distributed", reason="Dask not installed (extra 'cluster')")

TINY = TrainOptions(loss="ce", epochs=1, steps_per_epoch=2, batch_size=2, crop_size=64, width=4,
                    depth=2, gsd_m=0.8, device="cpu", align_labels=False)


def read(path) -> np.ndarray:
    ds = gdal.Open(str(path))
    return ds.ReadAsArray()


def test_run_predicts_on_the_cluster_the_job_names(tmp_path):
    if not SAMPLE_RASTER.exists():
        pytest.skip("the shipped sample (data/sample) is absent")
    crop = tmp_path / "crop.tif"
    gdal.Translate(str(crop), str(SAMPLE_RASTER), srcWin=[0, 0, 256, 256])
    job = JobSpec(train=TINY, predict=PredictOptions(device="cpu", tile_size=128, overlap=16),
                  cluster=ClusterOptions(workers=1, windows_per_task=1))
    out = tmp_path / "run"
    events: list = []
    report = run(crop, SAMPLE_BUILDINGS, out, job, base=None, progress=events.append)
    assert json.loads((out / "report.json").read_text())["options"]["cluster"]["workers"] == 1
    # the prediction went to the cluster: its progress is the cluster's task count
    tasks = [e.extra for e in events if e.stage == "predict" and "tasks" in (e.extra or {})]
    assert tasks and tasks[-1]["tasks_done"] == tasks[-1]["tasks"] >= 1
    single = predict_raster(crop, out / "model.safetensors", tmp_path / "single.tif", job.predict)
    np.testing.assert_allclose(read(out / "probability.tif"), read(single), atol=1e-5)
    here = extract_footprints(single, tmp_path / "single.gpkg", job.extract,
                              existing=SAMPLE_BUILDINGS)
    assert (here.footprints, here.new) == (report["summary"]["footprints"],
                                           report["summary"]["new_buildings"])
