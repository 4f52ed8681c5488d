"""Validation and conflation of proposed buildings, as mappers' tools (JOSM, Rapid) do it.

Geometry checks (in metres, local UTM): ``crosses_building`` (overlaps another proposal),
``unsquare`` (a near-rectangular building with a corner more than :data:`UNSQUARE_DEG` off a
right angle), ``tiny`` (under :data:`TINY_M2`), ``sliver`` (narrower than :data:`SLIVER_M`),
``duplicate_nodes`` (two vertices of one building closer than :data:`DUPLICATE_M`).

Conflation with the mapped buildings, in OSM's frame (proposals shifted back by the offset
between OSM and the imagery, :mod:`ml_core.osm.offset`): ``crosses_mapped`` (any overlap above
:data:`CROSS_EPS_M2`) and ``overlaps_mapped`` (more than ``tolerance`` of the proposal's area:
never proposed, never exported).

:func:`flag_proposals` writes the flags into the ``new_buildings`` layer of a footprints
GeoPackage (fields ``flags``, ``overlap_mapped``) and stores the offset with the layer.
"""

from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np
from osgeo import gdal, ogr, osr
from scipy.spatial import cKDTree

from ml_core.infer.regularize import min_rotated_rectangle
from ml_core.io.vector import BoxIndex, local_utm, polygon_part, polygons_of, srs_of, transform
from ml_core.osm.offset import Offset, estimate_offset, shift_geoms

gdal.UseExceptions()
ogr.UseExceptions()

PathLike = Union[str, os.PathLike]
FLAGS_FIELD = "flags"
OVERLAP_FIELD = "overlap_mapped"
OFFSET_KEY = "BFE_OSM_OFFSET"  # layer metadata: the offset as JSON (see Offset.to_json)
OVERLAPS_MAPPED, CROSSES_MAPPED = "overlaps_mapped", "crosses_mapped"
CROSSES_BUILDING, UNSQUARE, TINY, SLIVER, DUPLICATE_NODES = (
    "crosses_building", "unsquare", "tiny", "sliver", "duplicate_nodes")
MAPPED_OVERLAP = 0.1  # share of a proposal's area over mapped buildings beyond which it is dropped
CROSS_EPS_M2 = 0.05
UNSQUARE_DEG = 5.0
NEAR_RECTANGULAR = 0.85  # area / area of the minimum rotated rectangle
CORNER_DEG = 30.0  # a vertex turning less than this is not a corner
TINY_M2 = 5.0
SLIVER_M = 1.5
DUPLICATE_M = 0.02  # the export merges vertices closer than this (ml_core.osm.export)
FIXED_ON_EXPORT = frozenset({DUPLICATE_NODES})
FLAG_TEXT = {  # what a mapper reads for each flag (the review panel shows these)
    OVERLAPS_MAPPED: "overlaps a mapped building (never exported)",
    CROSSES_MAPPED: "crosses a mapped building",
    CROSSES_BUILDING: "crosses another proposal",
    UNSQUARE: "unsquare corners",
    TINY: f"tiny (under {TINY_M2:g} m²)",
    SLIVER: f"sliver (narrower than {SLIVER_M:g} m)",
    DUPLICATE_NODES: "duplicate nodes (merged on export)",
}


def _overlap_m2(a: ogr.Geometry, b: Optional[ogr.Geometry]) -> float:
    """Area shared by two polygons (0 when they only touch or ``b`` is None)."""
    if b is None or not a.Intersects(b):
        return 0.0
    common = a.Intersection(b)
    return common.GetArea() if ogr.GT_Flatten(common.GetGeometryType()) in (
        ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbGeometryCollection) else 0.0


def parse_flags(text: Optional[str]) -> list:
    """Flags of a ``flags`` field (comma-separated)."""
    return [f for f in (text or "").split(",") if f]


def describe_flags(text: Optional[str]) -> str:
    """Readable text of a ``flags`` field, e.g. "unsquare corners, crosses a mapped building";
    empty without flags (an unknown flag is shown by its name)."""
    return ", ".join(FLAG_TEXT.get(f, f) for f in parse_flags(text))


def _ring(poly: ogr.Geometry) -> np.ndarray:
    pts = np.array(poly.GetGeometryRef(0).GetPoints())[:, :2]
    return pts[:-1] if np.array_equal(pts[0], pts[-1]) else pts


def turning_angles(ring: np.ndarray) -> np.ndarray:
    """Absolute turning angle (degrees, 0 = straight on) at each vertex of an open ring."""
    d_in, d_out = ring - np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0) - ring
    cross = d_in[:, 0] * d_out[:, 1] - d_in[:, 1] * d_out[:, 0]
    return np.degrees(np.abs(np.arctan2(cross, np.sum(d_in * d_out, axis=1))))


def is_unsquare(poly: ogr.Geometry) -> bool:
    """A near-rectangular building whose corners are not all within 5° of a right angle."""
    if poly.GetArea() < NEAR_RECTANGULAR * min_rotated_rectangle(poly).GetArea():
        return False
    ring = _ring(poly)
    keep = np.ones(len(ring), bool)
    while keep.sum() > 4:  # drop the straightest vertex until only corners are left
        turn = turning_angles(ring[keep])
        if turn.min() >= CORNER_DEG:
            break
        keep[np.flatnonzero(keep)[int(np.argmin(turn))]] = False
    corners = turning_angles(ring[keep])
    return bool(np.any(np.abs(corners - 90.0) > UNSQUARE_DEG))


def _width(poly: ogr.Geometry) -> float:
    rect = min_rotated_rectangle(poly)  # keep a reference: GetGeometryRef points into it
    pts = np.array(rect.GetGeometryRef(0).GetPoints())[:3, :2]
    return float(min(np.hypot(*(pts[1] - pts[0])), np.hypot(*(pts[2] - pts[1]))))


def _duplicate_nodes(poly: ogr.Geometry) -> bool:
    rings = [np.array(poly.GetGeometryRef(i).GetPoints())[:-1, :2]
             for i in range(poly.GetGeometryCount())]
    return any(len(cKDTree(r).query_pairs(DUPLICATE_M)) > 0 for r in rings if len(r) > 1)


def _shape_flags(poly: ogr.Geometry) -> list:
    """Flags of one polygon by itself: tiny, sliver, duplicate nodes, unsquare."""
    checks = ((TINY, lambda p: p.GetArea() < TINY_M2), (SLIVER, lambda p: _width(p) < SLIVER_M),
              (DUPLICATE_NODES, _duplicate_nodes), (UNSQUARE, is_unsquare))
    return [name for name, test in checks if test(poly)]


def check_geometries(polys: list) -> list:
    """Flags of each (multi)polygon (metric CRS) from the geometry checks in the module
    docstring; a multipolygon carries the flags of its parts."""
    index = BoxIndex(polys)
    out = []
    for i, p in enumerate(polys):
        others = [j for j in index.query(p.GetEnvelope()) if j != i]
        flags = [CROSSES_BUILDING] if any(_overlap_m2(p, polys[j]) > CROSS_EPS_M2
                                          for j in others) else []
        for part in polygons_of(p):
            flags += [f for f in _shape_flags(part) if f not in flags]
        out.append(flags)
    return out


def check_against_mapped(polys: list, mapped: list,
                         tolerance: float = MAPPED_OVERLAP) -> tuple[list, np.ndarray]:
    """(flags, overlapping share of each polygon's area) against mapped buildings (same CRS)."""
    index = BoxIndex(mapped)
    share = np.zeros(len(polys))
    flags = []
    for i, p in enumerate(polys):
        union = index.union(index.query(p.GetEnvelope()))
        area = _overlap_m2(p, union)
        share[i] = area / p.GetArea() if p.GetArea() > 0 else 0.0
        flags.append([OVERLAPS_MAPPED] if share[i] > tolerance else
                     [CROSSES_MAPPED] if area > CROSS_EPS_M2 else [])
    return flags, share


def stored_offset(layer: ogr.Layer) -> tuple:
    """(east, north) metres from OSM's frame to the imagery's stored with a layer, when it
    applies; (0, 0) otherwise."""
    text = layer.GetMetadataItem(OFFSET_KEY)
    if not text:
        return 0.0, 0.0
    offset = Offset.from_json(text)
    return (offset.dx_m, offset.dy_m) if offset.applies else (0.0, 0.0)


def _metric_copies(geoms: list, srs: osr.SpatialReference, metric: osr.SpatialReference) -> list:
    """Copies in the metric CRS, made valid (a reprojected outline can touch itself where a
    pixel corner did, and GEOS refuses to intersect invalid polygons)."""
    ct = transform(srs, metric)
    out = []
    for g in geoms:
        g = g.Clone()
        if ct is not None:
            g.Transform(ct)
        out.append(g if g.IsValid() else (polygon_part(g) or g))
    return out


def flag_proposals(footprints: PathLike, existing: list, existing_srs: osr.SpatialReference,
                   prob: Optional[gdal.Dataset] = None, layer_name: str = "new_buildings",
                   tolerance: float = MAPPED_OVERLAP, offset: Optional[Offset] = None) -> Offset:
    """Add ``flags`` and ``overlap_mapped`` to the proposals of ``footprints`` (in place: call it
    on the temporary output before it is renamed) and store with the layer the OSM-imagery
    ``offset``, by default estimated from probability raster ``prob`` and the ``existing``
    (mapped, as drawn) buildings."""
    src = ogr.Open(str(footprints), 1)
    layer = src.GetLayerByName(layer_name)
    if offset is None:
        offset = (estimate_offset(prob, existing) if prob is not None and existing
                  else Offset.none("no probability raster or no mapped buildings"))
    for name, kind in ((FLAGS_FIELD, ogr.OFTString), (OVERLAP_FIELD, ogr.OFTReal)):
        if layer.FindFieldIndex(name, True) < 0:
            layer.CreateField(ogr.FieldDefn(name, kind))
    feats = [f for f in layer if f.GetGeometryRef() is not None]
    srs = srs_of(layer)
    if feats:
        env = layer.GetExtent()
        metric = local_utm(srs, (env[0] + env[1]) / 2, (env[2] + env[3]) / 2)
        polys = _metric_copies([f.GetGeometryRef() for f in feats], srs, metric)
        if offset.applies:
            polys = shift_geoms(polys, metric, -offset.dx_m, -offset.dy_m)
        flags = check_geometries(polys)
        share = np.zeros(len(polys))
        if existing:
            mapped, share = check_against_mapped(
                polys, _metric_copies(existing, existing_srs, metric), tolerance)
            flags = [a + b for a, b in zip(mapped, flags)]
        layer.StartTransaction()
        for f, fl, s in zip(feats, flags, share):
            f.SetField(FLAGS_FIELD, ",".join(fl))
            f.SetField(OVERLAP_FIELD, round(float(s), 4))
            layer.SetFeature(f)
        layer.CommitTransaction()
    layer.SetMetadataItem(OFFSET_KEY, offset.to_json())
    layer = None  # the layer before its datasource
    src = None
    return offset


__all__ = ["FLAGS_FIELD", "FLAG_TEXT", "OFFSET_KEY", "check_against_mapped", "check_geometries",
           "describe_flags", "flag_proposals", "is_unsquare", "parse_flags", "stored_offset"]
