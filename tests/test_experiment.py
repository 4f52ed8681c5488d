"""``bfe experiment`` on a tiny grid: results.csv, the Markdown table and the chart."""

import csv

import numpy as np

from ml_core.config import TrainOptions
from ml_core.experiment import ExperimentConfig, run_experiment, score
from ml_core.labels import UNKNOWN
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
    assert rows[1]["dropped_recall"] != "" and int(rows[1]["n_dropped"]) > 0
    table = paths[1].read_text(encoding="utf-8")
    assert "| ce |" in table and "50% missing" in table
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_counts_found_dropped_buildings_and_test_dice():
    complete = np.zeros((4, 8), np.uint8)
    complete[:, 6:] = 1
    complete[0, 0] = UNKNOWN
    test = np.zeros((4, 8), bool)
    test[:, 4:] = True
    ids = np.zeros((4, 8), np.int32)
    ids[0:2, 0:2], ids[2:4, 2:4] = 1, 2
    prob = np.zeros((4, 8))
    prob[0:2, 0:2] = 0.9  # building 1 found, building 2 missed
    prob[:, 6:] = 0.9  # test area perfect
    s = score(prob, 0.5, complete, test, ids)
    assert s["dice"] == 1.0 and s["iou"] == 1.0
    assert s["dropped_recall"] == 0.5 and s["n_dropped"] == 2
