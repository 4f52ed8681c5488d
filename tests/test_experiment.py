"""``bfe experiment`` on a tiny grid: results.csv, the Markdown table and the chart."""

import csv

import numpy as np
import pytest

from ml_core.config import TrainOptions
from ml_core.errors import InputError
from ml_core.evaluate.experiment import ExperimentConfig, read_csv, run_experiment, score, tabulate
from ml_core.labels.rasterize import UNKNOWN
from ml_core.pipeline import SAMPLE_BUILDINGS, SAMPLE_RASTER

TINY = TrainOptions(loss="ce", epochs=1, steps_per_epoch=2, batch_size=2, crop_size=64, width=4,
                    depth=2, gsd_m=0.8, device="cpu")


def test_tiny_grid_writes_csv_table_and_chart(tmp_path):
    config = ExperimentConfig(losses=("ce",), missing=(0.0, 0.5), minutes=None,
                              raster=str(SAMPLE_RASTER), buildings=str(SAMPLE_BUILDINGS),
                              train=TINY)
    paths = run_experiment(None, tmp_path, config)
    assert [p.name for p in paths] == ["results.csv", "table.md", "dice.png"]
    with open(paths[0], encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["loss"], float(r["missing"])) for r in rows] == [("ce", 0.0), ("ce", 0.5)]
    assert rows[1]["dropped_coverage_recall"] != "" and int(rows[1]["n_dropped"]) > 0
    assert 0 <= float(rows[1]["dropped_f1"]) <= 1 and 0 <= float(rows[0]["object_f1"]) <= 1
    assert rows[0]["dropped_f1"] == ""  # nothing dropped at 0 %
    table = paths[1].read_text(encoding="utf-8")
    assert "| ce |" in table and "50% missing" in table
    assert "## Object F1 on the held-out area (one to one, IoU >= 0.5)" in table
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_one_to_one_on_the_test_area_and_new_against_dropped():
    """Columns 10-19 are the test area, 0-9 training. Buildings (rows, columns): test A 0:4
    11:15, B 6:10 11:15, C 0:4 16:20; training, dropped D1 0:4 0:4 and D2 6:10 0:4, kept K 0:4
    5:9. Ids: all A..K = 1..6, dropped D1, D2 = 1, 2."""
    shape = (10, 20)
    boxes = {"A": (0, 4, 11, 15), "B": (6, 10, 11, 15), "C": (0, 4, 16, 20),
             "D1": (0, 4, 0, 4), "D2": (6, 10, 0, 4), "K": (0, 4, 5, 9)}
    complete = np.zeros(shape, np.uint8)
    all_ids, dropped_ids = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
    for k, (name, (r0, r1, c0, c1)) in enumerate(boxes.items()):
        complete[r0:r1, c0:c1] = 1
        all_ids[r0:r1, c0:c1] = k + 1
        if name in ("D1", "D2"):
            dropped_ids[r0:r1, c0:c1] = k - 2
    complete[0, 0] = 2  # an edge pixel is building too (instance classes)
    test = np.zeros(shape, bool)
    test[:, 10:] = True
    prob = np.zeros(shape)
    prob[0:4, 11:15] = 0.9  # A exactly
    prob[6:9, 11:15] = 0.9  # 3 of B's 4 rows: IoU 0.75
    prob[6:10, 16:20] = 0.9  # nothing there; C missed
    prob[0:10, 0:4] = 0.9  # one blob over D1 and D2 (and the gap): IoU 16/40 with each
    prob[0:4, 5:9] = 0.9  # K, kept: not judged as new
    s = score(prob, 0.5, complete, test, dropped_ids, all_ids)
    tp, fp, fn = 28, 16, 20  # test area: A 16 + B 12 right, 16 false, B 4 + C 16 missed
    assert s["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert s["object_f1"] == s["object_precision"] == s["object_recall"] == pytest.approx(2 / 3)
    assert s["object_mean_iou"] == pytest.approx((1 + 0.75) / 2)
    # coverage calls both dropped buildings found; one to one the blob matches neither
    assert s["dropped_coverage_recall"] == 1.0 and s["n_dropped"] == 2
    assert (s["dropped_f1"], s["dropped_precision"], s["dropped_recall"]) == (0.0, 0.0, 0.0)
    assert s["dropped_merged_share"] == 1.0  # the one new blob; K's does not count
    prob[0:10, 0:4] = 0.0
    prob[0:4, 0:4] = 0.9  # D1 exactly, D2 missed
    s = score(prob, 0.5, complete, test, dropped_ids, all_ids)
    assert (s["dropped_precision"], s["dropped_recall"]) == (1.0, 0.5)
    assert s["dropped_coverage_recall"] == 0.5
    complete[6:9, 0:4] = UNKNOWN  # D2 mostly on masked pixels: not judged one to one
    s = score(prob, 0.5, complete, test, dropped_ids, all_ids)
    assert (s["dropped_precision"], s["dropped_recall"]) == (1.0, 1.0)
    assert s["dropped_coverage_recall"] == 0.5  # coverage counts it as missed, as before


def _write_results(path, rows):
    fields = ["loss", "missing", "seed", "dice", "iou", "dropped_recall", "collapsed"]  # old
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(dict(zip(fields, r)) for r in rows)
    return path


def test_merged_grids_show_mean_and_spread_over_seeds(tmp_path):
    a = _write_results(tmp_path / "a.csv", [("ce", 0.5, 0, 0.6, 0.4, 0.5, False),
                                            ("ce", 0.0, 0, 0.9, 0.8, "", False)])
    b = _write_results(tmp_path / "b.csv", [("ce", 0.5, 1, 0.8, 0.6, 0.7, False),
                                            ("lace", 0.5, 1, 0.01, 0.0, 0.0, True)])
    paths = tabulate([a, b], tmp_path / "merged")
    rows = read_csv(paths[0])
    assert len(rows) == 4 and rows[1]["dropped_coverage_recall"] is None
    assert rows[3]["collapsed"] is True and "dropped_recall" not in rows[0]  # old name: coverage
    table = paths[1].read_text(encoding="utf-8")
    sd = np.std([0.6, 0.8], ddof=1)  # 0.141
    assert f"| ce | 0.900 | 0.700 ± {sd:.3f} |" in table  # Dice: 0 % one seed, 50 % two
    assert f"| ce | – | 0.600 ± {sd:.3f} |" in table  # coverage recall of dropped buildings
    assert "Object F1" not in table  # not measured in these old grids: no empty sections
    assert "| lace | – | 0.010 (1 collapsed) |" in table
    assert "Seeds: 0, 1." in table
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_merging_nothing_is_an_input_error(tmp_path):
    empty = _write_results(tmp_path / "empty.csv", [])
    with pytest.raises(InputError, match="No runs"):
        tabulate([empty], tmp_path / "out")
