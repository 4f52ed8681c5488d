"""The fixed yardstick of the review rounds: answers held out of training, and the object F1
of a model's footprints on them.

Which answers are held out is decided by place, not by round: the raster's grid is cut into
blocks of about :data:`BLOCK_M` metres and every :data:`HOLD_EVERY`-th block along each
diagonal is held out. A reviewed proposal is held out when its centre (a point on its surface)
lies in such a block; a complete area is held out where it crosses one. Held-out answers are
never trained on, in any round, so every round's model is measured on answers it has not
seen, and the model before a round and the one after it are measured on the same answers.

Scoring (:meth:`Yardstick.score`): the true buildings are the held-out accepted proposals and
the mapped buildings inside held-out complete areas; a footprint is judged when its centre lies
in a held-out answer or complete area; judged footprints are matched one to one to the true
buildings at IoU >= 0.5 (``ml_core.evaluate.matching.match_polygons``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from osgeo import gdal, ogr, osr

from ml_core.evaluate.matching import match_polygons
from ml_core.io import raster as gdalio
from ml_core.io.vector import AreaMeter, BoxIndex, envelope_polygon

BLOCK_M = 30.0
HOLD_EVERY = 3
CALIBRATION_BINS = 10


@dataclass
class Lattice:
    """The held-out blocks on a raster's grid (in the raster's CRS)."""

    x0: float
    y0: float
    dx: float
    dy: float

    @classmethod
    def of_raster(cls, ds: gdal.Dataset, block_m: float = BLOCK_M) -> Lattice:
        gt = ds.GetGeoTransform()
        block_px = max(1, round(block_m / gdalio.pixel_size_m(ds)))
        return cls(gt[0], gt[3], gt[1] * block_px, gt[5] * block_px)

    def _cell(self, x: float, y: float) -> tuple[int, int]:
        return math.floor((x - self.x0) / self.dx), math.floor((y - self.y0) / self.dy)

    @staticmethod
    def _held(col: int, row: int) -> bool:
        return (col + row) % HOLD_EVERY == 0

    def holds(self, geom: ogr.Geometry) -> bool:
        """True when the centre of ``geom`` lies in a held-out block."""
        point = geom.PointOnSurface()
        return self._held(*self._cell(point.GetX(), point.GetY()))

    def held_part(self, geom: ogr.Geometry) -> Optional[ogr.Geometry]:
        """The part of ``geom`` in held-out blocks (None when there is none)."""
        minx, maxx, miny, maxy = geom.GetEnvelope()
        (c0, r0), (c1, r1) = self._cell(minx, maxy), self._cell(maxx, miny)
        blocks = ogr.Geometry(ogr.wkbMultiPolygon)
        for col in range(min(c0, c1), max(c0, c1) + 1):
            for row in range(min(r0, r1), max(r0, r1) + 1):
                if self._held(col, row):
                    xs = sorted((self.x0 + col * self.dx, self.x0 + (col + 1) * self.dx))
                    ys = sorted((self.y0 + row * self.dy, self.y0 + (row + 1) * self.dy))
                    blocks.AddGeometry(envelope_polygon((xs[0], xs[1], ys[0], ys[1])))
        part = geom.Intersection(blocks) if blocks.GetGeometryCount() else None
        return part if part is not None and part.GetArea() > 0 else None


@dataclass
class Yardstick:
    """Held-out answers in one CRS: true buildings and the region where footprints are judged."""

    srs: osr.SpatialReference
    buildings: list = field(default_factory=list)
    region: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.region)

    def judged(self, footprints: list) -> np.ndarray:
        """Indices of the footprints whose centre lies in the judged region."""
        index = BoxIndex(self.region)
        return np.array([i for i, g in enumerate(footprints)
                         if index.meets(g.PointOnSurface())], int)

    def score(self, footprints: list, scores: Optional[np.ndarray] = None) -> dict:
        """Object precision, recall and F1 (IoU >= 0.5, one to one) of ``footprints`` (in
        ``srs``) on the held-out answers, with the calibration table of their ``scores``."""
        judged = self.judged(footprints)
        pred = [footprints[i] for i in judged]
        centre = (self.region[0].PointOnSurface().GetX(), self.region[0].PointOnSurface().GetY())
        matching = match_polygons(pred, self.buildings, AreaMeter(self.srs, centre))
        out = {k: matching.summary()[k] for k in ("precision", "recall", "f1", "matched",
                                                  "n_pred", "n_truth")}
        if scores is not None:
            out["calibration"] = calibrate(np.asarray(scores, float)[judged],
                                           matching.pred_match >= 0)
        return out


def calibrate(scores: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> list:
    """Binned calibration: for each score bin [lo, hi), how many proposals and how many were
    right (``correct``). JSON-ready: ``[[lo, hi, n, right], ...]`` for non-empty bins."""
    scores, correct = np.asarray(scores, float), np.asarray(correct, bool)
    index = np.clip((scores * bins).astype(int), 0, bins - 1)
    n = np.bincount(index, minlength=bins)
    right = np.bincount(index, weights=correct, minlength=bins)
    return [[round(b / bins, 4), round((b + 1) / bins, 4), int(n[b]), int(right[b])]
            for b in range(bins) if n[b]]


def score_cut(table: list, precision: float, min_n: int = 5) -> Optional[float]:
    """The lowest score from which on the calibration ``table`` shows at least ``precision``
    right, over at least ``min_n`` proposals, counting bins from the top down; None when no
    such score (bulk acceptance then takes nothing)."""
    cut, n, right = None, 0, 0
    for lo, _hi, count, ok in sorted(table, reverse=True):
        n, right = n + count, right + ok
        if right < precision * n:
            break
        if n >= min_n:
            cut = lo
    return cut
