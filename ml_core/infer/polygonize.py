"""Raster to polygons and polygons back to raster statistics, shared by extraction, metrics
and the review hints: 8-connected polygons of a band (holes kept), of pixels in a value range,
and the mean of a raster inside each polygon.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from osgeo import gdal, ogr, osr

from ml_core.events import CancelToken, check_cancel
from ml_core.io import raster as gdalio
from ml_core.io.grid import burn
from ml_core.io.vector import memory_layer, srs_of

gdal.UseExceptions()
ogr.UseExceptions()


def band_polygons(band: gdal.Band, srs: Optional[osr.SpatialReference]) -> list:
    """(value, polygon) for each 8-connected region of equal non-zero value of ``band``, holes
    kept (``gdal.Polygonize`` into an in-memory layer)."""
    mem = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = mem.CreateLayer("regions", srs=srs, geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("value", ogr.OFTInteger))
    gdal.Polygonize(band, band, layer, 0, ["8CONNECTED=8"])
    return [(f.GetField(0), f.GetGeometryRef().Clone()) for f in layer]


def binary_polygons(ds: gdal.Dataset, low: float, high: float = np.inf,
                    cancel: Optional[CancelToken] = None) -> list:
    """8-connected polygons (holes kept) of pixels with ``low <= value <= high`` in band 1.

    The binary raster is written strip by strip to a compressed in-memory GeoTIFF, so memory
    stays bounded by the raster width.
    """
    W, H = ds.RasterXSize, ds.RasterYSize
    path = f"/vsimem/bfe_binary_{id(ds)}.tif"
    binary = gdalio.create_like(ds, path, 0, 0, W, H, gdal.GDT_Byte)
    src = ds.GetRasterBand(1)
    nodata = src.GetNoDataValue()
    rows = gdalio.strip_rows(W)
    try:
        for y0 in range(0, H, rows):
            check_cancel(cancel)
            v = src.ReadAsArray(0, y0, W, min(rows, H - y0))
            on = (v >= low) & (v <= high) & (v != nodata if nodata is not None else True)
            binary.GetRasterBand(1).WriteArray(on.astype(np.uint8), 0, y0)
        return [geom for _, geom in band_polygons(binary.GetRasterBand(1), ds.GetSpatialRef())]
    finally:
        binary = None
        gdal.Unlink(path)


def zonal_mean(ds: gdal.Dataset, geoms: list,
               cancel: Optional[CancelToken] = None) -> np.ndarray:
    """Mean of band 1 inside each polygon (raster CRS); NaN where a polygon has no valid pixel.

    Polygon ids are burned strip by strip and averaged with ``np.bincount``.
    """
    n = len(geoms)
    sums, counts = np.zeros(n + 1), np.zeros(n + 1)
    if n == 0:
        return sums[1:]
    _src, layer = memory_layer(geoms, srs_of(ds))
    W, H = ds.RasterXSize, ds.RasterYSize
    band = ds.GetRasterBand(1)
    nodata = band.GetNoDataValue()
    rows = gdalio.strip_rows(W)
    for y0 in range(0, H, rows):
        check_cancel(cancel)
        h = min(rows, H - y0)
        ids = burn(layer, ds, 0, y0, W, h, value=None, dtype=gdal.GDT_Int32)
        prob = band.ReadAsArray(0, y0, W, h).astype(np.float64)
        keep = (ids > 0) & ((prob != nodata) if nodata is not None else True)
        sums += np.bincount(ids[keep], weights=prob[keep], minlength=n + 1)
        counts += np.bincount(ids[keep], minlength=n + 1)
    return np.divide(sums, counts, out=np.full_like(sums, np.nan), where=counts > 0)[1:]


__all__ = ["band_polygons", "binary_polygons", "zonal_mean"]
