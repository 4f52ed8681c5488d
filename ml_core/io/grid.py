"""The pixel grid of a north-up raster: windows, envelopes and bounds in its CRS, and burning
a vector layer into a window of the grid (GDAL reprojects the layer on the fly).

Envelopes are (minx, maxx, miny, maxy), as OGR's ``GetEnvelope``; windows (x, y, w, h) in
pixels.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from osgeo import gdal

gdal.UseExceptions()


def burn(layer, grid: gdal.Dataset, xoff: int, yoff: int, xsize: int, ysize: int,
         value: Optional[int] = 1, all_touched: bool = False,
         dtype: int = gdal.GDT_Byte) -> np.ndarray:
    """Rasterise ``layer`` on a window of ``grid``'s pixel grid; ``value=None`` burns field ``id``.

    Geometries in another CRS are reprojected by GDAL on the fly.
    """
    mem = gdal.GetDriverByName("MEM").Create("", xsize, ysize, 1, dtype)
    gt = list(grid.GetGeoTransform())
    gt[0], gt[3] = gt[0] + xoff * gt[1] + yoff * gt[2], gt[3] + xoff * gt[4] + yoff * gt[5]
    mem.SetGeoTransform(gt)
    mem.SetProjection(grid.GetProjection())
    opts = ["ALL_TOUCHED=TRUE"] if all_touched else []
    if value is None:
        gdal.RasterizeLayer(mem, [1], layer, options=[*opts, "ATTRIBUTE=id"])
    else:
        gdal.RasterizeLayer(mem, [1], layer, burn_values=[value], options=opts)
    return mem.GetRasterBand(1).ReadAsArray()


def raster_bounds(ds: gdal.Dataset) -> tuple:
    """(minx, maxx, miny, maxy) of a north-up raster in its CRS."""
    return window_envelope(ds, 0, 0, ds.RasterXSize, ds.RasterYSize)


def overlaps(a: tuple, b: tuple) -> bool:
    """True when two (minx, maxx, miny, maxy) envelopes intersect."""
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def pixel_window(ds: gdal.Dataset, env: tuple) -> tuple:
    """The pixel window (x, y, w, h) of ``ds`` covering envelope ``env``, clipped to the raster."""
    gt = ds.GetGeoTransform()
    xs = sorted([(env[0] - gt[0]) / gt[1], (env[1] - gt[0]) / gt[1]])
    ys = sorted([(env[2] - gt[3]) / gt[5], (env[3] - gt[3]) / gt[5]])
    x0, x1 = max(0, int(np.floor(xs[0]))), min(ds.RasterXSize, int(np.ceil(xs[1])))
    y0, y1 = max(0, int(np.floor(ys[0]))), min(ds.RasterYSize, int(np.ceil(ys[1])))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def window_envelope(ds: gdal.Dataset, x: int, y: int, w: int, h: int) -> tuple:
    """(minx, maxx, miny, maxy) of the pixel window (x, y, w, h) of a north-up raster."""
    gt = ds.GetGeoTransform()
    xs = [gt[0] + x * gt[1], gt[0] + (x + w) * gt[1]]
    ys = [gt[3] + y * gt[5], gt[3] + (y + h) * gt[5]]
    return min(xs), max(xs), min(ys), max(ys)


__all__ = ["burn", "overlaps", "pixel_window", "raster_bounds", "window_envelope"]
