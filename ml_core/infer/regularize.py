"""Right angles for buildings that are nearly rectangular, as JOSM's "orthogonalise" (Q) does.

In a metric frame (CRS units scaled to metres at the raster centre), the polygon's main
direction is the length-weighted circular mean of its edge directions modulo 90°. When nearly
all of the outline (:data:`SHARE`) lies within ``tolerance_deg`` of that direction or its
perpendicular, every run of consecutive edges facing one way becomes one straight wall, placed
at the length-weighted mean of its vertices, and corners are where consecutive walls meet.
Anything else (round, L-shaped at odd angles, irregular) keeps its shape. Holes are kept as they
are. A result that is invalid or changes the area by more than ``max_area_change`` is refused.
"""

from __future__ import annotations

import numpy as np
from osgeo import ogr

SHARE = 0.9  # share of the outline's length that must be near the main directions


def _ring(xy: np.ndarray) -> ogr.Geometry:
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in xy:
        ring.AddPoint_2D(float(x), float(y))
    ring.CloseRings()
    return ring


def min_rotated_rectangle(geom: ogr.Geometry) -> ogr.Geometry:
    """The smallest-area rectangle containing ``geom`` (rotating calipers on the convex hull)."""
    hull = geom.ConvexHull()  # keep a reference: GetGeometryRef points into it
    pts = np.array(hull.GetGeometryRef(0).GetPoints())[:, :2]
    edges = np.diff(pts, axis=0)
    ang = np.arctan2(edges[:, 1], edges[:, 0])[:, None]
    c, s = np.cos(ang), np.sin(ang)
    xr, yr = pts[:, 0] * c + pts[:, 1] * s, -pts[:, 0] * s + pts[:, 1] * c
    i = int(np.argmin((xr.max(1) - xr.min(1)) * (yr.max(1) - yr.min(1))))
    x0, x1, y0, y1 = xr[i].min(), xr[i].max(), yr[i].min(), yr[i].max()
    corners = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)])
    ci, si = c[i, 0], s[i, 0]
    xy = np.c_[corners[:, 0] * ci - corners[:, 1] * si, corners[:, 0] * si + corners[:, 1] * ci]
    rect = ogr.Geometry(ogr.wkbPolygon)
    rect.AddGeometry(_ring(xy))
    return rect


def main_direction(xy: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(direction in radians, edge lengths, each edge's deviation from the nearest main
    direction in radians) of a closed ring's points ``[n, 2]`` in metres."""
    edges = np.diff(xy, axis=0)
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    angles = np.arctan2(edges[:, 1], edges[:, 0])
    direction = np.angle((lengths * np.exp(4j * angles)).sum()) / 4
    deviation = (angles - direction + np.pi / 4) % (np.pi / 2) - np.pi / 4
    return float(direction), lengths, deviation


def _walls(xy: np.ndarray, horizontal: np.ndarray, lengths: np.ndarray) -> list:
    """Runs of consecutive edges facing one way, as (is horizontal, wall coordinate)."""
    n = len(horizontal)
    start = int(np.flatnonzero(horizontal != np.roll(horizontal, 1))[0])  # a run boundary
    walls, i = [], 0
    while i < n:
        k, idx = horizontal[(start + i) % n], []
        while i < n and horizontal[(start + i) % n] == k:
            idx.append((start + i) % n)
            i += 1
        axis = 1 if k else 0
        ends = np.array([[xy[j, axis], xy[j + 1, axis]] for j in idx])
        weight = np.repeat(lengths[idx], 2) + 1e-9
        walls.append((bool(k), float(np.average(ends.ravel(), weights=weight))))
    return walls


def orthogonalize(geom: ogr.Geometry, kx: float, ky: float, tolerance_deg: float = 12.0,
                  max_area_change: float = 0.2) -> ogr.Geometry:
    """``geom`` (a polygon in a CRS with ``kx``, ``ky`` metres per unit) with right angles where
    it is nearly rectangular, else ``geom`` itself; see the module docstring."""
    if geom.GetGeometryType() != ogr.wkbPolygon or geom.GetGeometryCount() == 0:
        return geom
    scale = np.array([kx, ky])
    xy = np.array(geom.GetGeometryRef(0).GetPoints())[:, :2] * scale
    if len(xy) < 5:
        return geom
    direction, lengths, deviation = main_direction(xy)
    near = np.abs(deviation) <= np.radians(tolerance_deg)
    if lengths[near].sum() < SHARE * lengths.sum():
        return geom
    c, s = np.cos(direction), np.sin(direction)
    rot = xy @ np.array([[c, -s], [s, c]])  # rotate by -direction: main direction along x
    edges = np.diff(rot, axis=0)
    horizontal = np.abs(edges[:, 0]) >= np.abs(edges[:, 1])
    if horizontal.all() or not horizontal.any():
        return geom
    walls = _walls(rot, horizontal, lengths)
    if len(walls) < 4 or len(walls) % 2:
        return geom
    corners = []
    for (h0, v0), (_, v1) in zip(walls, walls[1:] + walls[:1]):
        corners.append((v1, v0) if h0 else (v0, v1))  # (x of the vertical wall, y of the other)
    corners = np.array(corners) @ np.array([[c, s], [-s, c]]) / scale
    out = ogr.Geometry(ogr.wkbPolygon)
    out.AddGeometry(_ring(np.vstack([corners, corners[:1]])))
    for i in range(1, geom.GetGeometryCount()):
        out.AddGeometry(geom.GetGeometryRef(i).Clone())
    if not out.IsValid() or abs(out.GetArea() / geom.GetArea() - 1) > max_area_change:
        return geom
    return out
