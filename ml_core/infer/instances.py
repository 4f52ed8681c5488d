"""Separate touching buildings: probability bands -> one integer label per building.

Instance models write two bands (``ml_core.infer.predict.probability_bands``): building
probability and interior probability. Buildings are the pixels whose building probability
reaches the ``building`` threshold. Each confident interior region (interior probability at
least ``seed``, inside a building, and at least ``min_seed_px`` pixels) seeds one building.
The building pixels of a connected part with several seeds go to their nearest seed (the
watershed of the seeds' distance map, ``scipy.ndimage.distance_transform_edt``), so two
neighbours meet halfway between their interiors: where the edge rings on both sides of a shared
wall are equally wide, on the wall. Building pixels that no seed reaches keep their connected
component as one building. Without an interior band (2-class models), each 8-connected
component is a building.

Flooding over the relief ``1 - interior`` with ``scipy.ndimage.watershed_ift`` was tried and
dropped: it floods a plateau of equal relief from one marker only (every edge pixel, interior
probability about 0, is on one such plateau), so one building took its neighbours' edges
(figures: ``docs/experiments/instance_flood``).

The raster is processed in strips of rows with ``overlap`` extra rows on each side; a building
that crosses a seam gets one id from each strip, and the two are joined when the upper strip
itself, which saw across the seam, labels both sides of it alike. Memory is bounded by the strip.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import numpy as np
from osgeo import gdal, ogr
from scipy import ndimage

from ml_core.events import CancelToken, check_cancel
from ml_core.infer.polygonize import band_polygons
from ml_core.infer.thresholds import Thresholds
from ml_core.io import raster as gdalio

EIGHT = np.ones((3, 3), bool)


def label_instances(building: np.ndarray, interior: Optional[np.ndarray], valid: np.ndarray,
                    thresholds: Thresholds, min_seed_px: int = 4) -> tuple[np.ndarray, int]:
    """Labels (int32, 0 = not a building, 1..n) of the buildings in one window; see the module
    docstring."""
    inside = (building >= thresholds.building) & valid
    if interior is None:
        labels, n = ndimage.label(inside, EIGHT)
        return labels.astype(np.int32), int(n)
    seeds = inside & (interior >= thresholds.seed)
    markers, n = ndimage.label(seeds, EIGHT)
    if n:
        sizes = np.bincount(markers.ravel(), minlength=n + 1)
        keep = sizes >= min_seed_px
        keep[0] = False
        renumber = np.zeros(n + 1, np.int32)
        renumber[keep] = np.arange(1, int(keep.sum()) + 1)
        markers, n = renumber[markers], int(keep.sum())
    # components of building pixels with no seed become buildings of their own
    parts, n_parts = ndimage.label(inside, EIGHT)
    seeded = np.zeros(n_parts + 1, bool)
    seeded[np.unique(parts[markers > 0])] = True
    lone = ~seeded[parts] & inside
    markers = markers.astype(np.int32)
    if lone.any():
        lone_ids, n_lone = ndimage.label(lone, EIGHT)
        markers[lone] = lone_ids[lone] + n
        n += int(n_lone)
    return _flood_parts(parts, markers), n


def drop_small(labels: np.ndarray, min_px: float) -> np.ndarray:
    """``labels`` without the instances under ``min_px`` pixels, as extraction drops polygons
    under ``min_area``."""
    small = np.bincount(labels.ravel()) < min_px
    small[0] = False
    return np.where(small[labels], 0, labels)


def _flood_parts(parts: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """Each connected part takes its one marker, or each of its pixels the nearest of its own
    markers, within the part's bounding box (another part's markers never reach it)."""
    labels = np.zeros(parts.shape, np.int32)
    for k, box in enumerate(ndimage.find_objects(parts), start=1):
        if box is None:
            continue
        part = parts[box] == k
        local = np.where(part, markers[box], 0)
        ids = np.unique(local[local > 0])
        if len(ids) <= 1:
            labels[box][part] = ids[0] if len(ids) else 0
            continue
        _, nearest = ndimage.distance_transform_edt(local == 0, return_indices=True)
        labels[box][part] = local[tuple(nearest)][part]
    return labels


class _UnionFind:
    """Joins ids that belong to one building across strip seams."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        root = a
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while a != root:
            self.parent[a], a = root, self.parent.get(a, a)
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _read_bands(ds: gdal.Dataset, y0: int, h: int) -> tuple:
    """(building, interior or None, valid) of rows ``y0 .. y0 + h``."""
    band = ds.GetRasterBand(1)
    nodata = band.GetNoDataValue()
    building = band.ReadAsArray(0, y0, ds.RasterXSize, h).astype(np.float32)
    valid = building != nodata if nodata is not None else np.ones(building.shape, bool)
    interior = None
    if ds.RasterCount >= 2:
        interior = ds.GetRasterBand(2).ReadAsArray(0, y0, ds.RasterXSize, h).astype(np.float32)
    return building, interior, valid


def strips(height: int, rows: int) -> Iterator[tuple[int, int]]:
    """(first row, number of rows) of consecutive strips covering ``height`` rows."""
    for y0 in range(0, height, rows):
        yield y0, min(rows, height - y0)


def instance_raster(ds: gdal.Dataset, path: str, thresholds: Thresholds, overlap: int = 128,
                    min_seed_px: int = 4, rows: Optional[int] = None,
                    cancel: Optional[CancelToken] = None) -> int:
    """Write the building labels of probability raster ``ds`` to an Int32 GeoTIFF ``path`` (on
    its grid, 0 = none), strip by strip; ids joined across seams share one value. Returns the
    number of ids given out before joining (some only to overlap rows, never written)."""
    W, H = ds.RasterXSize, ds.RasterYSize
    rows = rows or gdalio.strip_rows(W)
    out = gdalio.create_like(ds, path, 0, 0, W, H, gdal.GDT_Int32)
    joins = _UnionFind()
    next_id, seam = 0, None  # seam: the upper strip's ids on the next strip's first row, and
    pending = []              # on its own last row (as written)
    for y0, h in strips(H, rows):
        check_cancel(cancel)
        top, bottom = max(0, y0 - overlap), min(H, y0 + h + max(overlap, 1))  # sees the seam
        building, interior, valid = _read_bands(ds, top, bottom - top)
        labels, n = label_instances(building, interior, valid, thresholds, min_seed_px)
        labels = np.where(labels > 0, labels + next_id, 0)
        core = labels[y0 - top:y0 - top + h]
        if seam is not None:  # join where the upper strip saw one building across the seam
            across, above = seam
            padded = np.pad(above, 1)
            for d in range(3):  # the pixel above-left, above and above-right (8-connected)
                near = padded[d:d + W]
                same = (near > 0) & (across == near) & (core[0] > 0)
                for a, b in set(zip(near[same].tolist(), core[0][same].tolist())):
                    joins.union(a, b)
        if y0 + h < H:
            seam = (labels[y0 + h - top], core[-1])
        out.GetRasterBand(1).WriteArray(core, 0, y0)
        pending.append((y0, h))
        next_id += n
    if joins.parent:  # rewrite ids that were joined to their root
        for y0, h in pending:
            core = out.GetRasterBand(1).ReadAsArray(0, y0, W, h)
            ids = np.unique(core[core > 0])
            roots = np.array([joins.find(int(i)) for i in ids], np.int32)
            if (roots != ids).any():
                lookup = np.searchsorted(ids, core)
                joined = np.where(core > 0, roots[np.clip(lookup, 0, len(ids) - 1)], 0)
                out.GetRasterBand(1).WriteArray(joined.astype(np.int32), 0, y0)
    out.FlushCache()
    out = None
    return next_id


def instance_polygons(ds: gdal.Dataset, thresholds: Thresholds, min_seed_px: int = 4,
                      cancel: Optional[CancelToken] = None) -> list:
    """One polygon (holes kept) per building of probability raster ``ds``, in its CRS.

    Neighbouring buildings share their boundary exactly (both come from one label raster). An
    id whose pixels fall into several pieces keeps its largest piece.
    """
    path = f"/vsimem/bfe_instances_{id(ds)}.tif"
    try:
        instance_raster(ds, path, thresholds, min_seed_px=min_seed_px, cancel=cancel)
        labels = gdal.Open(path)
        largest: dict[int, ogr.Geometry] = {}
        for key, geom in band_polygons(labels.GetRasterBand(1), ds.GetSpatialRef()):
            if key not in largest or geom.GetArea() > largest[key].GetArea():
                largest[key] = geom
        return list(largest.values())
    finally:
        labels = None
        gdal.Unlink(path)
