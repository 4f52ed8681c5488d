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


def _write_results(path, rows):
    fields = ["loss", "missing", "seed", "dice", "iou", "dropped_recall", "collapsed"]
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
    assert len(rows) == 4 and rows[1]["dropped_recall"] is None and rows[3]["collapsed"] is True
    table = paths[1].read_text(encoding="utf-8")
    sd = np.std([0.6, 0.8], ddof=1)  # 0.141
    assert f"| ce | 0.900 | 0.700 ± {sd:.3f} |" in table  # Dice: 0 % one seed, 50 % two
    assert f"| ce | – | 0.600 ± {sd:.3f} |" in table  # recall of dropped buildings
    assert "| lace | – | 0.010 (1 collapsed) |" in table
    assert "Seeds: 0, 1." in table
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_merging_nothing_is_an_input_error(tmp_path):
    empty = _write_results(tmp_path / "empty.csv", [])
    with pytest.raises(InputError, match="No runs"):
        tabulate([empty], tmp_path / "out")
