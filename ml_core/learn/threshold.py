"""The threshold policy: which thresholds a model keeps, chosen on its held-out blocks.

The default policy, ``object_f1``, extracts buildings from the held-out crops exactly as
``bfe extract`` does (``ml_core.infer.instances.label_instances``) for every pair of building and
seed thresholds on a small grid, drops the predicted buildings under ``min_area`` as extraction
does, matches the rest one to one at IoU >= 0.5 with the buildings of the held-out labels
(``ml_core.evaluate.matching.match_labels``), and keeps the pair with the best object F1.
Counting the fragments that extraction never writes (high thresholds leave many) pulled every
choice to the grid's lowest building threshold (``docs/experiments/threshold_vs_truth``).
A prediction that touches unknown pixels and overlaps no labelled building is not counted:
with missing labels it is most likely an unmapped building (``ignore_confident`` makes the
base model's confident finds unknown), and counting it only once it is more than half on
labelled pixels would favour high thresholds, which shrink such predictions into the unknown
pixels (on the one run measured both rules chose the same thresholds:
``docs/experiments/threshold_policy``). The pixel policies (``f2``: recall counted twice,
``dice``) choose the building threshold by pixel counts and keep the default seed
threshold. Ties go to the thresholds nearest the defaults, so held-out crops that cannot tell
thresholds apart (no building, nothing predicted) keep the defaults rather than the lowest
thresholds of the grid.

The best pixel Dice over the building thresholds ranks epochs whatever the policy.
"""

from __future__ import annotations

import numpy as np

from ml_core.config import ExtractOptions
from ml_core.evaluate.matching import match_labels
from ml_core.evaluate.metrics import f_beta, pixel_counts, pixel_metrics_from_counts
from ml_core.infer.extract import seed_pixels
from ml_core.infer.instances import drop_small, label_instances
from ml_core.infer.thresholds import Thresholds
from ml_core.labels.classes import INTERIOR, UNKNOWN, is_building

BUILDING_GRID = tuple(float(t) for t in np.round(np.arange(0.3, 0.71, 0.05), 2))
SEED_GRID = (0.3, 0.4, 0.5, 0.6, 0.7)
POLICIES = ("object_f1", "f2", "dice")


def pixel_counts_by_threshold(building: np.ndarray, masks: np.ndarray) -> dict[float, tuple]:
    """(TP, FP, FN) of ``building >= t`` (as extraction counts) against labelled pixels of
    ``masks`` for each ``t`` of :data:`BUILDING_GRID`."""
    known = masks != UNKNOWN
    p, y = building[known], is_building(masks[known])
    return {t: pixel_counts(p >= t, y) for t in BUILDING_GRID}


def best_pixel_dice(counts: dict[float, tuple]) -> float:
    """The best pixel Dice over the building thresholds (ranks epochs)."""
    return max(pixel_metrics_from_counts(*c)["dice"] for c in counts.values())


def truth_instances(mask: np.ndarray) -> np.ndarray:
    """One label per true building of a mask: interiors flooded over their edge pixels (the
    edge between touching buildings is split between them), or 8-connected building
    components for a binary mask."""
    building = is_building(mask).astype(np.float32)
    interior = (mask == INTERIOR).astype(np.float32) if (mask > INTERIOR).any() else None
    labels, _ = label_instances(building, interior, np.ones(mask.shape, bool),
                                Thresholds(0.5, 0.5), min_seed_px=1)
    return labels


def unjudged_predictions(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``pred`` with the predictions that touch an invalid pixel and overlap no true building
    removed (see the module docstring)."""
    n = int(pred.max()) + 1
    touches_unknown = np.bincount(pred[~valid], minlength=n) > 0
    on_truth = np.bincount(pred[truth > 0], minlength=n) > 0
    drop = touches_unknown & ~on_truth
    drop[0] = False
    return np.where(drop[pred], 0, pred)


def extraction_sizes(gsd_m: float) -> tuple[int, float]:
    """(smallest seed, smallest building) in pixels at ``gsd_m`` metres, as ``bfe extract``
    uses them by default."""
    options = ExtractOptions()
    return seed_pixels(options.min_seed_m2, gsd_m), options.min_area / (gsd_m * gsd_m)


def object_f1_by_thresholds(bands: np.ndarray, masks: np.ndarray, min_seed_px: int,
                            building_grid: tuple = BUILDING_GRID, seed_grid: tuple = SEED_GRID,
                            min_area_px: float = 0.0) -> dict[tuple[float, float], float]:
    """Object F1 on the held-out crops (``bands`` [N,B,H,W], ``masks`` [N,H,W]) for each pair
    of building and seed thresholds (seed: only the default without an interior band).
    Predicted buildings under ``min_area_px`` pixels are dropped first, as extraction drops
    them (counted, the fragments that high thresholds leave would pull the choice down)."""
    seeds = seed_grid if bands.shape[1] > 1 else (Thresholds().seed,)
    counts = {(t, s): np.zeros(3) for t in building_grid for s in seeds}
    for crop, mask in zip(bands, masks):
        valid = mask != UNKNOWN
        truth = truth_instances(np.where(valid, mask, 0))
        interior = crop[1] if len(crop) > 1 else None
        for t, s in counts:
            pred, _ = label_instances(crop[0], interior, np.ones(valid.shape, bool),
                                      Thresholds(t, s), min_seed_px)
            pred = drop_small(pred, min_area_px)
            m = match_labels(unjudged_predictions(pred, truth, valid), truth, valid)
            counts[(t, s)] += (m.tp, m.n_pred, m.n_truth)
    return {k: (2 * tp / (n_p + n_t) if n_p + n_t else 1.0) for k, (tp, n_p, n_t) in
            counts.items()}


def choose_thresholds(bands: np.ndarray, masks: np.ndarray, policy: str,
                      min_seed_px: int = 4, min_area_px: float = 0.0) -> Thresholds:
    """The thresholds ``policy`` keeps on the held-out crops (see the module docstring)."""
    if policy == "object_f1":
        return best_cell(object_f1_by_thresholds(bands, masks, min_seed_px,
                                                 min_area_px=min_area_px))
    return Thresholds(building=pixel_threshold(pixel_counts_by_threshold(bands[:, 0], masks),
                                               policy))


def best_cell(scores: dict[tuple[float, float], float]) -> Thresholds:
    """The (building, seed) pair of best score; ties go to the pair nearest the defaults."""
    default = Thresholds()
    building, seed = max(scores, key=lambda k: (scores[k], -abs(k[0] - default.building)
                                                - abs(k[1] - default.seed)))
    return Thresholds(building, seed)


def pixel_threshold(counts: dict[float, tuple], policy: str) -> float:
    """The building threshold of the pixel policies: best ``dice``, or best ``f2``."""
    if policy == "dice":
        score = {t: pixel_metrics_from_counts(*c)["dice"] for t, c in counts.items()}
    else:
        score = {t: f_beta(*c, beta=2.0) for t, c in counts.items()}
    return max(score, key=lambda t: (score[t], -abs(t - Thresholds().building)))
