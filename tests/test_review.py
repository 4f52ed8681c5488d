"""review.py and uncertainty.py: next-round labels, round log, simulated reviewer, hints."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import ORIGIN_3857, pixel_box
from osgeo import gdal, ogr, osr

from ml_core.config import JobSpec, TrainOptions
from ml_core.errors import InputError
from ml_core.labels.classes import is_building
from ml_core.labels.rasterize import UNKNOWN, read_mask
from ml_core.review import loop as review

TINY = TrainOptions(loss="ce", epochs=1, steps_per_epoch=2, batch_size=2, crop_size=32, width=4,
                    depth=2, device="cpu")


def write_proposals(path: Path, rows: list, layer: str = "new_buildings") -> Path:
    """A new-buildings GeoPackage (EPSG:3857) from (wkt, score, status) rows."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3857)
    src = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    lyr = src.CreateLayer(layer, srs=srs, geom_type=ogr.wkbMultiPolygon)
    lyr.CreateField(ogr.FieldDefn("score", ogr.OFTReal))
    lyr.CreateField(ogr.FieldDefn("status", ogr.OFTString))
    for wkt, score, status in rows:
        feat = ogr.Feature(lyr.GetLayerDefn())
        feat.SetGeometry(ogr.ForceToMultiPolygon(ogr.CreateGeometryFromWkt(wkt)))
        feat.SetField("score", score)
        feat.SetField("status", status)
        lyr.CreateFeature(feat)
    src = None
    return path


def statuses(path: Path) -> list:
    src = ogr.Open(str(path))
    return [f.GetField("status") for f in src.GetLayerByName("new_buildings")]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def reviewed(make_raster, make_vector, tmp_path):
    """Raster 64 px; OSM building A; proposals B accepted, C rejected, D proposed."""
    raster = make_raster()
    osm = make_vector("osm.gpkg", [pixel_box(2, 2, 12, 12)])
    props = write_proposals(tmp_path / "props.gpkg", [
        (pixel_box(20, 2, 30, 12), 0.9, review.ACCEPTED),
        (pixel_box(8, 20, 20, 30), 0.6, review.REJECTED),
        (pixel_box(40, 40, 50, 50), 0.7, review.PROPOSED),
    ])
    return raster, osm, props


def test_round_labels_burn_accepted_rejected_and_complete(reviewed, make_vector, tmp_path):
    raster, osm, props = reviewed
    complete = make_vector("complete.gpkg", [pixel_box(0, 0, 32, 64)])
    labels = review.round_labels(raster, osm, props, tmp_path / "round.tif", complete,
                                 hold_out=False)
    mask = read_mask(labels.mask)
    assert labels.counts == review.ReviewCounts(proposed=1, accepted=1, rejected=1)
    assert labels.complete_areas == 1 and not labels.yardstick  # nothing held out
    assert is_building(mask[2:12, 2:12]).all()  # OSM building
    assert is_building(mask[2:12, 20:30]).all()  # accepted proposal
    assert (mask[20:30, 8:20] == 0).all()  # rejected proposal
    assert (mask[40:50, 40:50] == UNKNOWN).all()  # proposed, outside the complete area
    assert mask[35, 10] == 0 and mask[35, 50] == 0  # background in and out of the complete area
    assert (tmp_path / "round.accepted.gpkg").exists()


def test_a_complete_area_adds_certainty_and_never_removes_it(reviewed, make_vector, tmp_path):
    """Drawn over 'empty ground' (here: around the unanswered proposal D), a complete area makes
    D and the unknown margin background inside it, and leaves every pixel outside it as it was
    without it (the defect: background outside became unknown)."""
    from ml_core.config import RasterizeOptions

    raster, osm, props = reviewed
    opts = RasterizeOptions(unknown_margin=1)
    area = make_vector("complete.gpkg", [pixel_box(36, 36, 64, 64)])
    without = read_mask(review.round_labels(raster, osm, props, tmp_path / "a.tif",
                                            options=opts, hold_out=False).mask)
    with_area = read_mask(review.round_labels(raster, osm, props, tmp_path / "b.tif", area,
                                              opts, hold_out=False).mask)
    inside = np.zeros(without.shape, bool)
    inside[36:, 36:] = True
    assert (without[40:50, 40:50] == UNKNOWN).all() and (with_area[40:50, 40:50] == 0).all()
    assert (with_area[inside] == 0).all()  # nothing unknown is left inside
    assert np.array_equal(with_area[~inside], without[~inside])
    assert (without == 0).mean() > 0.7  # background outside stays background


def test_unanswered_proposals_are_unknown_unless_asked_otherwise(reviewed, tmp_path):
    raster, osm, props = reviewed
    mask = read_mask(review.round_labels(raster, osm, props, tmp_path / "a.tif",
                                         hold_out=False).mask)
    assert (mask[40:50, 40:50] == UNKNOWN).all()  # nobody answered: not background
    assert mask[35, 50] == 0 and (mask[20:30, 8:20] == 0).all()  # background still counts
    plain = review.round_labels(raster, osm, props, tmp_path / "b.tif", unanswered_unknown=False,
                                hold_out=False)
    assert (read_mask(plain.mask)[40:50, 40:50] == 0).all()


def test_several_buildings_are_unknown_and_held_out_answers_are_not_trained_on(
        make_raster, make_vector, tmp_path):
    """1 m pixels, 30 m blocks: the block (col, row) is held out when (col + row) % 3 == 0."""
    raster = make_raster(width=96, height=96)
    osm = make_vector("osm.gpkg", [pixel_box(62, 62, 70, 70)])
    props = write_proposals(tmp_path / "props.gpkg", [
        (pixel_box(2, 2, 12, 12), 0.9, review.ACCEPTED),     # block (0, 0): held out
        (pixel_box(32, 2, 42, 12), 0.9, review.ACCEPTED),    # block (1, 0): trained on
        (pixel_box(62, 2, 72, 12), 0.4, review.REJECTED),    # block (2, 0): trained on
        (pixel_box(32, 62, 42, 72), 0.6, review.REJECTED),   # block (1, 2): held out
        (pixel_box(2, 40, 20, 50), 0.8, review.SEVERAL),     # block (0, 1): never held out
    ])
    labels = review.round_labels(raster, osm, props, tmp_path / "m.tif")
    mask = read_mask(labels.mask)
    assert (mask[2:12, 2:12] == UNKNOWN).all() and (mask[62:72, 32:42] == UNKNOWN).all()
    assert is_building(mask[2:12, 32:42]).all() and (mask[2:12, 62:72] == 0).all()
    assert (mask[40:50, 2:20] == UNKNOWN).all()  # several buildings: neither 1 nor 0
    assert labels.counts.several == 1
    yard = labels.yardstick
    assert (yard.counts[review.ACCEPTED], yard.counts[review.REJECTED]) == (1, 1)
    assert len(yard.buildings) == 1 and len(yard.region) == 2


def test_rejection_never_erases_a_mapped_building(reviewed, tmp_path):
    raster, osm, _ = reviewed
    props = write_proposals(tmp_path / "p.gpkg", [(pixel_box(8, 8, 20, 30), 0.5, "rejected")])
    before = digest(props)
    mask = read_mask(review.round_labels(raster, osm, props, tmp_path / "m.tif",
                                         hold_out=False).mask)
    assert is_building(mask[2:12, 2:12]).all()  # the corner of A under the rejection stays
    assert (mask[12:30, 8:20] == 0).all()
    assert digest(props) == before  # inputs are never modified


def test_missing_status_field_is_an_input_error(make_raster, make_vector, tmp_path):
    plain = make_vector("plain.gpkg", [pixel_box(1, 1, 5, 5)])
    with pytest.raises(InputError, match="status"):
        review.round_labels(make_raster(), plain, plain, tmp_path / "m.tif")


def test_review_order():
    scores = np.array([0.55, 0.95, 0.2, 0.48, 0.75])
    assert review.review_order(scores, "score").tolist() == [1, 4, 0, 3, 2]
    assert review.review_order(scores, "uncertainty").tolist() == [3, 0, 4, 2, 1]
    # centred on the model's threshold, not on 0.5
    assert review.review_order(scores, "uncertainty", centre=0.8).tolist() == [4, 1, 0, 3, 2]
    with pytest.raises(InputError):
        review.review_order(scores, "random")


def test_simulate_review_scores_proposals_one_to_one(make_vector, tmp_path):
    truth = make_vector("truth.gpkg", [pixel_box(0, 0, 10, 10), pixel_box(20, 0, 30, 10),
                                       pixel_box(40, 0, 50, 10), pixel_box(60, 0, 70, 10),
                                       pixel_box(72, 0, 82, 10)])
    rows = [(pixel_box(1, 1, 9, 9), 0.9, "proposed"),        # true: IoU 0.64
            (pixel_box(0, 30, 10, 40), 0.85, "proposed"),    # false
            (pixel_box(14, 0, 24, 10), 0.7, "proposed"),     # 40 % on truth: skipped
            (pixel_box(21, 1, 29, 9), 0.6, "proposed"),      # true
            (pixel_box(35, 0, 45, 10), 0.52, "proposed"),    # half on truth, IoU 1/3: skipped
            (pixel_box(60, 0, 82, 10), 0.5, "proposed"),     # over two buildings: several
            (pixel_box(0, 50, 10, 60), 0.3, "proposed")]     # false, never reviewed (n=4)
    props = write_proposals(tmp_path / "props.gpkg", rows)
    before = digest(props)
    out = tmp_path / "reviewed.gpkg"
    counts = review.simulate_review(props, truth, out, n=4)
    assert counts == review.ReviewCounts(proposed=3, accepted=2, rejected=1, several=1)
    assert statuses(out) == ["accepted", "rejected", "proposed", "accepted", "proposed",
                             "several", "proposed"]
    assert digest(props) == before
    # closest to the threshold (0.5) first: several (0.5), skip (0.52), accepted (0.6)
    review.simulate_review(props, truth, out, n=2, order="uncertainty")
    assert statuses(out) == ["proposed", "proposed", "proposed", "accepted", "proposed",
                             "several", "proposed"]
    # a looser bar accepts the proposal half on a building (IoU 1/3)
    review.simulate_review(props, truth, out, n=7, iou_min=0.3)
    assert statuses(out)[4] == "accepted"


def test_simulated_reviewer_says_several_even_when_one_building_matches(make_vector, tmp_path):
    truth = make_vector("truth.gpkg", [pixel_box(0, 0, 10, 10), pixel_box(10, 0, 12, 2)])
    props = write_proposals(tmp_path / "props.gpkg", [(pixel_box(0, 0, 12, 10), 0.9, "proposed")])
    counts = review.simulate_review(props, truth, tmp_path / "reviewed.gpkg")  # IoU 100 / 120
    assert counts == review.ReviewCounts(several=1)


def test_carry_decisions_marks_the_same_buildings_again(reviewed, tmp_path):
    _raster, _osm, previous = reviewed  # B accepted, C rejected, D proposed
    rows = [(pixel_box(21, 3, 30, 12), 0.8, "proposed"),    # B again, slightly smaller
            (pixel_box(8, 20, 19, 29), 0.7, "proposed"),    # C again
            (pixel_box(40, 40, 50, 50), 0.7, "proposed"),   # D: nobody answered
            (pixel_box(16, 20, 28, 30), 0.6, "proposed"),   # 1/3 on C: still to review
            (pixel_box(55, 55, 60, 60), 0.9, "proposed")]   # new elsewhere
    new = write_proposals(tmp_path / "round1.gpkg", rows)
    counts = review.carry_decisions(previous, new)
    assert counts == review.ReviewCounts(proposed=3, accepted=1, rejected=1)
    assert statuses(new) == ["accepted", "rejected", "proposed", "proposed", "proposed"]
    assert statuses(previous) == ["accepted", "rejected", "proposed"]


def test_set_statuses_rejects_unknown_values(tmp_path):
    props = write_proposals(tmp_path / "p.gpkg", [(pixel_box(1, 1, 5, 5), 0.9, "proposed")])
    review.set_statuses(props, {1: "accepted"})
    assert statuses(props) == ["accepted"]
    with pytest.raises(InputError, match="maybe"):
        review.set_statuses(props, {1: "maybe"})


def test_round_log_numbers_rounds(tmp_path):
    model = tmp_path / "m.safetensors"
    assert review.read_round_log(model) == []
    review.log_round(model, {"labels_added": 2})
    entry = review.log_round(model, {"labels_added": 5})
    assert entry["round"] == 1
    assert [e["labels_added"] for e in review.read_round_log(model)] == [2, 5]
    (tmp_path / "next").mkdir()
    later = review.log_round(tmp_path / "next" / "m.safetensors", {"labels_added": 7}, model)
    assert later["round"] == 2  # the history follows the model into another folder
    assert len(review.read_round_log(tmp_path / "next" / "m.safetensors")) == 3


def test_run_round_starts_from_the_current_model_and_logs(reviewed, tmp_path):
    from ml_core.learn.train import finetune

    raster, osm, props = reviewed
    first = finetune(raster, osm, tmp_path / "r0.safetensors", TINY, base=None)
    job = JobSpec(train=TINY).for_review_round()
    result = review.run_round(raster, osm, props, first.model_path, tmp_path / "r1", job)
    assert result.train.model_path == tmp_path / "r1.safetensors"
    assert result.train.model_path.exists()
    assert result.train.history[0]["epoch"] == 0  # the current model is scored first (kept
    # unless an epoch beats it on the round's held-out blocks)
    mask = read_mask(result.labels.mask)
    # B (accepted) and C (rejected) lie in the held-out block (0, 0): not trained on, measured
    assert (mask[2:12, 20:30] == UNKNOWN).all() and (mask[20:30, 8:20] == UNKNOWN).all()
    log = review.read_round_log(result.train.model_path)
    assert [e["round"] for e in log] == [0, 1] and log[1] == result.log_entry
    assert log[0]["model"] == str(first.model_path)
    assert log[0]["val_dice"] == first.best_val_dice
    assert log[1]["labels_added"] == 1 and log[1]["labels_rejected"] == 1
    assert log[1]["base"] == str(first.model_path)
    assert "val_dice" in log[1]
    assert log[1]["held_out"] == {"proposed": 0, "accepted": 1, "rejected": 1, "several": 0,
                                  "complete_areas": 0}
    for key in ("yardstick_before", "yardstick_after"):
        assert log[1][key]["n_truth"] == 1  # the same held-out answers before and after
    assert isinstance(log[1]["model_changed"], bool)
    assert log[1]["model_changed"] == (review.weights_digest(first.model_path) !=
                                       review.weights_digest(result.train.model_path))
    assert (log[1]["ignore_confident"], log[1]["keep_start"]) == (None, True)


def test_yardstick_scores_one_to_one_inside_the_held_out_answers():
    from ml_core.review.yardstick import Yardstick

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3857)
    geom = ogr.CreateGeometryFromWkt
    a, b = geom(pixel_box(0, 0, 10, 10)), geom(pixel_box(20, 0, 30, 10))  # accepted
    rejected = geom(pixel_box(40, 0, 50, 10))
    yard = Yardstick(srs, buildings=[a, b], region=[a, b, rejected])
    footprints = [geom(pixel_box(0, 0, 10, 9)),    # a: IoU 0.9, matched
                  geom(pixel_box(20, 0, 26, 10)),  # b: IoU 0.6, matched
                  geom(pixel_box(24, 0, 30, 10)),  # b again: one to one, so a false positive
                  geom(pixel_box(41, 1, 49, 9)),   # inside the rejected proposal: false
                  geom(pixel_box(0, 40, 10, 50))]  # outside every answer: not judged
    scores = np.array([0.9, 0.85, 0.7, 0.6, 0.99])
    got = yard.score(footprints, scores)
    assert (got["matched"], got["n_pred"], got["n_truth"]) == (2, 4, 2)
    assert got["precision"] == pytest.approx(0.5) and got["recall"] == pytest.approx(1.0)
    assert got["f1"] == pytest.approx(2 * 2 / (4 + 2))
    assert got["calibration"] == [[0.6, 0.7, 1, 0], [0.7, 0.8, 1, 0], [0.8, 0.9, 1, 1],
                                  [0.9, 1.0, 1, 1]]


def test_score_cut_takes_only_scores_the_answers_show_are_right():
    from ml_core.review.yardstick import calibrate, score_cut

    scores = np.array([0.95, 0.93, 0.91, 0.88, 0.87, 0.86, 0.85, 0.84, 0.5])
    right = np.array([1, 1, 1, 1, 1, 0, 0, 0, 1], bool)
    table = calibrate(scores, right)
    assert table == [[0.5, 0.6, 1, 1], [0.8, 0.9, 5, 2], [0.9, 1.0, 3, 3]]
    assert score_cut(table, 0.8, min_n=3) == 0.9  # 0.8-0.9 holds 2 right of 5: stop there
    assert score_cut(table, 0.8, min_n=5) is None  # too few answers to trust any cut
    assert score_cut(table, 0.5, min_n=3) == 0.5


def test_describe_round_says_when_the_model_did_not_change():
    figures = {"f1": 0.6209476309, "precision": 0.55, "recall": 0.71, "threshold": 0.45,
               "n_pred": 9, "n_truth": 7}
    entry = {"round": 1, "model_changed": False, "held_out": {
        "accepted": 4, "rejected": 3, "complete_areas": 1},
        "yardstick_before": figures, "yardstick_after": dict(figures)}
    text = review.describe_round(entry)
    assert "did not change" in text and "no change" in text and "0.62" in text
    assert "0.6209" not in text
    gained = dict(entry, model_changed=True, yardstick_after={**figures, "f1": 0.7})
    assert "F1 0.62 → 0.70" in review.describe_round(gained)
    moved = dict(entry, yardstick_after={**figures, "f1": 0.7, "threshold": 0.6})
    assert "only its threshold did (0.45 → 0.60)" in review.describe_round(moved)
    lost = dict(entry, discarded={**figures, "f1": 0.5})
    assert "keeps the current one" in review.describe_round(lost)
    assert "no held-out answers" in review.describe_round(dict(entry, yardstick_before=None))
    nothing = {**figures, "f1": 1.0, "n_pred": 0, "n_truth": 0}  # a held-out area, judged empty
    assert "no held-out answers" in review.describe_round(dict(
        entry, yardstick_before=nothing, yardstick_after=nothing))


def write_probability(path: Path, prob: np.ndarray) -> Path:
    h, w = prob.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), w, h, 1, gdal.GDT_Float32)
    ds.SetGeoTransform((ORIGIN_3857[0], 1, 0, ORIGIN_3857[1], 0, -1))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3857)
    ds.SetSpatialRef(srs)
    ds.GetRasterBand(1).WriteArray(prob)
    ds = None
    return path


def test_uncertainty_hints_on_a_synthetic_probability(make_vector, tmp_path):
    from ml_core.review.hints import hints

    prob = np.full((64, 64), 0.02, np.float32)
    prob[2:12, 2:12] = 0.95     # OSM building the model agrees with
    prob[20:30, 2:12] = 0.05    # OSM building the model scores low
    prob[40:50, 40:52] = 0.5    # unsure region, 120 px
    prob[2:4, 60:62] = 0.5      # unsure, but too small
    prob[2:12, 40:50] = 0.9     # confident building OSM lacks
    prob = write_probability(tmp_path / "prob.tif", prob)
    osm = make_vector("osm.gpkg", [pixel_box(2, 2, 12, 12), pixel_box(2, 20, 12, 30)])
    props = write_proposals(tmp_path / "new.gpkg", [(pixel_box(40, 2, 50, 12), 0.9, "proposed"),
                                                    (pixel_box(40, 40, 52, 50), 0.5, "proposed")])
    out = hints(prob, osm, tmp_path / "hints.gpkg", new_buildings=props, min_area=10.0)
    src = ogr.Open(str(out))
    layer = src.GetLayer(0)
    found = sorted((f.GetField("reason"), round(f.GetField("score"), 2),
                    round(f.GetGeometryRef().GetArea())) for f in layer)
    assert found == [("missing_in_osm", 0.9, 100), ("osm_low_score", 0.05, 100),
                     ("unsure", 0.5, 120)]
