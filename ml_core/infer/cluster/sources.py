"""A raster, a VRT or a folder of GeoTIFFs as one raster path that every worker can open.

A folder becomes a VRT mosaic (``gdal.BuildVRT``) of its ``*.tif``/``*.tiff`` files. When their
CRSs differ, each file is first warped (``gdal.Warp`` to format VRT, nothing resampled on disk) to
the CRS, pixel size and pixel grid of the first file by name, with an alpha band marking the
imagery, so the blank corners of reprojected files are invalid, not black imagery. The VRT is
written in a hidden folder beside the output (on a cluster, that folder must be visible to the
workers) and removed afterwards; it references the files by absolute path: nothing is copied.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Union

from osgeo import gdal

from ml_core.errors import InputError
from ml_core.io import raster as gdalio

gdal.UseExceptions()

PathLike = Union[str, os.PathLike]
SUFFIXES = (".tif", ".tiff")


def folder_rasters(folder: Path) -> list[Path]:
    """The GeoTIFFs of ``folder`` by name; :class:`InputError` when there are none."""
    files = sorted(p.resolve() for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not files:
        raise InputError(f"Folder {folder} holds no GeoTIFF (.tif, .tiff). Choose a folder of "
                         "GeoTIFFs, a VRT or a raster file.")
    return files


def _warped(src: gdal.Dataset, first: gdal.Dataset, out_vrt: Path) -> str:
    """``src`` as a VRT on the grid of ``first`` (its CRS, pixel size and pixel origin), with an
    alpha band that is 0 outside ``src``'s imagery."""
    gt = first.GetGeoTransform()
    opts = {"format": "VRT", "dstSRS": first.GetSpatialRef().ExportToWkt(), "xRes": abs(gt[1]),
            "yRes": abs(gt[5]), "dstAlpha": True, "resampleAlg": "bilinear"}
    probe = gdal.Warp(str(out_vrt), src, **opts)
    pg = probe.GetGeoTransform()
    x0, y1 = pg[0], pg[3]
    x1, y0 = x0 + probe.RasterXSize * pg[1], y1 + probe.RasterYSize * pg[5]
    probe = None
    snap = lambda v, origin, step, up: origin + step * (  # noqa: E731
        math.ceil((v - origin) / step) if up else math.floor((v - origin) / step))
    bounds = (snap(x0, gt[0], gt[1], False), snap(y0, gt[3], -gt[5], False),
              snap(x1, gt[0], gt[1], True), snap(y1, gt[3], -gt[5], True))
    gdal.Warp(str(out_vrt), src, outputBounds=bounds, **opts)
    return str(out_vrt)


def mosaic(files: list[Path], out_vrt: Path) -> Path:
    """One VRT over ``files``; when their CRSs differ, each is first warped to the first's grid."""
    datasets = [gdalio.open_raster(f) for f in files]
    first = datasets[0]
    counts = {ds.RasterCount for ds in datasets}
    if len(counts) > 1:
        raise InputError(f"The GeoTIFFs in {files[0].parent} have different band counts "
                         f"({sorted(counts)}). Put only rasters with the same bands in the folder.")
    names = [str(f) for f in files]
    srs = first.GetSpatialRef()
    if not all(ds.GetSpatialRef().IsSame(srs) for ds in datasets):
        names = [_warped(ds, first, out_vrt.with_name(f"warped_{i}.vrt"))
                 for i, ds in enumerate(datasets)]
    gdal.BuildVRT(str(out_vrt), names, resolution="highest", resampleAlg="bilinear")
    return out_vrt


@contextlib.contextmanager
def raster_source(path: PathLike, beside: PathLike) -> Iterator[str]:
    """``path`` itself for a raster or VRT; for a folder, a mosaic VRT that lives for the block
    in a hidden folder inside ``beside`` (the output's folder)."""
    path = Path(path)
    if not path.is_dir():
        yield str(path)
        return
    files = folder_rasters(path)
    Path(beside).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".bfe_mosaic_", dir=beside))
    try:
        yield str(mosaic(files, workdir / f"{path.name or 'mosaic'}.vrt"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
