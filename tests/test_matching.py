"""evaluate/matching.py: one-to-one matching of polygons and of label rasters, on hand-made
buildings whose IoU, merges and splits are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import ogr, osr

from ml_core.errors import InputError
from ml_core.evaluate.matching import (
    describe,
    describe_errors,
    is_found,
    match_labels,
    match_polygons,
)
from ml_core.io.vector import AreaMeter, srs_of


def sq(x0: float, y0: float, x1: float, y1: float) -> ogr.Geometry:
    """Rectangle [x0, x1] x [y0, y1] (metres in a projected CRS)."""
    return ogr.CreateGeometryFromWkt(
        f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))")


# Two 10 x 10 m buildings 10 m apart.
TRUTH = [sq(0, 0, 10, 10), sq(20, 0, 30, 10)]


def test_shifted_squares_match_by_iou():
    # shifted 2 m: overlap 8 x 10 = 80, union 120 -> IoU 2/3; shifted 5 m: 50 / 150 = 1/3
    pred = [sq(2, 0, 12, 10), sq(25, 0, 35, 10)]
    m = match_polygons(pred, TRUTH, None)
    assert m.pairs.tolist() == [[0, 0]] and m.ious == pytest.approx([2 / 3])
    assert m.pred_match.tolist() == [0, -1]
    assert (m.precision, m.recall, m.f1) == (0.5, 0.5, 0.5)
    assert m.mean_iou == pytest.approx(2 / 3)
    assert not m.merged.any() and not m.split.any()
    # a lower bar takes the 5 m shift too
    loose = match_polygons(pred, TRUTH, None, iou_min=0.3)
    assert loose.pred_match.tolist() == [0, 1] and loose.mean_iou == pytest.approx(0.5)
    s = m.summary("dropped_")
    assert s["dropped_f1"] == 0.5 and s["dropped_matched"] == 1 and s["dropped_n_truth"] == 2
    assert describe({**s, "f1": 0.9}, "dropped_").startswith(
        "F1 0.50 (precision 0.50, recall 0.50: 1 matched of 2 polygons and 2 buildings), "
        "mean IoU of matches 0.67, merged 0%")


def test_one_polygon_over_two_buildings_is_merged_and_unmatched():
    blob = sq(0, 0, 30, 10)  # covers both: IoU 100 / 300 with each
    partial = sq(4, 0, 26, 10)  # covers 60 % of each: still merged
    one_and_a_bit = sq(0, 0, 24, 10)  # all of the first, 40 % of the second: not merged
    m = match_polygons([blob, partial, one_and_a_bit], TRUTH, None)
    assert m.merged.tolist() == [True, True, False]
    assert m.merged_share == pytest.approx(2 / 3)
    assert m.tp == 0  # best IoU: 100 / 240 (third with the first building) < 0.5
    assert m.f1 == 0.0


def test_two_polygons_inside_one_building_split_it():
    long_house = [sq(0, 0, 20, 10)]  # 200 m²
    halves = [sq(0, 0, 9, 10), sq(11, 0, 20, 10)]  # each 90 m², all inside: IoU 0.45
    m = match_polygons(halves, long_house, None)
    assert m.split.tolist() == [True] and m.split_share == 1.0 and m.tp == 0
    # one half sticking 60 % out of the building no longer lies half inside it
    m = match_polygons([sq(0, 0, 9, 10), sq(16, 0, 26, 10)], long_house, None)
    assert m.split.tolist() == [False]


def test_errors_say_why_each_unmatched_polygon_and_building_went_unmatched():
    truth = [sq(0, 0, 10, 10), sq(20, 0, 30, 10),  # matched exactly
             sq(40, 0, 60, 10),  # split in two halves of IoU 0.45
             sq(100, 0, 110, 10),  # nothing near it: missed
             sq(120, 0, 130, 10),  # a prediction shifted 5 m: IoU 1/3, a near miss
             sq(140, 0, 150, 10), sq(150, 0, 160, 10)]  # one blob of IoU 100/220 over both
    pred = [sq(0, 0, 10, 10), sq(20, 0, 30, 10), sq(40, 0, 49, 10), sq(51, 0, 60, 10),
            sq(125, 0, 135, 10), sq(139, 0, 161, 10), sq(200, 0, 210, 10)]
    m = match_polygons(pred, truth, None)
    assert m.tp == 2
    errors = m.errors()
    assert errors == {"predictions": {"merged": 1, "split_piece": 2, "near_miss": 1,
                                      "on_no_building": 1},
                      "buildings": {"split": 1, "in_merge": 2, "near_miss": 1, "missed": 1}}
    assert m.best_iou_truth[4] == pytest.approx(1 / 3) and m.best_iou_pred[5] == pytest.approx(
        100 / 220)
    assert describe_errors(errors) == (
        "unmatched polygons: 2 pieces of split buildings, 1 merged, 1 near misses (IoU 0.3-0.5), "
        "1 on no building; unmatched buildings: 1 split, 2 in merged polygons, 1 near misses, "
        "1 missed")
    # nothing unmatched: all zero
    assert all(v == 0 for group in match_polygons(truth, truth, None).errors().values()
               for v in group.values())


def test_greedy_takes_highest_iou_first_and_breaks_ties_by_index():
    # both predictions overlap the first building by 80 of 120 m² (IoU 2/3): the lower index wins
    m = match_polygons([sq(2, 0, 12, 10), sq(-2, 0, 8, 10)], TRUTH, None)
    assert m.pred_match.tolist() == [0, -1]
    # a prediction halfway between two touching buildings ties (1/3 each): the lower truth wins
    touching = [sq(0, 0, 10, 10), sq(10, 0, 20, 10)]
    assert match_polygons([sq(5, 0, 15, 10)], touching, None,
                          iou_min=0.3).pred_match.tolist() == [0]
    # greedy, not the largest matching: P0 takes T0 (IoU 6/15 = 0.4) first, so P1 (only on T0,
    # 0.35) is left, although P0-T1 (5/16 = 0.31) and P1-T0 would have matched both
    p0 = sq(4, 0, 15, 10)
    p1 = sq(0, 0, 10, 3.5)
    m = match_polygons([p1, p0], touching, None, iou_min=0.3)
    assert m.pairs.tolist() == [[1, 0]] and m.pred_match.tolist() == [-1, 0]
    assert m.ious == pytest.approx([0.4])


def _utm36n_to_4326(geom: ogr.Geometry) -> ogr.Geometry:
    utm = srs_of("EPSG:32636")
    g = geom.Clone()
    g.Transform(osr.CoordinateTransformation(utm, srs_of("EPSG:4326")))
    return g


def test_geographic_input_is_measured_in_metres():
    """The same squares near Kampala (UTM 36N, 450 km east) given in EPSG:4326."""
    e, n = 450000.0, 35000.0
    truth = [_utm36n_to_4326(sq(e, n, e + 10, n + 10)), _utm36n_to_4326(sq(e + 20, n, e + 30,
                                                                           n + 10))]
    pred = [_utm36n_to_4326(sq(e + 2, n, e + 12, n + 10))]
    lon, lat = truth[0].Centroid().GetX(), truth[0].Centroid().GetY()
    assert 32 < lon < 33 and 0 < lat < 1  # traditional axis order: x = longitude
    meter = AreaMeter(srs_of("EPSG:4326"), (lon, lat))
    assert meter.area(truth[0]) == pytest.approx(100.0, rel=1e-6)  # the meter is in m²
    m = match_polygons(pred, truth, meter)
    assert m.pred_match.tolist() == [0] and m.ious == pytest.approx([2 / 3], abs=1e-6)
    assert truth[0].GetEnvelope()[1] < 180  # the inputs are left in degrees


def test_empty_inputs():
    none = match_polygons([], [], None)
    assert (none.precision, none.recall, none.f1, none.mean_iou) == (1.0, 1.0, 1.0, 0.0)
    missed = match_polygons([], TRUTH, None)
    assert (missed.precision, missed.recall, missed.f1) == (1.0, 0.0, 0.0)
    assert missed.merged_share == 0.0 and missed.split.tolist() == [False, False]
    false = match_polygons([sq(50, 50, 60, 60)], TRUTH, None)
    assert (false.precision, false.recall, false.f1) == (0.0, 0.0, 0.0)
    assert false.pred_match.tolist() == [-1]


def _boxes(shape, boxes) -> np.ndarray:
    """Label raster with box k (rows r0:r1, cols c0:c1) labelled k + 1."""
    out = np.zeros(shape, np.int32)
    for k, (r0, r1, c0, c1) in enumerate(boxes):
        out[r0:r1, c0:c1] = k + 1
    return out


def test_labels_match_merge_and_split_like_polygons():
    truth = _boxes((12, 40), [(0, 10, 0, 10), (0, 10, 20, 30)])
    pred = _boxes((12, 40), [(0, 10, 2, 12), (0, 10, 25, 35)])  # shifted 2 and 5 px
    m = match_labels(pred, truth)
    assert m.pred_match.tolist() == [0, -1] and m.ious == pytest.approx([2 / 3])
    assert m.pred_ids.tolist() == [1, 2] and m.truth_ids.tolist() == [1, 2]
    sparse = match_labels(pred * 5000, truth)  # any label values: the ids are kept
    assert sparse.pred_ids.tolist() == [5000, 10000] and sparse.pairs.tolist() == m.pairs.tolist()
    merged = match_labels(_boxes((12, 40), [(0, 10, 0, 30)]), truth)
    assert merged.merged.tolist() == [True] and merged.tp == 0
    split = match_labels(_boxes((12, 40), [(0, 10, 0, 4), (0, 10, 6, 10)]), truth)
    assert split.split.tolist() == [True, False]


def test_labels_ignore_invalid_pixels_and_mostly_invalid_predictions():
    truth = _boxes((10, 60), [(0, 10, 0, 10), (0, 10, 20, 30)])
    pred = _boxes((10, 60), [(0, 10, 0, 10), (0, 10, 16, 26), (0, 10, 40, 50)])
    valid = np.ones((10, 60), bool)
    valid[:, 16:20] = False  # pred 2 loses 4 of 10 columns: judged on the 6 left (IoU 0.6)
    valid[:, 44:] = False  # pred 3 is 60 % on invalid pixels: not counted
    m = match_labels(pred, truth, valid)
    assert m.pred_ids.tolist() == [1, 2] and m.n_pred == 2
    assert m.ious == pytest.approx([1.0, 0.6]) and (m.precision, m.recall) == (1.0, 1.0)
    # without the mask pred 2 has IoU 60 / 140 and pred 3 is a false positive
    plain = match_labels(pred, truth)
    assert plain.pred_match.tolist() == [0, -1, -1] and plain.precision == pytest.approx(1 / 3)
    # exactly half on invalid pixels is "mostly": not counted either
    valid = np.ones((10, 60), bool)
    valid[:, 45:] = False
    assert match_labels(pred, truth, valid).n_pred == 2


def test_labels_and_polygons_agree_on_random_boxes():
    """Pixel-aligned boxes: the raster and the polygon matcher must give the same answer."""
    rng = np.random.default_rng(3)
    truth_boxes, pred_boxes = [], []
    for r in range(0, 200, 20):
        sizes = rng.integers(4, 15, (10, 2))
        truth_boxes += [(r, r + h, c, c + w) for c, (h, w) in zip(range(0, 200, 20), sizes)]
        for k, c in enumerate(range(0, 200, 40)):  # cell pairs: both shifted, one, or merged
            (h, w), (h2, w2) = sizes[2 * k], sizes[2 * k + 1]
            kind = rng.integers(3)
            dr, dc = rng.integers(0, 4, 2)
            if kind == 2:  # one box over both buildings of the pair
                pred_boxes.append((r, r + max(h, h2), c, c + 20 + w2))
                continue
            pred_boxes.append((r + dr, r + dr + h, c + dc, c + dc + w))
            if kind == 0:
                pred_boxes.append((r + dr, r + h2 + 1, c + 20 + dc, c + 20 + w2 - dc))
    # polygons in (col, -row) metres; on the label raster the predictions must not overlap
    taken = np.zeros((220, 260), bool)
    kept = []
    for r0, r1, c0, c1 in pred_boxes:
        if r1 > r0 and c1 > c0 and not taken[r0:r1, c0:c1].any():
            taken[r0:r1, c0:c1] = True
            kept.append((r0, r1, c0, c1))
    by_labels = match_labels(_boxes((220, 260), kept), _boxes((220, 260), truth_boxes))
    by_polys = match_polygons([sq(c0, -r1, c1, -r0) for r0, r1, c0, c1 in kept],
                              [sq(c0, -r1, c1, -r0) for r0, r1, c0, c1 in truth_boxes], None)
    assert by_polys.tp > 10 and by_polys.merged.any()
    assert by_labels.pairs.tolist() == by_polys.pairs.tolist()
    assert by_labels.ious == pytest.approx(by_polys.ious)
    assert by_labels.merged.tolist() == by_polys.merged.tolist()
    assert by_labels.split.tolist() == by_polys.split.tolist()


def test_labels_of_different_shapes_are_an_input_error():
    with pytest.raises(InputError, match="one grid"):
        match_labels(np.zeros((4, 4), int), np.zeros((4, 5), int))


def test_coverage_rule():
    assert is_found(np.array([0.49, 0.5, 1.0])).tolist() == [False, True, True]
