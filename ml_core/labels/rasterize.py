"""Building polygons -> partial training mask on a raster's grid, and simulated missing labels.

Mask values (``ml_core.labels.classes``): 0 background, 1 building interior, 2 building edge,
3 contact (background between two close buildings), 255 unknown; with ``instance=False`` only
0, 1 and 255. Unknown covers masked or
nodata imagery and an optional margin around footprints. A complete area only adds certainty:
inside it the margin is background too; outside it the mask is what it would be without it.
Rejected proposals (``background``) are burned as 0 last, before imagery
validity. The mask is written in row strips, so memory is bounded by raster width.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
from osgeo import gdal, ogr
from scipy import ndimage

from ml_core.config import RasterizeOptions
from ml_core.errors import InputError
from ml_core.events import CancelToken, ProgressCallback, ProgressEvent, check_cancel, emit
from ml_core.io import raster as gdalio
from ml_core.io.atomic import (
    atomic_output,
    check_not_input,
    check_writable,
    close_raster,
    close_vector,
)
from ml_core.io.grid import burn
from ml_core.io.vector import (
    as_list,
    check_overlap,
    create_gpkg,
    memory_layer,
    open_layer,
    read_polygons,
    srs_of,
)
from ml_core.labels.classes import UNKNOWN, instance_classes, is_building, radius_px

gdal.UseExceptions()
ogr.UseExceptions()

PathLike = Union[str, os.PathLike]


def _building_ids(layers: list, ds: gdal.Dataset, y0: int, width: int, height: int,
                  all_touched: bool) -> np.ndarray:
    """One id per building (0 none) on a window of rows, unique across several layers."""
    ids = np.zeros((height, width), np.int32)
    offset = 0
    for _, layer, polys in layers:
        burned = burn(layer, ds, 0, y0, width, height, value=None, all_touched=all_touched,
                      dtype=gdal.GDT_Int32)
        ids = np.where(burned > 0, burned + offset, ids)
        offset += len(polys.geoms)
    return ids


def _polygon_layers(paths, ds: gdal.Dataset, what: str, progress) -> list:
    """Read each vector into the raster CRS; returns [(datasource, layer, PolygonSet)]."""
    out = []
    for p in as_list(paths):
        polys = read_polygons(p, ds.GetSpatialRef(), what=what, progress=progress)
        out.append((*memory_layer(polys.geoms, polys.srs), polys))
    return out


def rasterize_labels(raster: gdalio.RasterLike, buildings, out_path: PathLike,
                     options: Optional[RasterizeOptions] = None, complete_area=None,
                     background=None, progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelToken] = None) -> Path:
    """Write a uint8 label mask on ``raster``'s exact grid; see the module docstring.

    ``buildings``: a path or list of paths (reprojected on the fly); ``complete_area``: polygons
    where labels are complete (unlabelled = background); ``background``: polygons forced to 0
    (rejected proposals).
    """
    options = options or RasterizeOptions()
    ds = gdalio.open_raster(raster)
    name = gdalio.raster_name(ds)
    check_writable(out_path)
    check_not_input(out_path, raster, buildings, complete_area, background)
    layers = _polygon_layers(buildings, ds, "buildings", progress)
    check_overlap(ds, [p for *_, p in layers], name)
    complete = _polygon_layers(complete_area, ds, "complete-area", progress)
    rejected = _polygon_layers(background, ds, "background", progress)
    bands = gdalio.default_bands(ds)
    rule = gdalio.valid_mask_band(ds, bands)
    W, H, m = ds.RasterXSize, ds.RasterYSize, max(0, options.unknown_margin)
    px_m = gdalio.pixel_size_m(ds)
    edge = radius_px(options.edge_m, px_m) if options.instance else 0
    contact = radius_px(options.contact_m / 2, px_m) if options.instance else 0  # half-gap
    pad = max(m, edge, contact)  # rows read beyond the strip so rings are whole at its seams
    rows = gdalio.strip_rows(W)
    with atomic_output(out_path) as tmp:
        out = gdalio.create_like(ds, tmp, 0, 0, W, H, gdal.GDT_Byte)
        band = out.GetRasterBand(1)
        for y0 in range(0, H, rows):
            check_cancel(cancel)
            h = min(rows, H - y0)
            ids = _building_ids(layers, ds, y0 - pad, W, h + 2 * pad, options.all_touched)
            mask = instance_classes(ids, edge, contact)
            ring = (ndimage.maximum_filter(ids > 0, 2 * m + 1) if m else False) & (mask == 0)
            mask[ring] = UNKNOWN
            mask = mask[pad:pad + h]
            if complete:
                inside = np.zeros((h, W), bool)
                for _, layer, _ in complete:
                    inside |= burn(layer, ds, 0, y0, W, h) > 0
                mask[(mask == UNKNOWN) & inside] = 0  # unlabelled inside: background
            for _, layer, _ in rejected:
                mask[burn(layer, ds, 0, y0, W, h) > 0] = 0
            mask[~gdalio.read_validity(ds, bands, 0, y0, W, h, rule=rule)] = UNKNOWN
            band.WriteArray(mask, 0, y0)
            emit(progress, ProgressEvent("rasterize", (y0 + h) / H, f"rows {y0 + h}/{H}"))
        close_raster(out, out_path)
        out = band = None
    return Path(out_path)


def read_mask(path: PathLike) -> np.ndarray:
    """Read a label mask written by :func:`rasterize_labels` as a uint8 array."""
    try:
        ds = gdal.Open(str(path))
    except RuntimeError as exc:
        raise InputError(f"Label mask {path} cannot be read ({exc}). Rasterise the labels again.") \
            from exc
    return ds.GetRasterBand(1).ReadAsArray().astype(np.uint8, copy=False)


def write_mask(like: PathLike, mask: np.ndarray, path: PathLike) -> Path:
    """Write a label mask array on the grid of raster ``like`` (atomically)."""
    with atomic_output(path, inputs=[like]) as tmp:
        ds = gdalio.create_like(gdalio.open_raster(like), tmp, 0, 0, mask.shape[1], mask.shape[0],
                             gdal.GDT_Byte)
        ds.GetRasterBand(1).WriteArray(mask)
        close_raster(ds, path)
        ds = None
    return Path(path)


@dataclass
class DropResult:
    """Where the partial labels went and how many features were kept and dropped."""

    path: Path
    kept: int
    dropped: int


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"Drop fraction {fraction} must be between 0 and 1.")


def drop_buildings(buildings: PathLike, fraction: float, seed: int,
                   out_path: PathLike) -> DropResult:
    """Remove a seeded random ``fraction`` of whole features (the paper's simulation).

    Writes a GeoPackage with layers ``buildings`` (kept) and ``dropped``, each with all source
    fields plus ``src_fid``. The same seed on the same input gives the same result.
    """
    _check_fraction(fraction)
    read_polygons(buildings, what="buildings")  # validates: exists, CRS, polygons, not empty
    check_writable(out_path)
    check_not_input(out_path, buildings)
    _src, layer = open_layer(buildings)
    fids = np.array(sorted(f.GetFID() for f in layer))
    n_drop = round(fraction * len(fids))
    dropped = set(np.random.default_rng(seed).permutation(fids)[:n_drop].tolist())
    with atomic_output(out_path) as tmp:
        out = create_gpkg(tmp)
        targets = {name: _copy_schema(out, layer, name) for name in ("buildings", "dropped")}
        layer.ResetReading()
        for feat in layer:
            dst = targets["dropped" if feat.GetFID() in dropped else "buildings"]
            new = ogr.Feature(dst.GetLayerDefn())
            new.SetFrom(feat)
            new.SetField("src_fid", feat.GetFID())
            dst.CreateFeature(new)
        close_vector(out, out_path)
        out = targets = None
    return DropResult(Path(out_path), len(fids) - n_drop, n_drop)


def _copy_schema(out, layer, name: str):
    dst = out.CreateLayer(name, srs=srs_of(layer), geom_type=layer.GetGeomType())
    defn = layer.GetLayerDefn()
    for i in range(defn.GetFieldCount()):
        dst.CreateField(defn.GetFieldDefn(i))
    dst.CreateField(ogr.FieldDefn("src_fid", ogr.OFTInteger64))
    return dst


def component_labels(binary: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected component ids (1..n in raster scan order, 0 = background) of a boolean
    array, and n."""
    labels, n = ndimage.label(binary, structure=np.ones((3, 3), bool))
    return labels, int(n)


def drop_mask_components(mask: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray,
                                                                                   np.ndarray]:
    """Set a seeded random ``fraction`` of 8-connected building components to background.

    Returns (partial mask, boolean array of dropped pixels), for datasets that come as masks.
    """
    _check_fraction(fraction)
    labels, n = component_labels(is_building(mask))
    chosen = np.random.default_rng(seed).permutation(n)[:round(fraction * n)] + 1
    dropped = np.isin(labels, chosen)
    partial = mask.copy()
    partial[dropped] = 0
    return partial, dropped

