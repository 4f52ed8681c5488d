"""A PNG quick-look of a raster with building layers drawn over it (no plotting library needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
from osgeo import gdal, ogr

from ml_core.io.atomic import atomic_output
from ml_core.io.grid import burn
from ml_core.io.vector import open_layer

gdal.UseExceptions()
ogr.UseExceptions()

PathLike = Union[str, os.PathLike]
Overlay = tuple  # (vector path, layer name or None, RGB colour)


def _burn(shape: tuple, geotransform: tuple, projection: str, path: PathLike,
          layer: Union[str, None]) -> np.ndarray:
    """Rasterise a vector layer onto the preview grid (GDAL reprojects when CRSs differ)."""
    height, width = shape
    grid = gdal.GetDriverByName("MEM").Create("", width, height, 1, gdal.GDT_Byte)
    grid.SetGeoTransform(geotransform)
    grid.SetProjection(projection)
    _source, lyr = open_layer(f"{path}|layername={layer}" if layer else path)
    return burn(lyr, grid, 0, 0, width, height).astype(bool)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def write_preview(raster: PathLike, out_png: PathLike, overlays: Sequence[Overlay],
                  max_size: int = 1024) -> Path:
    """Draw each overlay's outlines in its colour over the raster's first three bands."""
    ds = gdal.Open(str(raster))
    scale = max(ds.RasterXSize, ds.RasterYSize) / max_size
    scale = max(scale, 1.0)
    width, height = round(ds.RasterXSize / scale), round(ds.RasterYSize / scale)
    bands = [1, 2, 3] if ds.RasterCount >= 3 else [1, 1, 1]
    rgb = np.stack([
        ds.GetRasterBand(b).ReadAsArray(buf_xsize=width, buf_ysize=height).astype(np.float32)
        for b in bands
    ])
    lo, hi = np.percentile(rgb, [1, 99])
    rgb = np.clip((rgb - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    gt = list(ds.GetGeoTransform())
    gt[1], gt[2] = gt[1] * ds.RasterXSize / width, gt[2] * ds.RasterYSize / height
    gt[4], gt[5] = gt[4] * ds.RasterXSize / width, gt[5] * ds.RasterYSize / height
    for path, layer, colour in overlays:
        edge = _outline(_burn((height, width), tuple(gt), ds.GetProjection(), path, layer))
        for channel, value in enumerate(colour):
            rgb[channel][edge] = value
    mem = gdal.GetDriverByName("MEM").Create("", width, height, 3, gdal.GDT_Byte)
    for channel in range(3):
        mem.GetRasterBand(channel + 1).WriteArray(rgb[channel])
    with atomic_output(out_png) as tmp:
        gdal.GetDriverByName("PNG").CreateCopy(str(tmp), mem)
        Path(str(tmp) + ".aux.xml").unlink(missing_ok=True)
    return Path(out_png)
