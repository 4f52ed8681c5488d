"""bfe rasterize / drop / predict / extract / evaluate end to end on tiny files."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from conftest import pixel_box
from osgeo import gdal, ogr

from ml_core.cli import geo
from ml_core.errors import InputError
from ml_core.learn.model import UNet
from ml_core.learn.modelfile import ModelCard, save_model


def bfe(*argv) -> int:
    parser = argparse.ArgumentParser(prog="bfe")
    geo.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture
def tiny_model(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = UNet(3, width=4, depth=2)
    card = ModelCard(architecture=net.architecture(), bands=[1, 2, 3], mean=[100.0] * 3,
                     std=[50.0] * 3, gsd_m=1.0, threshold=0.0)  # threshold 0: every pixel
    return save_model(tmp_path / "tiny.safetensors", net, card)


def test_cli_pipeline(make_raster, make_vector, tmp_path, tiny_model, capsys):
    raster = make_raster(width=48, height=40)
    osm = make_vector("osm.gpkg", [pixel_box(2, 2, 10, 10), pixel_box(20, 20, 30, 30)])
    assert bfe("rasterize", raster, osm, "-o", tmp_path / "m.tif", "--unknown-margin", "1") == 0
    assert gdal.Open(str(tmp_path / "m.tif")).ReadAsArray().max() == 255
    assert bfe("drop", osm, "--fraction", "0.5", "--seed", "1", "-o", tmp_path / "p.gpkg") == 0
    assert bfe("predict", raster, "-m", tiny_model, "-o", tmp_path / "prob.tif",
               "--tile-size", "32", "--overlap", "8", "--device", "cpu") == 0
    assert bfe("extract", raster, "-m", tiny_model, "-o", tmp_path / "f.gpkg", "--existing", osm,
               "--tile-size", "32", "--device", "cpu", "--min-area", "1") == 0
    src = ogr.Open(str(tmp_path / "f.gpkg"))
    assert src.GetLayerByName("footprints").GetFeatureCount() >= 1  # threshold 0 -> one blob
    assert bfe("extract", tmp_path / "prob.tif", "-o", tmp_path / "g.gpkg") == 0
    assert bfe("evaluate", tmp_path / "m.tif", "--truth", osm, "--json", tmp_path / "e.json") == 0
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert metrics["pixel"]["dice"] == pytest.approx(1.0)
    assert "footprints" in capsys.readouterr().out


def test_cli_bad_input_names_file(make_raster, tmp_path, tiny_model):
    with pytest.raises(InputError, match=r"nocrs\.tif"):
        bfe("predict", make_raster("nocrs.tif", epsg=None), "-m", tiny_model,
            "-o", tmp_path / "x.tif")
    assert not (tmp_path / "x.tif").exists()


def test_cli_drop_on_a_mask_drops_whole_components(make_raster, tmp_path):
    from ml_core.cli import main
    from ml_core.labels.rasterize import read_mask

    mask = np.zeros((40, 40), np.uint8)
    mask[2:8, 2:8] = 1
    mask[20:30, 5:9] = 1
    mask[12:16, 25:35] = 1
    mask[35:40, :] = 255
    src = make_raster("mask.tif", width=40, height=40, data=mask)
    out, dropped = tmp_path / "partial.tif", tmp_path / "dropped.tif"
    assert main(["drop", str(src), "--fraction", "0.34", "--seed", "1", "-o", str(out),
                 "--dropped-mask", str(dropped)]) == 0
    partial, gone = read_mask(out), read_mask(dropped).astype(bool)
    assert (partial[35:] == 255).all()  # unknown stays unknown
    assert gone.sum() in (36, 40)  # exactly one whole component (6x6 or 10x4) went
    assert (partial[gone] == 0).all() and (partial[~gone] == mask[~gone]).all()
