"""One-to-one matching of predicted buildings to true buildings, as polygons or label rasters.

A mapper adds buildings one at a time, so the figures count buildings: a prediction and a true
building match when their IoU is at least ``iou_min`` (0.5: the measure of SpaceNet, fAIr's
evaluator and Microsoft's footprints), greedily by IoU (highest first, ties by the lower
prediction then truth index), each used at most once. Precision = matches / predictions,
recall = matches / true buildings, F1 = 2 matches / (predictions + true buildings); each is 1
when its denominator is 0 (nothing predicted, nothing to find). Also:

- a **merged** prediction covers at least half of the area of each of two or more true buildings;
- a **split** true building holds two or more predictions that each lie at least half inside it;
- the older **coverage** rule (``is_found``): a true building is found when predictions cover at
  least half of it, however many buildings one prediction covers. Kept as a secondary figure.

:meth:`Matching.errors` says why the others went unmatched (where to work next), each counted
once, in this order: a prediction is merged, a piece of a split building, a near miss (its best
IoU at least ``NEAR_MISS_IOU``) or on no building; a building is split, inside a merged
prediction, a near miss, or missed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
from osgeo import ogr

from ml_core.errors import InputError
from ml_core.io.vector import AreaMeter, BoxIndex, PolygonSet

IOU_MIN = 0.5
HALF = 0.5  # the share behind "covers half", "lies half inside" and "found"
NEAR_MISS_IOU = 0.3


def is_found(cover: np.ndarray) -> np.ndarray:
    """The coverage rule, in one place: True where predictions cover at least half a building."""
    return np.asarray(cover) >= HALF


@dataclass
class Matching:
    """Result of a one-to-one matching. Predictions and true buildings are numbered by position
    in the inputs (label rasters: the counted labels, whose values are ``pred_ids`` and
    ``truth_ids``)."""

    pairs: np.ndarray  # [k, 2] (prediction, truth) of the matches, in matching order
    ious: np.ndarray  # [k] IoU of each match
    pred_match: np.ndarray  # per prediction: the matched truth, or -1
    merged: np.ndarray  # per prediction: covers half of each of >= 2 true buildings
    split: np.ndarray  # per truth: holds >= 2 predictions each at least half inside it
    pred_ids: np.ndarray
    truth_ids: np.ndarray
    best_iou_pred: np.ndarray  # per prediction: its highest IoU with any truth
    best_iou_truth: np.ndarray  # per truth: its highest IoU with any prediction
    split_piece: np.ndarray  # per prediction: lies half inside a split truth
    in_merge: np.ndarray  # per truth: half covered by a merged prediction

    @property
    def n_pred(self) -> int:
        return len(self.pred_ids)

    @property
    def n_truth(self) -> int:
        return len(self.truth_ids)

    @property
    def tp(self) -> int:
        return len(self.pairs)

    @property
    def precision(self) -> float:
        return self.tp / self.n_pred if self.n_pred else 1.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_truth if self.n_truth else 1.0

    @property
    def f1(self) -> float:
        total = self.n_pred + self.n_truth
        return 2 * self.tp / total if total else 1.0

    @property
    def mean_iou(self) -> float:
        """Mean IoU of the matches (0 when nothing matched)."""
        return float(self.ious.mean()) if self.tp else 0.0

    @property
    def merged_share(self) -> float:
        return float(self.merged.mean()) if self.n_pred else 0.0

    @property
    def split_share(self) -> float:
        return float(self.split.mean()) if self.n_truth else 0.0

    def summary(self, prefix: str = "") -> dict:
        """The figures as a JSON-ready dict, keys prefixed with ``prefix``."""
        figures = {"precision": self.precision, "recall": self.recall, "f1": self.f1,
                   "mean_iou": self.mean_iou, "merged_share": self.merged_share,
                   "split_share": self.split_share, "matched": self.tp, "n_pred": self.n_pred,
                   "n_truth": self.n_truth}
        return {prefix + k: v for k, v in figures.items()}

    def errors(self) -> dict:
        """Why predictions and true buildings went unmatched, as counts (see the module
        docstring): ``{"predictions": {...}, "buildings": {...}}``."""
        matched_t = np.zeros(self.n_truth, bool)
        matched_t[self.pairs[:, 1]] = True
        return {"predictions": _tally(self.pred_match < 0, (
                    ("merged", self.merged), ("split_piece", self.split_piece),
                    ("near_miss", self.best_iou_pred >= NEAR_MISS_IOU),
                    ("on_no_building", np.ones(self.n_pred, bool)))),
                "buildings": _tally(~matched_t, (
                    ("split", self.split), ("in_merge", self.in_merge),
                    ("near_miss", self.best_iou_truth >= NEAR_MISS_IOU),
                    ("missed", np.ones(self.n_truth, bool))))}


def _tally(unmatched: np.ndarray, reasons: tuple) -> dict:
    """Counts of the ``unmatched`` items by the first of ``reasons`` (name, mask) that holds."""
    left, counts = unmatched.copy(), {}
    for name, holds in reasons:
        counts[name] = int((left & holds).sum())
        left &= ~holds
    return counts


def area_meter(*sets: PolygonSet) -> AreaMeter:
    """A meter in the UTM zone of the first non-empty set's centre (all sets in one CRS)."""
    for s in sets:
        if s.geoms:
            x0, x1, y0, y1 = s.envelope()
            return AreaMeter(s.srs, (float(x0 + x1) / 2, float(y0 + y1) / 2))  # osr: no numpy
    return AreaMeter(sets[0].srs, (0.0, 0.0))


def _greedy(pi: np.ndarray, tj: np.ndarray, iou: np.ndarray, iou_min: float) -> np.ndarray:
    """Positions of the pairs kept by greedy one-to-one matching, highest IoU first."""
    cand = np.flatnonzero(iou >= iou_min)
    cand = cand[np.lexsort((tj[cand], pi[cand], -iou[cand]))]
    used_p, used_t, keep = set(), set(), []
    # only candidates with IoU >= iou_min: few, about one per building at 0.5
    for k, i, j in zip(cand.tolist(), pi[cand].tolist(), tj[cand].tolist()):
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            keep.append(k)
    return np.asarray(keep, int)


def _matching(pred_ids: np.ndarray, truth_ids: np.ndarray, pi: np.ndarray, tj: np.ndarray,
              inter: np.ndarray, area_p: np.ndarray, area_t: np.ndarray,
              iou_min: float) -> Matching:
    """Match from the overlapping pairs (``pi``, ``tj``) with intersection areas ``inter`` and
    the areas of every prediction and truth."""
    n_p, n_t = len(area_p), len(area_t)
    union = area_p[pi] + area_t[tj] - inter
    iou = np.divide(inter, union, out=np.zeros(len(inter)), where=union > 0)
    keep = _greedy(pi, tj, iou, iou_min)
    pred_match = np.full(n_p, -1)
    pred_match[pi[keep]] = tj[keep]
    covers_truth = inter >= HALF * area_t[tj]  # this prediction covers half of that building
    inside_truth = inter >= HALF * area_p[pi]  # this prediction lies half inside that building
    merged = np.bincount(pi[covers_truth], minlength=n_p) >= 2
    split = np.bincount(tj[inside_truth], minlength=n_t) >= 2
    best_p, best_t = np.zeros(n_p), np.zeros(n_t)
    np.maximum.at(best_p, pi, iou)
    np.maximum.at(best_t, tj, iou)
    split_piece, in_merge = np.zeros(n_p, bool), np.zeros(n_t, bool)
    split_piece[pi[inside_truth & split[tj]]] = True
    in_merge[tj[covers_truth & merged[pi]]] = True
    return Matching(np.stack([pi[keep], tj[keep]], axis=1).reshape(-1, 2), iou[keep],
                    pred_match, merged, split, pred_ids, truth_ids, best_p, best_t,
                    split_piece, in_merge)


def _metric(geoms: Sequence[ogr.Geometry], meter: Optional[AreaMeter]) -> list:
    """The geometries in the meter's UTM zone (transformed once, as clones), made valid."""
    ct = meter.ct if meter is not None else None
    out = []
    for g in geoms:
        if ct is not None:
            g = g.Clone()
            g.Transform(ct)
        out.append(g if g.IsValid() else g.MakeValid())
    return out


def match_polygons(pred: Sequence[ogr.Geometry], truth: Sequence[ogr.Geometry],
                   meter: Optional[AreaMeter], iou_min: float = IOU_MIN) -> Matching:
    """One-to-one matching of predicted to true polygons (both in the CRS ``meter`` measures;
    ``meter=None``: already in metres). Both sets are reprojected to the meter's UTM zone once;
    only pairs whose bounding boxes meet are intersected."""
    pred, truth = _metric(pred, meter), _metric(truth, meter)
    area_p = np.array([g.GetArea() for g in pred], float)
    area_t = np.array([g.GetArea() for g in truth], float)
    index = BoxIndex(truth)
    pi, tj, inter = [], [], []
    for i, p in enumerate(pred):
        for j in index.query(p.GetEnvelope()):
            a = p.Intersection(truth[j]).GetArea()
            if a > 0:
                pi.append(i)
                tj.append(j)
                inter.append(a)
    return _matching(np.arange(len(pred)), np.arange(len(truth)), np.asarray(pi, int),
                     np.asarray(tj, int), np.asarray(inter, float), area_p, area_t, iou_min)


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label values present, each pixel's position among them, pixels of each): small
    contiguous codes for the contingency table, whatever the label values."""
    flat = labels.ravel().astype(np.intp, copy=False)
    total = np.bincount(flat, minlength=1)
    present = total != 0
    present[0] = True  # 0 (no building) stays code 0
    return np.flatnonzero(present), (np.cumsum(present) - 1)[flat], total[present]


def _pair_counts(codes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct codes, their counts) of codes in [0, size): a bincount where that table is
    not much larger than the codes, a sort (np.unique) where it would be."""
    if size <= 8 * len(codes) + 65536:
        counts = np.bincount(codes, minlength=size)
        present = np.flatnonzero(counts != 0)  # on a bool array: several times faster
        return present, counts[present]
    return np.unique(codes, return_counts=True)


def match_labels(pred_labels: np.ndarray, truth_labels: np.ndarray,
                 valid: Optional[np.ndarray] = None, iou_min: float = IOU_MIN) -> Matching:
    """One-to-one matching of two instance-label rasters on one grid (0: no building).

    Labels are non-negative integers. Only ``valid`` pixels count. A prediction or truth lying
    mostly (>= half) on invalid pixels is not counted at all: with missing labels it cannot be
    judged. Vectorised with a contingency table of (prediction, truth) pixel pairs.
    """
    if pred_labels.shape != truth_labels.shape:
        raise InputError(f"The predicted and true label rasters differ in shape "
                         f"({pred_labels.shape} vs {truth_labels.shape}); give both on one grid.")
    values_p, p, total_p = _compact(pred_labels)
    values_t, t, total_t = _compact(truth_labels)
    if valid is not None:
        v = np.asarray(valid, bool).ravel()
        p, t = p[v], t[v]
    width = len(total_t)
    codes, counts = _pair_counts(p * width + t, len(total_p) * width)  # valid pixels only
    pi, tj = np.divmod(codes, width)
    on_p = np.bincount(pi, weights=counts, minlength=len(total_p))
    on_t = np.bincount(tj, weights=counts, minlength=width)
    # counted: a building (not code 0) with more than half of its pixels valid
    keep_p, keep_t = on_p > HALF * total_p, on_t > HALF * total_t
    keep_p[0] = keep_t[0] = False
    index_p, index_t = np.cumsum(keep_p) - 1, np.cumsum(keep_t) - 1  # code -> position
    pair = keep_p[pi] & keep_t[tj]
    return _matching(values_p[keep_p], values_t[keep_t], index_p[pi[pair]], index_t[tj[pair]],
                     counts[pair].astype(float), on_p[keep_p], on_t[keep_t], iou_min)


def describe(figures: dict, prefix: str = "") -> str:
    """One line of the one-to-one figures in a :meth:`Matching.summary` dict (keys ``prefix``ed),
    for terminals and logs."""
    f = {k[len(prefix):]: v for k, v in figures.items() if k.startswith(prefix)}
    return (f"F1 {f['f1']:.2f} (precision {f['precision']:.2f}, recall {f['recall']:.2f}: "
            f"{f['matched']} matched of {f['n_pred']} polygons and {f['n_truth']} buildings), "
            f"mean IoU of matches {f['mean_iou']:.2f}, merged {f['merged_share']:.0%}, "
            f"split {f['split_share']:.0%}")


def describe_errors(errors: dict) -> str:
    """One line of a :meth:`Matching.errors` dict: why the unmatched went unmatched."""
    p, b = errors["predictions"], errors["buildings"]
    return (f"unmatched polygons: {p['split_piece']} pieces of split buildings, {p['merged']} "
            f"merged, {p['near_miss']} near misses (IoU {NEAR_MISS_IOU:g}-{IOU_MIN:g}), "
            f"{p['on_no_building']} on no building; unmatched buildings: {b['split']} split, "
            f"{b['in_merge']} in merged polygons, {b['near_miss']} near misses, "
            f"{b['missed']} missed")
