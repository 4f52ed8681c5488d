"""learn/threshold.py: the threshold policy on held-out crops, by objects or by pixels."""

from __future__ import annotations

import numpy as np
import pytest

from ml_core.config import ExtractOptions
from ml_core.labels.classes import UNKNOWN, instance_classes
from ml_core.learn.threshold import (
    choose_thresholds,
    extraction_sizes,
    object_f1_by_thresholds,
    pixel_threshold,
    truth_instances,
)


def _two_touching_buildings() -> np.ndarray:
    ids = np.zeros((40, 40), np.int32)
    ids[8:30, 5:18], ids[8:30, 18:33] = 1, 2  # share the wall at column 18
    return ids


@pytest.mark.parametrize("edge_px", [1, 4])
def test_truth_instances_split_touching_buildings_at_their_shared_edge(edge_px):
    """Each true building is one label, exactly its own pixels, also with edge rings as wide
    as a 1 m ring at 0.25 m (4 px on both sides of the wall)."""
    ids = _two_touching_buildings()
    labels = truth_instances(instance_classes(ids, edge_px, 1))
    assert len(np.unique(labels[labels > 0])) == 2
    for i in (1, 2):
        assert len(np.unique(labels[ids == i])) == 1
        assert (labels == labels[ids == i][0]).sum() == (ids == i).sum()


def test_object_policy_keeps_thresholds_that_separate_the_buildings():
    ids = _two_touching_buildings()
    mask = instance_classes(ids, 1, 1)
    building = np.where(ids > 0, 0.62, 0.02).astype(np.float32)
    interior = np.where(mask == 1, 0.45, 0.05).astype(np.float32)
    bands, masks = np.stack([building, interior])[None], mask[None]
    f1 = object_f1_by_thresholds(bands, masks, min_seed_px=4)
    assert f1[(0.6, 0.4)] == 1.0  # both seeded: two buildings, both matched
    # no seed: one blob over both; it matches the wider one (IoU 15/28 = 0.54): F1 2 * 1 / 3
    assert f1[(0.6, 0.5)] == pytest.approx(2 / 3)
    assert f1[(0.65, 0.3)] == 0.0  # nothing reaches the building threshold
    chosen = choose_thresholds(bands, masks, "object_f1")
    assert chosen.building <= 0.6 and chosen.seed <= 0.4


def test_predictions_on_unknown_pixels_are_not_judged():
    ids = _two_touching_buildings()
    mask = instance_classes(ids, 1, 1)
    mask[:, 34:] = UNKNOWN
    building = np.where(ids > 0, 0.9, 0.02).astype(np.float32)
    building[5:25, 35:39] = 0.9  # an unmapped building where labels are unknown
    interior = np.where((mask == 1) | (building > 0.5) & (mask == UNKNOWN), 0.8, 0.05)
    f1 = object_f1_by_thresholds(np.stack([building, interior.astype(np.float32)])[None],
                                 mask[None], min_seed_px=4)
    assert f1[(0.5, 0.5)] == 1.0


def test_a_prediction_reaching_beyond_unknown_pixels_is_still_not_judged():
    """An unmapped building made unknown at its core (as ignore_confident does) but predicted
    wider than that core is not a false positive; a prediction on labelled background only is."""
    ids = np.zeros((40, 40), np.int32)
    ids[5:20, 5:20] = 1
    mask = instance_classes(ids, 1, 1)
    mask[24:34, 24:34] = UNKNOWN  # the core of an unmapped building
    building = np.where(ids > 0, 0.9, 0.02).astype(np.float32)
    building[21:37, 21:37] = 0.9  # predicted 16 x 16: 100 of 256 pixels unknown (< half)
    interior = np.where(building > 0.5, 0.8, 0.05).astype(np.float32)
    bands = np.stack([building, interior])[None]
    assert object_f1_by_thresholds(bands, mask[None], min_seed_px=4)[(0.5, 0.5)] == 1.0
    # the same prediction moved onto labelled background: a false positive, F1 2 / 3
    mask[24:34, 24:34] = 0
    assert object_f1_by_thresholds(bands, mask[None], min_seed_px=4)[(0.5, 0.5)] == (
        pytest.approx(2 / 3))


def test_pixel_policies_pick_by_dice_or_f2():
    counts = {0.4: (90, 40, 10),  # Dice 180/230 = 0.783, F2 450/530 = 0.849
              0.7: (70, 5, 30)}  # Dice 140/175 = 0.800, F2 350/475 = 0.737
    assert pixel_threshold(counts, "dice") == pytest.approx(0.7)
    assert pixel_threshold(counts, "f2") == pytest.approx(0.4)


@pytest.mark.parametrize("policy", ["object_f1", "dice", "f2"])
def test_crops_that_cannot_tell_thresholds_apart_keep_the_defaults(policy):
    """No building in the held-out crop and nothing predicted: every threshold scores alike."""
    bands = np.full((1, 2, 24, 24), 0.05, np.float32)
    masks = np.zeros((1, 24, 24), np.uint8)
    chosen = choose_thresholds(bands, masks, policy)
    assert (chosen.building, chosen.seed) == (0.5, 0.5)


def test_object_policy_drops_fragments_under_the_smallest_building_as_extraction_does():
    """A 3 x 3 speck at 0.65 on labelled background is a false building at building threshold
    0.6 (F1 2 x 1 / (2 + 1)), unless it is under ``min_area_px`` and so never extracted."""
    ids = np.zeros((40, 40), np.int32)
    ids[8:30, 5:25] = 1
    mask = instance_classes(ids, 1, 1)
    building = np.where(ids > 0, 0.9, 0.02).astype(np.float32)
    building[34:37, 34:37] = 0.65
    interior = np.where(mask == 1, 0.9, 0.05).astype(np.float32)
    interior[34:37, 34:37] = 0.9
    bands = np.stack([building, interior])[None]
    counted = object_f1_by_thresholds(bands, mask[None], min_seed_px=4)
    dropped = object_f1_by_thresholds(bands, mask[None], min_seed_px=4, min_area_px=10)
    assert counted[(0.6, 0.5)] == pytest.approx(2 / 3)
    assert counted[(0.7, 0.5)] == 1.0
    assert dropped[(0.6, 0.5)] == dropped[(0.7, 0.5)] == 1.0


def test_extraction_sizes_are_the_extract_defaults_in_pixels():
    options = ExtractOptions()
    seed_px, area_px = extraction_sizes(0.5)
    assert seed_px == max(1, round(options.min_seed_m2 / 0.25))
    assert area_px == pytest.approx(options.min_area / 0.25)
