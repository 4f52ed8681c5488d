"""predict.py: seamless blending, padding of small rasters, extent/AOI, GSD resampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import pixel_box
from osgeo import gdal
from torch import nn

from ml_core.config import THRESHOLD_KEY, PredictOptions
from ml_core.errors import InputError
from ml_core.infer.predict import NODATA, predict_raster
from ml_core.infer.tiling import Window, tile_windows
from ml_core.learn.modelfile import LoadedModel, ModelCard


class Constant(nn.Module):
    """Logits (0, 1.2) everywhere: probability sigmoid(1.2)."""

    multiple = 16

    def forward(self, x):
        out = torch.zeros(x.shape[0], 2, *x.shape[2:])
        out[:, 1] = 1.2
        return out


class Counting(Constant):
    """The constant model, counting the tiles it is run on."""

    tiles = 0

    def forward(self, x):
        self.tiles += x.shape[0]
        return super().forward(x)


class Pointwise(nn.Module):
    """A 1x1 convolution: translation-equivariant, so tiling must not change anything."""

    multiple = 1

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.conv(x)


def loaded(net, gsd=1.0):
    card = ModelCard(architecture={"name": "test", "in_channels": 3}, bands=[1, 2, 3],
                     mean=[100.0] * 3, std=[50.0] * 3, gsd_m=gsd)
    return LoadedModel(net=net.eval(), card=card)


def read(path):
    return gdal.Open(str(path)).ReadAsArray()


@pytest.mark.parametrize("net", [Constant(), Pointwise()])
def test_tiled_equals_untiled(make_raster, tmp_path, net):
    raster = make_raster(width=150, height=110)
    tiled = predict_raster(raster, loaded(net), tmp_path / "t.tif",
                           PredictOptions(tile_size=48, overlap=16, batch_size=3, device="cpu"))
    whole = predict_raster(raster, loaded(net), tmp_path / "w.tif",
                           PredictOptions(tile_size=160, overlap=0, device="cpu"))
    a, b = read(tiled), read(whole)
    assert a.shape == (110, 150) and (a >= 0).all()
    np.testing.assert_allclose(a, b, atol=1e-5)
    if isinstance(net, Constant):
        np.testing.assert_allclose(a, 1 / (1 + np.exp(-1.2)), atol=1e-5)


def test_normalised_with_the_rasters_own_statistics_or_the_cards(make_raster, tmp_path):
    from ml_core.io import raster as gdalio

    raster = make_raster(width=64, height=48)
    mean, std = gdalio.band_statistics(gdalio.open_raster(raster), [1, 2, 3])
    ds = gdal.Open(str(raster))
    img = ds.ReadAsArray().astype(np.float32)
    net = Pointwise()

    def expected(m, s):
        x = (torch.from_numpy(img)[None] - torch.tensor(m).view(1, 3, 1, 1)) / \
            torch.tensor(s).view(1, 3, 1, 1)
        with torch.no_grad():
            return torch.softmax(net(x.float()), 1)[0, 1].numpy()

    def predicted(normalize):
        opts = PredictOptions(tile_size=64, overlap=0, device="cpu", normalize=normalize)
        return read(predict_raster(raster, loaded(net), tmp_path / f"{normalize}.tif", opts))

    own, card = predicted("raster"), predicted("model")
    np.testing.assert_allclose(own, expected(mean, std), atol=1e-5)
    np.testing.assert_allclose(card, expected([100.0] * 3, [50.0] * 3), atol=1e-5)
    assert np.abs(own - card).max() > 0.01


def test_small_raster_masked_pixels_and_output_format(make_raster, tmp_path):
    valid = np.ones((20, 30), bool)
    valid[:5] = False
    raster = make_raster(width=30, height=20, mask=valid)
    out = predict_raster(raster, loaded(Constant()), tmp_path / "p.tif",
                         PredictOptions(tile_size=64, device="cpu"))
    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Float32 and band.GetNoDataValue() == NODATA
    assert ds.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
    assert ds.GetGeoTransform() == gdal.Open(str(raster)).GetGeoTransform()
    prob = band.ReadAsArray()
    assert (prob[:5] == NODATA).all() and (prob[5:] > 0.5).all()
    # the model's threshold travels with its probability raster, for extraction
    assert ds.GetMetadataItem(THRESHOLD_KEY) == "0.5"


def test_extent_and_aoi(make_raster, make_vector, tmp_path):
    raster = make_raster(width=100, height=100)
    opts = PredictOptions(tile_size=32, overlap=8, device="cpu")
    gt = gdal.Open(str(raster)).GetGeoTransform()
    extent = (gt[0] + 10, gt[3] - 60, gt[0] + 50, gt[3] - 20)  # xmin, ymin, xmax, ymax
    out = predict_raster(raster, loaded(Constant()), tmp_path / "e.tif", opts, extent=extent)
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == (40, 40)
    assert ds.GetGeoTransform()[0] == gt[0] + 10
    aoi = make_vector("aoi.gpkg", [pixel_box(10, 10, 30, 30), pixel_box(50, 50, 60, 60)])
    prob = read(predict_raster(raster, loaded(Constant()), tmp_path / "a.tif", opts, aoi=aoi))
    assert prob.shape == (50, 50) and (prob > 0).sum() == 20 * 20 + 10 * 10
    # two far corners: only the tiles that meet them are run
    squares = [(3, 3, 12, 12), (88, 88, 97, 97)]  # x0, y0, x1, y1 in pixels
    corners = make_vector("corners.gpkg", [pixel_box(*sq) for sq in squares])
    counting = Counting()
    prob = read(predict_raster(raster, loaded(counting), tmp_path / "c.tif", opts, aoi=corners))
    assert (prob > 0).sum() == 2 * 9 * 9
    windows = tile_windows(100, 100, 32, 8, Window(3, 3, 94, 94))
    meeting = [w for w in windows if any(w.x < x1 and x0 < w.x + w.w and w.y < y1 and
                                         y0 < w.y + w.h for x0, y0, x1, y1 in squares)]
    assert counting.tiles == len(meeting) < len(windows)
    with pytest.raises(InputError, match="does not overlap"):
        predict_raster(raster, loaded(Constant()), tmp_path / "x.tif", opts,
                       extent=(0, 0, 10, 10))
    assert not (tmp_path / "x.tif").exists()


def test_gsd_resampling_keeps_grid(make_raster, tmp_path):
    raster = make_raster(width=70, height=50)
    out = predict_raster(raster, loaded(Pointwise(), gsd=0.5), tmp_path / "g.tif",
                         PredictOptions(tile_size=64, overlap=16, device="cpu"))
    prob = read(out)
    assert prob.shape == (50, 70) and (prob >= 0).all() and (prob <= 1).all()


def test_wrong_band_count(make_raster, tmp_path):
    raster = make_raster(bands=1)
    with pytest.raises(InputError, match="needs bands"):
        predict_raster(raster, loaded(Constant()), tmp_path / "p.tif", PredictOptions(device="cpu"))


@pytest.mark.shared_data
def test_masked_hotosm_raster_keeps_nodata(shared_data, tmp_path):
    raster = shared_data / "hotosm" / "kampala" / "kampala_z19.tif"
    card_gsd = 0.3  # the raster's GSD: no resampling
    out = predict_raster(raster, loaded(Constant(), gsd=card_gsd), tmp_path / "k.tif",
                         PredictOptions(tile_size=256, overlap=32, batch_size=8, device="cpu"))
    prob = read(out)
    ds = gdal.Open(str(raster))
    mask = ds.GetRasterBand(1).GetMaskBand().ReadAsArray() > 0
    np.testing.assert_array_equal(prob != NODATA, mask)
