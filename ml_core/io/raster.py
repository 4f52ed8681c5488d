"""GDAL rasters: open and validate, choose bands, windowed reads with validity, statistics, GSD.

Validity (which pixels hold imagery) follows GDAL's mask band (``GetMaskBand``/``GetMaskFlags``:
internal or per-dataset masks, nodata values, alpha bands) with one exception, see
:func:`valid_mask_band`: a band tagged *Alpha* that carries data (e.g. SpaceNet's NIR band) is
never used as a mask.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
from osgeo import gdal, osr

from ml_core.errors import InputError, OutputError
from ml_core.io.vector import ground_distance_m, has_crs

gdal.UseExceptions()
osr.UseExceptions()

PathLike = Union[str, os.PathLike]
RasterLike = Union[PathLike, gdal.Dataset]

_STATS_READ_PX = 1024  # longest side of the decimated read used for band statistics
_STATS_EXACT_PX = 1 << 26  # larger rasters get statistics from a grid of windows
_STATS_GRID = (16, 128)  # windows per side, window size in pixels: 4 Mpx read in all
_RULE_CACHE: dict = {}


def open_raster(path: RasterLike) -> gdal.Dataset:
    """Open a raster for reading; :class:`InputError` when missing, corrupt or not georeferenced.

    A ``gdal.Dataset`` is returned as is, so functions accept either.
    """
    if isinstance(path, gdal.Dataset):
        return path
    name = str(path)
    if not name.startswith("/vsi") and not Path(name).exists():
        raise InputError(f"Raster {name} not found. Check the path.")
    try:
        ds = gdal.Open(name, gdal.GA_ReadOnly)
    except RuntimeError as exc:
        raise InputError(f"Raster {name} cannot be read by GDAL ({exc}). The file is corrupt "
                         "or not a raster; re-export it as GeoTIFF.") from exc
    if ds is None or ds.RasterCount == 0:
        raise InputError(f"Raster {name} has no bands. Choose an image raster.")
    if not has_crs(ds.GetSpatialRef()):
        raise InputError(f"Raster {name} has no coordinate reference system. Assign one "
                         "(QGIS: Layer Properties > Source > CRS, or "
                         "gdal_edit.py -a_srs EPSG:XXXX).")
    if ds.GetGeoTransform(can_return_null=True) is None:
        raise InputError(f"Raster {name} is not georeferenced (no geotransform). Georeference it "
                         "first (QGIS Georeferencer) or use a GeoTIFF with coordinates.")
    return ds


def raster_name(ds: gdal.Dataset) -> str:
    """The file name of a dataset, for messages."""
    return ds.GetDescription() or "<in-memory raster>"


def default_bands(ds: gdal.Dataset) -> list[int]:
    """Red, green, blue by colour interpretation; else bands 1-3; else band 1."""
    interp = {ds.GetRasterBand(i).GetColorInterpretation(): i for i in range(ds.RasterCount, 0, -1)}
    rgb = [interp.get(c) for c in (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand)]
    if all(rgb):
        return rgb
    return [1, 2, 3] if ds.RasterCount >= 3 else [1]


def check_band_list(ds: gdal.Dataset, bands: Sequence[int]) -> list[int]:
    """Validate 1-based band indices against the raster."""
    bands = [int(b) for b in bands]
    bad = [b for b in bands if not 1 <= b <= ds.RasterCount]
    if not bands or bad:
        raise InputError(f"Raster {raster_name(ds)} has {ds.RasterCount} band(s); bands "
                         f"{bad or bands} do not exist. Choose bands between 1 and the band count.")
    return bands


@dataclass(frozen=True)
class ValidityRule:
    """How validity is computed for a band selection.

    ``mask_bands``: bands whose GDAL mask band is read and AND-ed (one band when the mask is
    per dataset). ``nodata``: (band, value) pairs compared directly, used when GDAL's mask would
    be an alpha band that really carries data. Non-finite values are always invalid.
    """

    mask_bands: tuple = ()
    nodata: tuple = ()


def _alpha_band(ds: gdal.Dataset) -> Optional[int]:
    for i in range(1, ds.RasterCount + 1):
        if ds.GetRasterBand(i).GetColorInterpretation() == gdal.GCI_AlphaBand:
            return i
    return None


def _alpha_is_data(ds: gdal.Dataset, alpha: int, bands: Sequence[int]) -> bool:
    """True when the alpha band was selected as data, or holds more than the values 0 and 255."""
    if alpha in bands:
        return True
    band = ds.GetRasterBand(alpha)
    scale = _STATS_READ_PX / max(ds.RasterXSize, ds.RasterYSize)
    w = max(1, min(ds.RasterXSize, int(ds.RasterXSize * scale)))
    h = max(1, min(ds.RasterYSize, int(ds.RasterYSize * scale)))
    values = np.unique(band.ReadAsArray(buf_xsize=w, buf_ysize=h))
    return bool(np.setdiff1d(values, [0, 255]).size)


def valid_mask_band(ds: gdal.Dataset, bands: Optional[Sequence[int]] = None) -> ValidityRule:
    """Decide which mask gives validity for ``bands`` (default: :func:`default_bands`).

    Rule: GDAL's mask band is used (internal/per-dataset mask, nodata, alpha) unless it is an
    alpha band that is data: the user selected the alpha band, or it holds values other than
    0 and 255 (a mislabelled NIR band). Then only the bands' nodata values mark invalid pixels.
    """
    bands = tuple(check_band_list(ds, bands or default_bands(ds)))
    key = (ds.GetDescription(), _file_version(ds.GetDescription()), bands)
    if key[0] and key in _RULE_CACHE:
        return _RULE_CACHE[key]
    flags = ds.GetRasterBand(bands[0]).GetMaskFlags()
    alpha = _alpha_band(ds)
    if flags & gdal.GMF_ALPHA and alpha is not None and _alpha_is_data(ds, alpha, bands):
        nodata = tuple((b, ds.GetRasterBand(b).GetNoDataValue()) for b in bands)
        rule = ValidityRule(nodata=tuple(p for p in nodata if p[1] is not None))
    elif flags == gdal.GMF_ALL_VALID:
        rule = ValidityRule()
    elif flags & gdal.GMF_PER_DATASET:
        rule = ValidityRule(mask_bands=bands[:1])
    else:
        rule = ValidityRule(mask_bands=bands)
    if key[0]:
        _RULE_CACHE[key] = rule
    return rule


def _file_version(path: str) -> tuple:
    """(mtime, size) of a file, so that a replaced raster is not judged by a cached rule."""
    try:
        stat = os.stat(path)
    except OSError:
        return ()
    return (stat.st_mtime_ns, stat.st_size)


def _clip(xoff: int, yoff: int, xsize: int, ysize: int, ds: gdal.Dataset):
    """Intersection of a window with the raster, or None."""
    x0, y0 = max(xoff, 0), max(yoff, 0)
    x1, y1 = min(xoff + xsize, ds.RasterXSize), min(yoff + ysize, ds.RasterYSize)
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def read_window(ds: gdal.Dataset, bands: Sequence[int], xoff: int, yoff: int, xsize: int,
                ysize: int, out_size: Optional[tuple] = None,
                rule: Optional[ValidityRule] = None) -> tuple[np.ndarray, np.ndarray]:
    """Read bands of a window as float32 ``[C, h, w]`` and a validity mask ``[h, w]``.

    ``out_size=(w, h)`` resamples on read (average when shrinking, bilinear when enlarging) so the
    network sees pixels at its own ground sampling distance. Pixels outside the raster are
    invalid and zero. When no pixel is valid the image is not read at all (cheap tile skipping).
    """
    ow, oh = out_size or (xsize, ysize)
    rule = rule or valid_mask_band(ds, bands)
    img = np.zeros((len(bands), oh, ow), np.float32)
    valid = np.zeros((oh, ow), bool)
    clip = _clip(xoff, yoff, xsize, ysize, ds)
    if clip is None:
        return img, valid
    cx, cy, cw, ch = clip
    sx, sy = ow / xsize, oh / ysize
    bx0, by0 = round((cx - xoff) * sx), round((cy - yoff) * sy)
    bx1, by1 = round((cx + cw - xoff) * sx), round((cy + ch - yoff) * sy)
    bw, bh = bx1 - bx0, by1 - by0
    if bw <= 0 or bh <= 0:
        return img, valid
    sub = np.ones((bh, bw), bool)
    for b in rule.mask_bands:
        mask = ds.GetRasterBand(b).GetMaskBand()
        sub &= _read(ds, mask, cx, cy, cw, ch, buf_xsize=bw, buf_ysize=bh) > 0
    if sub.any():
        alg = gdal.GRIORA_Average if sx < 1 or sy < 1 else gdal.GRIORA_Bilinear
        if sx == 1 and sy == 1:
            alg = gdal.GRIORA_NearestNeighbour
        data = _read(ds, ds, cx, cy, cw, ch, buf_xsize=bw, buf_ysize=bh, resample_alg=alg,
                     band_list=list(bands))
        data = data.astype(np.float32, copy=False)
        data = data.reshape(len(bands), bh, bw)
        sub &= np.isfinite(data).all(axis=0)
        for b, value in rule.nodata:
            sub &= data[list(bands).index(b)] != value
        img[:, by0:by1, bx0:bx1] = np.where(sub, data, 0)
    valid[by0:by1, bx0:bx1] = sub
    return img, valid


def _read(ds: gdal.Dataset, source, *args, **kwargs) -> np.ndarray:
    """``source.ReadAsArray(...)``; a truncated file or a VRT's missing source is an
    :class:`InputError` naming ``ds`` instead of GDAL's RuntimeError."""
    try:
        return source.ReadAsArray(*args, **kwargs)
    except RuntimeError as exc:
        raise InputError(f"Raster {raster_name(ds)} cannot be read ({exc}): the file is "
                         "truncated or corrupt, or a file it refers to is missing. Re-download "
                         "or re-export it.") from exc


def read_validity(ds: gdal.Dataset, bands: Sequence[int], xoff: int, yoff: int, xsize: int,
                  ysize: int, rule: Optional[ValidityRule] = None) -> np.ndarray:
    """Validity mask of a window at full resolution (for label masks)."""
    return read_window(ds, bands, xoff, yoff, xsize, ysize, rule=rule)[1]


def band_statistics(ds: gdal.Dataset, bands: Sequence[int]) -> tuple[list, list]:
    """Per-band mean and std over valid pixels of a decimated whole-raster read, or, for a
    raster over :data:`_STATS_EXACT_PX` pixels, of a grid of small windows spread over it (a
    decimated read touches every pixel: minutes on a large mosaic, e.g. for ``--extent``).

    A constant band gets std 1 so normalisation never divides by zero.
    """
    W, H = ds.RasterXSize, ds.RasterYSize
    if W * H > _STATS_EXACT_PX:
        n, size = _STATS_GRID
        reads = [read_window(ds, bands, int(x), int(y), size, size)
                 for y in np.linspace(0, H - size, n) for x in np.linspace(0, W - size, n)]
        img = np.concatenate([r[0] for r in reads], axis=2)
        valid = np.concatenate([r[1] for r in reads], axis=1)
    else:
        scale = min(1.0, _STATS_READ_PX / max(W, H))
        out = (max(1, int(W * scale)), max(1, int(H * scale)))
        img, valid = read_window(ds, bands, 0, 0, W, H, out_size=out)
    if not valid.any():
        raise InputError(f"Raster {raster_name(ds)} has no valid pixels in bands {list(bands)}. "
                         "Check its mask/nodata settings or choose other bands.")
    px = img[:, valid].astype(np.float64)
    std = px.std(axis=1)
    return px.mean(axis=1).tolist(), np.where(std > 1e-6, std, 1.0).tolist()


def pixel_size_m(ds: gdal.Dataset) -> float:
    """Ground distance of one pixel in metres (mean of x and y), in any CRS, EPSG:4326 included.

    Measured at the raster centre in a local UTM zone, so Web Mercator's scale error is removed.
    """
    gt = ds.GetGeoTransform()
    cx, cy = ds.RasterXSize / 2, ds.RasterYSize / 2

    def at(px: float, py: float) -> tuple:
        return gt[0] + px * gt[1] + py * gt[2], gt[3] + px * gt[4] + py * gt[5]

    dx = ground_distance_m(ds.GetSpatialRef(), at(cx, cy), at(cx + 1, cy))
    dy = ground_distance_m(ds.GetSpatialRef(), at(cx, cy), at(cx, cy + 1))
    return (dx + dy) / 2


def create_like(ds: gdal.Dataset, path: PathLike, xoff: int, yoff: int, xsize: int, ysize: int,
                dtype: int, nodata: Optional[float] = None, bands: int = 1) -> gdal.Dataset:
    """Create a tiled, DEFLATE-compressed GeoTIFF of ``bands`` bands on a window of ``ds``'s
    grid."""
    opts = ["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER", "BLOCKXSIZE=256",
            "BLOCKYSIZE=256", "SPARSE_OK=TRUE"]
    try:
        out = gdal.GetDriverByName("GTiff").Create(str(path), xsize, ysize, bands, dtype,
                                                   options=opts)
    except RuntimeError as exc:
        raise OutputError(f"Cannot write {path}: {exc}. Choose another output path.") from exc
    gt = list(ds.GetGeoTransform())
    gt[0], gt[3] = gt[0] + xoff * gt[1] + yoff * gt[2], gt[3] + xoff * gt[4] + yoff * gt[5]
    out.SetGeoTransform(gt)
    out.SetProjection(ds.GetProjection())
    if nodata is not None:
        for i in range(1, bands + 1):
            out.GetRasterBand(i).SetNoDataValue(nodata)
    return out


def strip_rows(width: int, max_pixels: int = 1 << 22, minimum: int = 64) -> int:
    """Rows per strip so that a strip holds about ``max_pixels`` pixels (bounded memory)."""
    return max(minimum, max_pixels // max(width, 1))


GSD_TOLERANCE = 0.2  # pixel sizes within 20 % of the model's are used as they are


def gsd_scale(ds: gdal.Dataset, gsd_m: float) -> float:
    """Raster pixel size / model GSD, or exactly 1 when within :data:`GSD_TOLERANCE`.

    Training and prediction both use it, so the network sees the same scale in each."""
    scale = pixel_size_m(ds) / gsd_m
    return 1.0 if abs(scale - 1) <= GSD_TOLERANCE else scale
