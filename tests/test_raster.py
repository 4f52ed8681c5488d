"""raster.py: opening, band choice, validity rules, windowed reads, statistics, pixel size."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal

from ml_core.errors import InputError
from ml_core.io import raster as gdalio


def test_no_crs_is_input_error(make_raster):
    path = make_raster(epsg=None)
    with pytest.raises(InputError, match=f"{path.name}.*coordinate reference system"):
        gdalio.open_raster(path)


def test_corrupt_and_missing_raster(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage" * 10)
    with pytest.raises(InputError, match=r"bad\.tif.*corrupt"):
        gdalio.open_raster(bad)
    with pytest.raises(InputError, match="not found"):
        gdalio.open_raster(tmp_path / "missing.tif")


def test_default_bands_by_colour_interpretation(make_raster):
    interp = [gdal.GCI_BlueBand, gdal.GCI_GreenBand, gdal.GCI_RedBand]
    assert gdalio.default_bands(gdalio.open_raster(make_raster(interp=interp))) == [3, 2, 1]
    assert gdalio.default_bands(gdalio.open_raster(make_raster("g.tif", bands=1))) == [1]


def test_window_outside_raster_is_padded_invalid(make_raster):
    ds = gdalio.open_raster(make_raster(width=20, height=10))
    img, valid = gdalio.read_window(ds, [1, 2, 3], -5, -5, 32, 32)
    assert img.shape == (3, 32, 32) and valid.sum() == 200
    assert not valid[:5].any() and not valid[:, 25:].any()
    assert (img[:, ~valid] == 0).all()
    ref = ds.ReadAsArray()
    np.testing.assert_array_equal(img[:, 5:15, 5:25], ref)


def test_resampled_read_and_statistics(make_raster):
    data = np.full((1, 40, 40), 7, np.uint16)
    ds = gdalio.open_raster(make_raster(bands=1, width=40, height=40, data=data, dtype=np.uint16))
    img, valid = gdalio.read_window(ds, [1], 0, 0, 40, 40, out_size=(20, 20))
    assert img.shape == (1, 20, 20) and valid.all() and np.allclose(img, 7)
    mean, std = gdalio.band_statistics(ds, [1])
    assert mean == [7.0] and std == [1.0]


def test_internal_mask_and_nodata_give_validity(make_raster):
    mask = np.zeros((32, 32), bool)
    mask[8:16, 8:24] = True
    ds = gdalio.open_raster(make_raster(width=32, height=32, mask=mask))
    _, valid = gdalio.read_window(ds, [1, 2, 3], 0, 0, 32, 32)
    np.testing.assert_array_equal(valid, mask)
    data = np.ones((1, 8, 8), np.uint8)
    data[0, 0, 0] = 0
    ds = gdalio.open_raster(make_raster("n.tif", bands=1, width=8, height=8, data=data, nodata=0))
    assert gdalio.read_window(ds, [1], 0, 0, 8, 8)[1].sum() == 63


def test_alpha_band_that_is_data_is_not_a_mask(make_raster):
    rng = np.random.default_rng(1)
    data = rng.integers(1, 250, (4, 16, 16)).astype(np.uint8)
    interp = [gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand, gdal.GCI_AlphaBand]
    ds = gdalio.open_raster(make_raster(width=16, height=16, data=data, interp=interp))
    assert ds.GetRasterBand(1).GetMaskFlags() & gdal.GMF_ALPHA
    assert gdalio.valid_mask_band(ds, [1, 2, 3]) == gdalio.ValidityRule()
    assert gdalio.read_window(ds, [1, 2, 3, 4], 0, 0, 16, 16)[1].all()
    data[3] = 0
    data[3, :8] = 255  # a genuine alpha band: top half valid
    ds = gdalio.open_raster(make_raster("a.tif", width=16, height=16, data=data, interp=interp))
    assert gdalio.read_window(ds, [1, 2, 3], 0, 0, 16, 16)[1].sum() == 128


@pytest.mark.shared_data
def test_spacenet_nir_tagged_alpha(shared_data):
    path = next((shared_data / "spacenet_atlanta").glob("*RGBNIR*.tif"))
    ds = gdalio.open_raster(path)
    assert gdalio.default_bands(ds) == [1, 2, 3]
    _, valid = gdalio.read_window(ds, [1, 2, 3], 0, 0, 64, 64)
    assert valid.all()
    assert abs(gdalio.pixel_size_m(ds) - 0.5) < 0.01


def test_pixel_size_in_metres_for_4326(make_raster):
    deg = 1e-5
    ds = gdalio.open_raster(make_raster(epsg=4326, origin=(32.6, 0.35), pixel=deg))
    assert abs(gdalio.pixel_size_m(ds) - deg * 111_320) / (deg * 111_320) < 0.01
