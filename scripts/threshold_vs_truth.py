"""Does the threshold policy choose what the truth would? One fine-tune, measured on an area
whose buildings are all known.

A ``bfe demo`` output holds the fine-tuned model, its probability raster and the label mask
it trained on (half the buildings dropped). This script rebuilds that fine-tune's held-out
crops exactly (``threshold_policy_ab.held_out``), scores every pair of building and seed
thresholds there as the policy does (``ml_core.learn.threshold``), and scores the same pairs
on the whole probability raster against *all* the area's buildings, one to one at IoU >= 0.5
(``extraction_grid``); ``policy_counting_fragments`` is the choice when the buildings under
``min_area`` are counted, as the policy did before. The grid reaches beyond the policy's
(0.1-0.9), to see whether the policy's choice at an end of its grid is a choice or a bound.
Diagnosis only: the shipped policy is not tuned on these figures.

    python scripts/threshold_vs_truth.py OUT_OF_BFE_DEMO --seed S [--raster R --buildings B] \
        [--json J]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from extraction_grid import true_ids  # noqa: E402
from threshold_policy_ab import demo_run_arguments, held_out  # noqa: E402

from ml_core.evaluate.matching import match_labels  # noqa: E402
from ml_core.infer.instances import drop_small, label_instances  # noqa: E402
from ml_core.infer.thresholds import Thresholds  # noqa: E402
from ml_core.io import raster as gdalio  # noqa: E402
from ml_core.learn import threshold  # noqa: E402

WIDE_BUILDING = (0.1, 0.15, 0.2, 0.25, *threshold.BUILDING_GRID, 0.75, 0.8, 0.85, 0.9)
WIDE_SEED = (0.1, 0.2, *threshold.SEED_GRID, 0.8)


def truth_f1(prob_path: Path, buildings: Path, min_seed_px: int) -> dict:
    """Object F1 of the whole probability raster against all ``buildings`` for each pair of
    :data:`WIDE_BUILDING` x :data:`WIDE_SEED`, extracted as ``bfe extract`` labels them."""
    prob = gdalio.open_raster(prob_path)
    building = prob.GetRasterBand(1).ReadAsArray()
    interior = prob.GetRasterBand(2).ReadAsArray()
    valid = building >= 0
    truth = true_ids(prob, buildings)
    min_px = threshold.extraction_sizes(gdalio.pixel_size_m(prob))[1]
    scores = {}
    for t in WIDE_BUILDING:
        for s in WIDE_SEED:
            pred, _ = label_instances(building, interior, valid, Thresholds(t, s), min_seed_px)
            scores[(t, s)] = match_labels(drop_small(pred, min_px), truth, valid).f1
    return scores


def on_grid(scores: dict, buildings: tuple, seeds: tuple) -> dict:
    """The part of ``scores`` on the grid ``buildings`` x ``seeds``."""
    return {k: v for k, v in scores.items() if k[0] in buildings and k[1] in seeds}


def main() -> None:
    args = demo_run_arguments(__doc__.splitlines()[0]).parse_args()
    bands, masks, (min_seed, min_area) = held_out(args.run, args.raster, args.base, args.seed)
    held = threshold.object_f1_by_thresholds(bands, masks, min_seed, WIDE_BUILDING, WIDE_SEED,
                                             min_area)
    truth = truth_f1(args.run / "probability.tif", args.buildings, min_seed)
    shipped = (threshold.BUILDING_GRID, threshold.SEED_GRID)
    counting_fragments = threshold.object_f1_by_thresholds(bands, masks, min_seed)
    picks = {"policy": threshold.best_cell(on_grid(held, *shipped)),
             "policy_counting_fragments": threshold.best_cell(counting_fragments),
             "policy_wide_grid": threshold.best_cell(held),
             "truth_best": threshold.best_cell(on_grid(truth, *shipped)),
             "truth_best_wide_grid": threshold.best_cell(truth)}
    result = {"run": str(args.run), "held_out_crops": len(masks),
              **{name: {"thresholds": [t.building, t.seed],
                        "held_out_f1": round(held[(t.building, t.seed)], 4),
                        "truth_f1": round(truth[(t.building, t.seed)], 4)}
                 for name, t in picks.items()},
              "grid": [[t, s, round(held[(t, s)], 4), round(truth[(t, s)], 4)]
                       for t, s in held]}
    for name in picks:
        print(name, result[name], flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
