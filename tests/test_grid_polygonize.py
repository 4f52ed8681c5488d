"""Grid maths (io.grid), polygonising (infer.polygonize) and connected components, by hand."""

import numpy as np
from osgeo import gdal, osr

from ml_core.infer.polygonize import band_polygons, binary_polygons, zonal_mean
from ml_core.io.grid import overlaps, pixel_window, raster_bounds, window_envelope
from ml_core.labels.rasterize import component_labels


def _grid(values: np.ndarray, origin=(1000.0, 2000.0), pixel=2.0,
          dtype: int = gdal.GDT_Float32) -> gdal.Dataset:
    h, w = values.shape
    ds = gdal.GetDriverByName("MEM").Create("", w, h, 1, dtype)
    ds.SetGeoTransform((origin[0], pixel, 0, origin[1], 0, -pixel))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32645)
    ds.SetSpatialRef(srs)
    ds.GetRasterBand(1).WriteArray(values)
    return ds


def test_windows_envelopes_and_bounds():
    ds = _grid(np.zeros((10, 20), np.float32))
    assert raster_bounds(ds) == (1000.0, 1040.0, 1980.0, 2000.0)
    assert window_envelope(ds, 2, 1, 3, 4) == (1004.0, 1010.0, 1990.0, 1998.0)
    assert pixel_window(ds, (1004.0, 1010.0, 1990.0, 1998.0)) == (2, 1, 3, 4)
    assert pixel_window(ds, (1003.0, 1100.0, 1900.0, 1999.0)) == (1, 0, 19, 10)  # clipped
    assert overlaps((0, 2, 0, 2), (1, 3, 1, 3)) and not overlaps((0, 1, 0, 1), (1, 2, 0, 1))


def test_polygons_keep_holes_and_zonal_means_follow_them():
    values = np.zeros((8, 8), np.float32)
    values[1:7, 1:7] = 0.9
    values[3:5, 3:5] = 0.1  # a 2 x 2 hole in a 6 x 6 block
    values[7, 7] = 0.8  # touches the block only diagonally: one 8-connected polygon
    ds = _grid(values)
    (geom,) = binary_polygons(ds, 0.5)
    assert geom.GetGeometryCount() == 2  # outer ring and the hole
    assert geom.GetArea() == (36 - 4 + 1) * 4.0  # pixels of 2 m x 2 m
    np.testing.assert_allclose(zonal_mean(ds, [geom]), [(32 * 0.9 + 0.8) / 33], rtol=1e-6)
    classes = _grid(np.round(values * 10), dtype=gdal.GDT_Byte)  # 9 block, 1 hole, 8 corner
    regions = band_polygons(classes.GetRasterBand(1), None)
    assert sorted((v, g.GetArea()) for v, g in regions) == [(1, 16.0), (8, 4.0), (9, 128.0)]


def test_component_labels_are_eight_connected():
    binary = np.zeros((6, 6), bool)
    binary[0, 0] = binary[1, 1] = True  # diagonal: one component
    binary[0, 3:6] = True
    binary[4:6, 0:2] = True
    labels, n = component_labels(binary)
    assert n == 3 and labels[0, 0] == labels[1, 1] != labels[0, 4]
    assert set(np.unique(labels[binary])) == {1, 2, 3} and (labels[~binary] == 0).all()
