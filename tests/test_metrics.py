"""metrics.py: pixel Dice/IoU, per-tile means, one-to-one object figures and coverage figures
(also against dropped buildings), evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import pixel_box
from osgeo import ogr, osr

from ml_core.cli import main
from ml_core.errors import InputError
from ml_core.evaluate.metrics import (
    evaluate,
    f_beta,
    object_metrics,
    pixel_metrics,
    pixel_metrics_from_counts,
    tile_counts,
    tile_mean,
    visible_share,
)
from ml_core.io.vector import read_polygons, srs_of


def test_pixel_metrics_formulas():
    pred = np.zeros((4, 4), bool)
    truth = np.zeros((4, 4), bool)
    pred[0, :3] = True
    truth[0, 1:] = True
    m = pixel_metrics(pred, truth)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 1, 1)
    assert m["dice"] == pytest.approx(4 / 6) and m["iou"] == pytest.approx(2 / 4)
    valid = np.ones((4, 4), bool)
    valid[0, 0] = False
    assert pixel_metrics(pred, truth, valid)["fp"] == 0
    counts = tile_counts(pred, truth, np.ones((4, 4), bool), 2)
    assert counts.tolist() == [[1, 1, 0], [1, 0, 1], [0, 0, 0], [0, 0, 0]]
    assert tile_mean(counts)["dice_tile_mean"] == pytest.approx(2 / 3)


def test_object_metrics_one_to_one_coverage_and_dropped(make_vector):
    truth = make_vector("t.gpkg", [pixel_box(0, 0, 10, 10), pixel_box(20, 0, 30, 10),
                                   pixel_box(40, 0, 50, 10)])
    dropped = make_vector("d.gpkg", [pixel_box(40, 0, 50, 10)], layer="dropped")
    pred = make_vector("p.gpkg", [pixel_box(0, 0, 10, 6),  # IoU 0.6: matched; covers 60 %: found
                                  pixel_box(20, 0, 30, 3),  # IoU 0.3, 30 %: neither, overlaps
                                  pixel_box(60, 0, 70, 10)], layer="footprints")  # false positive
    m = object_metrics(pred, truth, dropped)
    assert (m["matched"], m["n_truth"], m["n_pred"]) == (1, 3, 3)
    assert m["precision"] == m["recall"] == m["f1"] == pytest.approx(1 / 3)
    assert m["mean_iou"] == pytest.approx(0.6, abs=1e-4)  # pixel_box metres are EPSG:3857
    assert m["coverage_recall"] == pytest.approx(1 / 3)
    assert m["coverage_precision"] == pytest.approx(2 / 3)
    assert (m["dropped_recall"], m["dropped_precision"], m["dropped_coverage_recall"]) == (0, 0, 0)
    # the new buildings (here one, 9 of the dropped building's 10 columns) scored on their own
    new = make_vector("n.gpkg", [pixel_box(41, 0, 50, 10)], layer="new_buildings")
    m = object_metrics(pred, truth, dropped, new=new)
    assert (m["dropped_precision"], m["dropped_recall"], m["dropped_f1"]) == (1.0, 1.0, 1.0)
    assert m["dropped_mean_iou"] == pytest.approx(0.9, abs=1e-4)
    assert m["dropped_coverage_recall"] == 0.0  # coverage is still of all predictions


def test_object_metrics_merged_and_split(make_vector):
    truth = make_vector("t.gpkg", [pixel_box(0, 0, 10, 10), pixel_box(12, 0, 22, 10),
                                   pixel_box(40, 0, 60, 10)])
    pred = make_vector("p.gpkg", [pixel_box(0, 0, 22, 10),  # over the first two: merged
                                  pixel_box(40, 0, 49, 10), pixel_box(51, 0, 60, 10)])  # split
    m = object_metrics(pred, truth)
    assert m["merged_share"] == pytest.approx(1 / 3) and m["split_share"] == pytest.approx(1 / 3)
    assert m["matched"] == 0 and m["f1"] == 0.0
    assert m["coverage_recall"] == 1.0  # the coverage rule calls all three found


def test_object_metrics_reprojects_polygon_sets(make_vector):
    """Truth read in EPSG:4326 and predictions in EPSG:3857 describe the same boxes."""
    wkts = [pixel_box(0, 0, 10, 10), pixel_box(20, 0, 30, 10)]
    truth = read_polygons(make_vector("t.gpkg", wkts), srs_of("EPSG:4326"))
    pred = read_polygons(make_vector("p.gpkg", wkts[:1]), None)
    m = object_metrics(pred, truth)
    assert (m["recall"], m["precision"], m["matched"]) == (0.5, 1.0, 1)
    assert m["mean_iou"] == pytest.approx(1.0)
    swapped = object_metrics(truth, pred)  # measured from geographic coordinates (numpy floats)
    assert (swapped["precision"], swapped["recall"]) == (0.5, 1.0)
    assert truth.srs.IsSame(srs_of("EPSG:4326"))  # the caller's set is left as it was


def test_evaluate_mask_raster_and_vector(make_raster, make_vector, tmp_path):
    mask = np.zeros((1, 40, 40), np.uint8)
    mask[0, 0:10, 0:10] = 1
    mask[0, 30:40, 30:40] = 255  # unknown pixels are ignored
    pred_tif = make_raster("m.tif", width=40, height=40, data=mask)
    truth = make_vector("t.gpkg", [pixel_box(0, 0, 10, 10), pixel_box(30, 30, 40, 40)])
    out = evaluate(pred_tif, truth, json_out=tmp_path / "e.json", tile=20)
    assert out["pixel"]["dice"] == 1.0 and out["object"]["recall"] == pytest.approx(0.5)
    assert json.loads((tmp_path / "e.json").read_text())["pixel"]["tp"] == 100
    mask[0, 0, 0:10] = 2  # instance classes: an edge row is building too, contact is not
    mask[0, 12:14, 0:10] = 3
    out = evaluate(make_raster("m4.tif", width=40, height=40, data=mask), truth, tile=20)
    assert out["pixel"]["dice"] == 1.0 and out["object"]["matched"] == 1
    pred_vec = make_vector("p.gpkg", [pixel_box(0, 0, 10, 5)], layer="footprints")
    out = evaluate(pred_vec, truth, raster=make_raster("r.tif", width=40, height=40))
    assert out["pixel"]["tp"] == 50 and out["pixel"]["fn"] == 150
    with pytest.raises(InputError, match="not found"):
        evaluate(tmp_path / "missing.gpkg", truth)


def test_evaluate_leaves_out_buildings_off_the_imagery(make_raster, make_vector):
    """A building beyond the raster cannot be found: with a grid it is not scored (counted as
    off the imagery); without one it is."""
    truth = make_vector("t.gpkg", [pixel_box(0, 0, 10, 10), pixel_box(50, 0, 60, 10),
                                   pixel_box(36, 20, 46, 30)])  # beyond; 40 % on the raster
    pred = make_vector("p.gpkg", [pixel_box(0, 0, 10, 10)], layer="footprints")
    raster = make_raster("r.tif", width=40, height=40)
    with_grid = evaluate(pred, truth, raster=raster)["object"]
    assert (with_grid["n_truth"], with_grid["truth_off_imagery"]) == (1, 2)
    assert with_grid["recall"] == 1.0
    without = evaluate(pred, truth)["object"]
    assert (without["n_truth"], without["truth_off_imagery"], without["recall"]) == (3, 0, 1 / 3)


def test_evaluate_scores_the_new_buildings_layer_against_dropped(make_vector):
    truth = make_vector("t.gpkg", [pixel_box(0, 0, 10, 10), pixel_box(20, 0, 30, 10)])
    dropped = make_vector("d.gpkg", [pixel_box(20, 0, 30, 10)], layer="dropped")
    out = make_vector("f.gpkg", [pixel_box(0, 0, 10, 10), pixel_box(21, 0, 30, 10)],
                      layer="footprints")
    m = evaluate(out, truth, dropped=dropped)["object"]  # no new_buildings layer: all of them
    assert m["dropped_scored"] == "all predictions" and m["dropped_precision"] == 0.5
    src = ogr.Open(str(out), update=1)
    layer = src.CreateLayer("new_buildings", srs=srs_of("EPSG:3857"), geom_type=ogr.wkbPolygon)
    feat = ogr.Feature(layer.GetLayerDefn())
    feat.SetGeometry(ogr.CreateGeometryFromWkt(pixel_box(21, 0, 30, 10)))
    layer.CreateFeature(feat)
    src = layer = feat = None
    m = evaluate(out, truth, dropped=dropped)["object"]
    assert m["dropped_scored"].endswith("|layername=new_buildings")
    assert (m["dropped_precision"], m["dropped_recall"]) == (1.0, 1.0)
    assert (m["precision"], m["recall"], m["n_pred"]) == (1.0, 1.0, 2)  # all footprints


def test_cli_evaluate_prints_one_to_one_figures_first(make_vector, capsys):
    truth = make_vector("t.gpkg", [pixel_box(0, 0, 10, 10), pixel_box(20, 0, 30, 10)])
    dropped = make_vector("d.gpkg", [pixel_box(20, 0, 30, 10)], layer="dropped")
    pred = make_vector("p.gpkg", [pixel_box(0, 0, 10, 10), pixel_box(20, 0, 30, 4)],
                       layer="footprints")
    assert main(["evaluate", str(pred), "--truth", str(truth), "--dropped", str(dropped)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Objects, one to one at IoU >= 0.5: F1 0.50 (precision 0.50, "
                               "recall 0.50: 1 matched of 2 polygons and 2 buildings)")
    assert lines[0].endswith("; unmatched polygons: 0 pieces of split buildings, 0 merged, 1 "
                             "near misses (IoU 0.3-0.5), 0 on no building; unmatched buildings: "
                             "0 split, 0 in merged polygons, 1 near misses, 0 missed")
    assert lines[1].startswith("Against the dropped buildings (all predictions): F1 0.00")
    assert "1 near misses (IoU 0.3-0.5), 1 on no building;" in lines[1]  # the kept house
    assert lines[2].startswith("Coverage (secondary; found = predictions cover >= 50 %): "
                               "recall 0.50, precision 1.00, recall of dropped 0.00")


def test_visible_share_of_buildings_on_masked_imagery(make_raster, make_vector):
    mask = np.ones((40, 40), bool)
    mask[:, :20] = False  # left half masked (no imagery)
    raster = make_raster(width=40, height=40, mask=mask)
    wkts = [pixel_box(25, 5, 35, 15),  # all on imagery
            pixel_box(2, 5, 12, 15),  # all masked
            pixel_box(14, 20, 24, 30),  # 6 of 10 columns masked -> 40 % visible
            pixel_box(45, 5, 55, 15),  # off the raster
            pixel_box(36, 25, 46, 35)]  # 4 of 10 columns on the raster -> 40 % visible
    polys = read_polygons(make_vector(wkts=wkts, epsg=3857), None)
    assert np.allclose(visible_share(raster, polys), [1.0, 0.0, 0.4, 0.0, 0.4])


def test_visible_share_reprojects_the_polygons(make_raster, make_vector):
    mask = np.ones((40, 40), bool)
    mask[:, :20] = False
    raster = make_raster(width=40, height=40, mask=mask)
    box3857 = ogr.CreateGeometryFromWkt(pixel_box(25, 5, 35, 15))
    to4326 = osr.CoordinateTransformation(srs_of("EPSG:3857"), srs_of("EPSG:4326"))
    box3857.Transform(to4326)
    polys = read_polygons(make_vector(wkts=[box3857.ExportToWkt()], epsg=4326), None)
    assert visible_share(raster, polys)[0] > 0.95


def test_f_beta_weights_recall():
    tp, fp, fn = 8, 2, 4
    dice = pixel_metrics_from_counts(tp, fp, fn)["dice"]  # 16 / 22
    assert f_beta(tp, fp, fn, beta=1.0) == pytest.approx(dice) == pytest.approx(16 / 22)
    assert f_beta(tp, fp, fn, beta=2.0) == pytest.approx(5 * 8 / (5 * 8 + 4 * 4 + 2))  # 0.690
    assert f_beta(0, 0, 0, beta=2.0) == 1.0
