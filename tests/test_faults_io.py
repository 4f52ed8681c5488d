"""Faults of the machine rather than of the input: a full disk, concurrent writers, SIGTERM and
Ctrl-C. Rows of the fault matrix in docs/RELIABILITY.md."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, fill, pixel_box, write_raster, write_tiny_model, write_vector
from osgeo import gdal, ogr

from ml_core.cli import main
from ml_core.io import raster as gdalio
from ml_core.io.atomic import atomic_output, close_raster


@pytest.fixture
def inputs(tmp_path) -> dict:
    rng = np.random.default_rng(0)
    mask = (rng.random((300, 300)) < 0.3).astype(np.uint8)  # many small components
    d = {"mask": write_raster(tmp_path / "mask.tif", width=300, height=300, data=mask[None]),
         "r": write_raster(tmp_path / "r.tif", width=256, height=256),
         "b": write_vector(tmp_path / "b.gpkg", [pixel_box(i, j, i + 2, j + 2)
                                                  for i in range(0, 250, 4)
                                                  for j in range(0, 250, 25)])}
    prob = rng.random((256, 256)).astype(np.float32)
    d["prob"] = write_raster(tmp_path / "prob.tif", width=256, height=256, data=prob[None])
    d["m"] = write_tiny_model(tmp_path / "m.safetensors")
    return d


def _digest(paths) -> dict:
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


DISK_FULL = [
    ("drop mask", ["drop", "{mask}", "-o", "{F}/dm.tif"], "dm.tif", 4 << 10),
    ("drop mask", ["drop", "{mask}", "-o", "{F}/dm.tif"], "dm.tif", 8 << 10),
    ("drop buildings", ["drop", "{b}", "-o", "{F}/d.gpkg"], "d.gpkg", 60 << 10),
    ("drop buildings", ["drop", "{b}", "-o", "{F}/d.gpkg"], "d.gpkg", 120 << 10),
    ("extract", ["extract", "{prob}", "--min-area", "0", "-o", "{F}/f.gpkg"], "f.gpkg", 100 << 10),
    ("predict", ["predict", "{r}", "-m", "{m}", "--device", "cpu", "-o", "{F}/p.tif"], "p.tif",
     64 << 10),
    ("rasterize", ["rasterize", "{r}", "{b}", "-o", "{F}/l.tif"], "l.tif", 0),
]


@pytest.mark.parametrize(("kind", "argv", "name", "free"), DISK_FULL,
                         ids=[f"{c[0]}-{c[3] >> 10}KB" for c in DISK_FULL])
def test_disk_full_is_one_message_and_no_file(kind, argv, name, free, inputs, small_disk,
                                              capsys):
    filler = fill(small_disk, free)
    before = _digest(inputs.values())
    code = main([a.format(F=small_disk, **inputs) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"No space left on {small_disk} while writing {small_disk / name}" in err, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert sorted(small_disk.iterdir()) == [filler]  # nothing left, not even a temporary
    assert _digest(inputs.values()) == before


def test_disk_full_while_saving_a_model(inputs, small_disk, capsys):
    fill(small_disk, 4 << 10)
    code = main(["finetune", str(inputs["r"]), str(inputs["b"]), "--base", "none", "--width", "4",
                 "--depth", "2", "--epochs", "1", "--steps-per-epoch", "1", "--crop-size", "32",
                 "--device", "cpu", "--minutes", "0", "-o", str(small_disk / "m.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on" in err and "m." in err, err
    assert [p.name for p in small_disk.iterdir()] == ["filler"]


def test_concurrent_writers_both_complete(tmp_path):
    """Two writers of one output, interleaved: each file is complete, the later rename wins."""
    out = tmp_path / "mask.tif"
    like = write_raster(tmp_path / "like.tif", width=64, height=64)
    both_open = threading.Barrier(2)
    errors = []

    def writer(value: int, delay: float) -> None:
        try:
            with atomic_output(out) as tmp:
                ds = gdalio.create_like(gdalio.open_raster(like), tmp, 0, 0, 64, 64,
                                        gdal.GDT_Byte)
                both_open.wait(timeout=10)  # both temporary files exist now
                time.sleep(delay)
                ds.GetRasterBand(1).WriteArray(np.full((64, 64), value, np.uint8))
                close_raster(ds, out)
                ds = None
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(v, d)) for v, d in ((1, 0.0), (2, 0.3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert np.all(gdal.Open(str(out)).ReadAsArray() == 2)  # the later one, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["like.tif", "mask.tif"]


def test_concurrent_drops_give_a_valid_geopackage(inputs, tmp_path):
    out = tmp_path / "d.gpkg"
    cmd = [sys.executable, "-m", "ml_core", "drop", str(inputs["b"]), "-o", str(out)]
    runs = [subprocess.Popen([*cmd, "--seed", str(s)], cwd=REPO, stderr=subprocess.PIPE)
            for s in (1, 2)]
    assert [p.wait(timeout=120) for p in runs] == [0, 0]
    src = ogr.Open(str(out))
    kept, dropped = (src.GetLayerByName(n).GetFeatureCount() for n in ("buildings", "dropped"))
    assert kept + dropped == 630
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _bfe(args: list, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ml_core", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_cleans_up_like_ctrl_c(inputs, tmp_path):
    big = write_raster(tmp_path / "big.tif", width=768, height=768)
    out = tmp_path / "out" / "p.tif"
    proc = _bfe(["predict", big, "-m", inputs["m"], "--device", "cpu", "--tile-size", "32",
                 "--overlap", "0", "--batch-size", "1", "-o", out], tmp_path)
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(".p.*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # until it writes
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "cancelled" in err and "Traceback" not in err
    assert list(out.parent.iterdir()) == []  # no output, no temporary folder


def test_ctrl_c_during_start_up_is_a_message(tmp_path, inputs):
    proc = _bfe(["predict", inputs["r"], "-m", inputs["m"], "-o", tmp_path / "p.tif"], tmp_path)
    time.sleep(0.5)  # importing torch
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (130, 0), err  # 0: it finished before the signal came
    assert "Traceback" not in err, err


def test_statistics_of_a_huge_raster_read_a_sample(tmp_path):
    """--extent on a mosaic: normalisation statistics must not read all 1.6 G pixels (the
    decimated read took 8 s here on an empty sparse file, minutes on real imagery)."""
    path = tmp_path / "huge.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 40000, 40000, 3, gdal.GDT_Byte,
                                              options=["TILED=YES", "SPARSE_OK=TRUE"])
    ds.SetGeoTransform((3627854.0, 0.3, 0, 39135.0, 0, -0.3))
    ds.SetProjection(gdal.Open(str(write_raster(tmp_path / "crs.tif"))).GetProjection())
    ds = None
    start = time.monotonic()
    mean, std = gdalio.band_statistics(gdalio.open_raster(path), [1, 2, 3])
    assert time.monotonic() - start < 5.0
    assert mean == [0.0, 0.0, 0.0] and std == [1.0, 1.0, 1.0]  # empty blocks read as 0
