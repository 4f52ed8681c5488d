"""Shared test fixtures: small real GDAL/OGR files written in ``tmp_path``, and the shared data.

- ``make_raster(name="r.tif", width=64, height=64, bands=3, ...)`` writes a GeoTIFF and returns
  its path. Options: ``epsg`` (None: no CRS), ``origin`` (upper-left x, y), ``pixel`` (size in CRS
  units), ``data`` ([C, H, W] array; default a seeded random image), ``dtype`` (a numpy dtype),
  ``nodata``, ``mask`` (bool [H, W] -> internal per-dataset mask band, as the hotosm rasters),
  ``interp`` (list of ``gdal.GCI_*`` per band).
- ``make_vector(name="v.gpkg", wkts=[...], epsg=3857, layer="buildings", geom_type=None)``
  writes a GeoPackage (or any OGR format by extension) and returns its path. ``epsg=None``: no CRS.
- ``write_tiny_model(path, gsd_m=1.0)``: a seeded 3-band U-Net of width 4 and depth 2 saved
  with its card (torch imported only then).
- ``small_disk``: a folder on a real 2 MB tmpfs (needs root to mount; skipped otherwise), and
  ``fill(folder, free)`` to leave only ``free`` bytes on it, for disk-full tests.
- ``shared_data``: ``Path`` of ``../shared/data`` (relative to the repository root); the test is
  skipped with reason ``shared data absent: ../shared/data`` when it is missing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, gdal_array, ogr, osr

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Upper-left corner of the default test rasters: EPSG:3857, near the equator (Kampala-like).
ORIGIN_3857 = (3627854.0, 39135.0)


def _srs(epsg):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs


def write_raster(path, width=64, height=64, bands=3, epsg=3857, origin=ORIGIN_3857, pixel=1.0,
                 data=None, dtype=np.uint8, nodata=None, mask=None, interp=None) -> Path:
    """Write a north-up GeoTIFF; see the module docstring for the options."""
    if data is None:
        rng = np.random.default_rng(0)
        data = rng.integers(0, 200, (bands, height, width)).astype(dtype)
    data = np.asarray(data).reshape(-1, height, width)
    gtype = gdal_array.NumericTypeCodeToGDALTypeCode(data.dtype)
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, data.shape[0], gtype)
    ds.SetGeoTransform((origin[0], pixel, 0, origin[1], 0, -pixel))
    if epsg is not None:
        ds.SetSpatialRef(_srs(epsg))
    for i, plane in enumerate(data, start=1):
        band = ds.GetRasterBand(i)
        band.WriteArray(plane)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        if interp is not None:
            band.SetColorInterpretation(interp[i - 1])
    if mask is not None:
        ds.CreateMaskBand(gdal.GMF_PER_DATASET)
        ds.GetRasterBand(1).GetMaskBand().WriteArray(np.asarray(mask, np.uint8) * 255)
    ds = None
    return Path(path)


def write_vector(path, wkts, epsg=3857, layer="buildings", geom_type=None) -> Path:
    """Write geometries given as WKT to an OGR file (format from the extension)."""
    driver = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".shp": "ESRI Shapefile"}[Path(path).suffix]
    src = ogr.GetDriverByName(driver).CreateDataSource(str(path))
    srs = _srs(epsg) if epsg is not None else None
    lyr = src.CreateLayer(layer, srs=srs, geom_type=geom_type or ogr.wkbUnknown)
    lyr.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    for i, wkt in enumerate(wkts):
        feat = ogr.Feature(lyr.GetLayerDefn())
        feat.SetField("name", f"f{i}")
        feat.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        lyr.CreateFeature(feat)
    src = None
    return Path(path)


def box(x0, y0, x1, y1) -> str:
    """WKT of an axis-aligned rectangle."""
    return f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"


def pixel_box(col0, row0, col1, row1, origin=ORIGIN_3857, pixel=1.0) -> str:
    """WKT of a rectangle covering pixel columns [col0, col1) and rows [row0, row1)."""
    ox, oy = origin
    return box(ox + col0 * pixel, oy - row1 * pixel, ox + col1 * pixel, oy - row0 * pixel)


@pytest.fixture
def make_raster(tmp_path):
    """Factory: ``make_raster(name="r.tif", **options)`` -> Path (see module docstring)."""
    def make(name="r.tif", **kwargs):
        return write_raster(tmp_path / name, **kwargs)
    return make


@pytest.fixture
def make_vector(tmp_path):
    """Factory: ``make_vector(name="v.gpkg", wkts=[...], **options)`` -> Path."""
    def make(name="v.gpkg", wkts=(), **kwargs):
        return write_vector(tmp_path / name, wkts, **kwargs)
    return make


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real imagery and OSM buildings), or skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("shared data absent: ../shared/data")
    return SHARED_DATA


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB tmpfs (``mount -t tmpfs``, needs root); skipped where mounting is refused."""
    folder = tmp_path / "F"
    folder.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(folder)],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs to fill ({exc}); needs root")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({done.stderr.strip()}); needs root")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False, timeout=20)


def fill(folder: Path, free: int) -> Path:
    """Fill ``folder``'s file system until only about ``free`` bytes are left."""
    st = os.statvfs(folder)
    filler = folder / "filler"
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - free))
    return filler


def write_tiny_model(path, gsd_m: float = 1.0) -> Path:
    """A seeded, untrained 3-band U-Net (width 4, depth 2) saved as a bfe model with its card."""
    import torch

    from ml_core.learn.model import UNet
    from ml_core.learn.modelfile import ModelCard, save_model

    torch.manual_seed(0)
    net = UNet(3, 2, width=4, depth=2)
    return save_model(path, net, ModelCard(architecture=net.architecture(), bands=[1, 2, 3],
                                           mean=[100.0] * 3, std=[50.0] * 3, gsd_m=gsd_m))
