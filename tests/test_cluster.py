"""Prediction on a Dask cluster: same raster and polygons as one process, seams, faults, inputs.

One LocalCluster of 2 worker processes (1 thread, 1 GiB each, on 127.0.0.1) serves the module;
the test that kills a worker runs last. The model is a seeded width-4 U-Net.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ORIGIN_3857, pixel_box
from osgeo import gdal, ogr

from ml_core.cli import main as cli_main
from ml_core.config import ClusterOptions, ExtractOptions, PredictOptions
from ml_core.errors import Cancelled, InputError
from ml_core.events import CancelToken
from ml_core.infer.cluster import require_dask
from ml_core.infer.cluster.sources import raster_source
from ml_core.infer.extract import extract_footprints
from ml_core.infer.predict import NODATA, predict_raster
from ml_core.infer.tiling import tile_windows
from ml_core.learn.model import UNet
from ml_core.learn.modelfile import LoadedModel, ModelCard, save_model

distributed = pytest.importorskip("distributed", reason="Dask not installed (extra 'cluster')")
from ml_core.infer.cluster.predict import predict_on_cluster  # noqa: E402
from ml_core.infer.cluster.session import cluster_client  # noqa: E402

OPTS = PredictOptions(tile_size=32, overlap=8, batch_size=2, device="cpu")


@pytest.fixture(scope="module")
def client():
    with cluster_client(ClusterOptions(workers=2), memory_limit="1GiB") as c:
        c.wait_for_workers(2, timeout=60)
        yield c


def tiny_model() -> LoadedModel:
    torch.manual_seed(0)
    net = UNet(3, width=4, depth=2).eval()
    card = ModelCard(architecture=net.architecture(), bands=[1, 2, 3], mean=[100.0] * 3,
                     std=[50.0] * 3, gsd_m=1.0)
    return LoadedModel(net=net, card=card)


def read(path) -> np.ndarray:
    return gdal.Open(str(path)).ReadAsArray()


def single(raster, out, **kwargs):
    return read(predict_raster(raster, tiny_model(), out, OPTS, **kwargs))


def test_same_raster_as_one_process_with_progress_from_task_counts(make_raster, tmp_path,
                                                                   client):
    raster = make_raster(width=150, height=110)
    events = []
    cluster = ClusterOptions(windows_per_task=3)
    out = predict_on_cluster(raster, tiny_model(), tmp_path / "c.tif", OPTS, cluster, client,
                             progress=events.append)
    expected = single(raster, tmp_path / "s.tif")
    got = read(out)
    assert got.shape == expected.shape == (110, 150) and (got >= 0).all()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    ds = gdal.Open(str(out))
    assert ds.GetGeoTransform() == gdal.Open(str(raster)).GetGeoTransform()
    assert ds.GetRasterBand(1).GetNoDataValue() == NODATA
    tasks = -(-len(tile_windows(150, 110, 32, 8)) // 3)  # ceil: 6 x 5 windows in tasks of 3
    done = [e.extra["tasks_done"] for e in events]
    assert {e.extra["tasks"] for e in events} == {tasks} == {10}
    assert done == sorted(set(done)) and done[-1] == tasks and events[-1].fraction == 1.0
    # workers start without Dask's MALLOC_TRIM_THRESHOLD_ (it slows torch ~1.5x, session.py)
    assert set(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == {None}


def test_aoi_and_polygons_across_task_seams(make_raster, make_vector, tmp_path, client):
    raster = make_raster(width=120, height=120)
    aoi = make_vector("aoi.gpkg", [pixel_box(5, 5, 70, 110), pixel_box(80, 20, 115, 60)])
    got = read(predict_on_cluster(raster, tiny_model(), tmp_path / "c.tif", OPTS,
                                  ClusterOptions(windows_per_task=2), client, aoi=aoi))
    expected = single(raster, tmp_path / "s.tif", aoi=aoi)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (got != NODATA).sum() == 65 * 105 + 35 * 40  # only inside the AOI
    threshold = float(np.median(expected[expected != NODATA]))
    opts = ExtractOptions(threshold=threshold, min_area=0.0, simplify=0.0)
    polys = {}
    for name in ("c", "s"):
        extract_footprints(tmp_path / f"{name}.tif", tmp_path / f"{name}.gpkg", opts)
        src = ogr.Open(str(tmp_path / f"{name}.gpkg"))
        polys[name] = sorted(f.GetGeometryRef().ExportToWkt() for f in src.GetLayer("footprints"))
        src = None
    assert polys["c"] == polys["s"] and len(polys["c"]) > 5
    # windows start every 24 px, a task holds 2: a polygon across x = 48 px spans two tasks;
    # it is one polygon, and no two footprints overlap (nothing duplicated at the seam)
    seam_x = ORIGIN_3857[0] + 48
    geoms = [ogr.CreateGeometryFromWkt(w) for w in polys["c"]]
    assert any(g.GetEnvelope()[0] < seam_x < g.GetEnvelope()[1] for g in geoms)
    union_area = sum(g.GetArea() for g in geoms)
    merged = geoms[0]
    for g in geoms[1:]:
        merged = merged.Union(g)
    assert merged.GetArea() == pytest.approx(union_area)


def test_cli_predict_on_a_running_scheduler(make_raster, tmp_path, client):
    raster = make_raster(width=80, height=70)
    loaded = tiny_model()
    model = save_model(tmp_path / "m.safetensors", loaded.net, loaded.card)
    address = client.scheduler.address
    args = ["predict", str(raster), "-m", str(model), "-o", str(tmp_path / "c.tif"),
            "--scheduler", address, "--tile-size", "32", "--overlap", "8", "--batch-size", "2",
            "--device", "cpu"]
    assert cli_main(args) == 0
    np.testing.assert_allclose(read(tmp_path / "c.tif"), single(raster, tmp_path / "s.tif"),
                               atol=1e-5)
    assert cli_main([*args[:-8], "--scheduler", "localhost:1"]) == 2  # not an address
    wkts = {}
    for name, cluster in (("c", ["--scheduler", address]), ("s", [])):
        out = tmp_path / f"{name}.gpkg"
        assert cli_main(["extract", str(raster), "-m", str(model), "-o", str(out), *args[8:],
                         "--threshold", "0.55", "--min-area", "0", *cluster]) == 0
        src = ogr.Open(str(out))
        wkts[name] = sorted(f.GetGeometryRef().ExportToWkt() for f in src.GetLayer("footprints"))
        src = None
    assert wkts["c"] == wkts["s"] and wkts["c"]


def test_a_model_the_workers_cannot_build_is_a_clear_error(make_raster, tmp_path, client):
    raster = make_raster(width=40, height=40)
    card = ModelCard(architecture={"name": "custom", "in_channels": 3}, bands=[1, 2, 3],
                     mean=[100.0] * 3, std=[50.0] * 3, gsd_m=1.0)
    custom = LoadedModel(net=torch.nn.Conv2d(3, 2, 1).eval(), card=card)
    with pytest.raises(InputError, match=r"(?i)unknown architecture .custom."):
        predict_on_cluster(raster, custom, tmp_path / "c.tif", OPTS, ClusterOptions(), client)
    assert not (tmp_path / "c.tif").exists()


def test_cancel_leaves_no_output(make_raster, tmp_path, client):
    raster = make_raster(width=150, height=150)
    token = CancelToken()
    out = tmp_path / "out" / "c.tif"
    with pytest.raises(Cancelled):
        predict_on_cluster(raster, tiny_model(), out, OPTS, ClusterOptions(windows_per_task=1),
                           client, progress=lambda e: token.cancel(), cancel=token)
    assert list(out.parent.iterdir()) == []
    deadline = time.monotonic() + 10
    while client.processing() and any(client.processing().values()):
        assert time.monotonic() < deadline, "tasks still running after cancel"
        time.sleep(0.1)


def test_folder_of_geotiffs_in_two_crss_is_one_mosaic(make_raster, tmp_path):
    (tmp_path / "tiles").mkdir()
    left = make_raster("tiles/a.tif", width=60, height=50)
    ds = gdal.Open(str(left))
    right = tmp_path / "tiles" / "b.tif"
    east = (ORIGIN_3857[0] + 60, ORIGIN_3857[1])
    make_raster("east.tif", width=60, height=50, origin=east)
    gdal.Warp(str(right), str(tmp_path / "east.tif"), dstSRS="EPSG:32636")  # UTM 36N
    with raster_source(tmp_path / "tiles", tmp_path) as path:
        mosaic = gdal.Open(path)
        assert mosaic.GetSpatialRef().IsSame(ds.GetSpatialRef())
        assert mosaic.GetGeoTransform()[1] == 1.0
        assert abs(mosaic.RasterXSize - 120) <= 2 and abs(mosaic.RasterYSize - 50) <= 2
        # the left file comes through unchanged (same CRS and grid), at its offset
        mgt, lgt = mosaic.GetGeoTransform(), ds.GetGeoTransform()
        ox, oy = round(lgt[0] - mgt[0]), round(mgt[3] - lgt[3])
        np.testing.assert_array_equal(mosaic.ReadAsArray(ox, oy, 60, 50)[:3], ds.ReadAsArray())
        got = single(path, tmp_path / "m.tif")
        assert (got[oy:oy + 50, ox:ox + 60] != NODATA).all()
        assert (got[oy:oy + 50, ox + 62:ox + 118] != NODATA).mean() > 0.9  # reprojected file
        assert got.shape == (mosaic.RasterYSize, mosaic.RasterXSize)
        mosaic = None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bfe_mosaic")] == []
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no GeoTIFF"), raster_source(tmp_path / "empty", tmp_path):
        pass


def test_without_dask_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(InputError, match=r"pip install 'dask\[distributed\]==") as info:
        require_dask()
    assert "without --workers/--scheduler" in str(info.value)  # each front end's way around
    assert "'Run prediction on: this process'" in str(info.value)
    with pytest.raises(InputError, match=r"\(--scheduler, or 'Scheduler' in QGIS\) must be like "
                       "tcp://HOST:PORT"):
        ClusterOptions(scheduler="localhost:8786")


def test_processing_algorithm_on_a_scheduler(make_raster, tmp_path, client, qgis_processing,
                                              monkeypatch):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

    from bfe_plugin.processing.predict_cluster import PredictCluster

    raster = make_raster(width=80, height=70)
    loaded = tiny_model()
    model = save_model(tmp_path / "m.safetensors", loaded.net, loaded.card)
    params = {"INPUT": str(raster), "MODEL": str(model), "scheduler": client.scheduler.address,
              "tile_size": 32, "overlap": 8, "batch_size": 2, "device": 1,  # cpu
              "OUTPUT": str(tmp_path / "q.tif")}
    feedback = QgsProcessingFeedback()
    result = processing.run(PredictCluster(), params, feedback=feedback)
    np.testing.assert_allclose(read(result["OUTPUT"]), single(raster, tmp_path / "s.tif"),
                               atol=1e-5)
    assert feedback.progress() == 100.0
    monkeypatch.setitem(sys.modules, "distributed", None)  # the plugin without Dask
    with pytest.raises(QgsProcessingException, match="pip install 'dask"):
        PredictCluster().prepareAlgorithm(params, QgsProcessingContext(), feedback)


def test_worker_killed_mid_run_is_retried(make_raster, tmp_path, client):
    """Runs last: kills one of the module cluster's two workers at the first progress report."""
    raster = make_raster(width=256, height=256)
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    killed = []

    def kill_once(event) -> None:
        if not killed and event.extra["tasks_done"] >= 1:
            os.kill(victim, signal.SIGKILL)
            killed.append(event.extra["tasks_done"])

    out = predict_on_cluster(raster, tiny_model(), tmp_path / "c.tif", OPTS,
                             ClusterOptions(windows_per_task=1), client, progress=kill_once)
    assert killed and killed[0] < 121  # 11 x 11 windows, one per task: killed mid-run
    np.testing.assert_allclose(read(out), single(raster, tmp_path / "s.tif"), atol=1e-5)
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()
