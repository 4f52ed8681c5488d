"""Training data: region loading at the model GSD, spatial-block split, crops and augmentation."""

import numpy as np
import pytest

from ml_core.errors import InputError
from ml_core.learn.dataset import (
    UNKNOWN,
    CropSampler,
    Region,
    _crop,
    augment,
    load_regions,
    split_blocks,
    val_crops,
)


def _region(h=96, w=128, seed=0) -> Region:
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(12):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        mask[y:y + 8, x:x + 8] = 1
    mask[:4] = UNKNOWN
    image = np.stack([mask == 1, rng.random((h, w)), rng.random((h, w))]).astype(np.float32)
    return Region(image, mask, "synthetic")


def test_split_holds_out_whole_blocks_disjointly():
    reg = _region()
    split = split_blocks([reg], 32, 0.25, seed=1)
    assert split.val_windows, "at least one block is held out"
    train, val = split.train[0].mask, split.val[0].mask
    assert not ((train != UNKNOWN) & (val != UNKNOWN)).any()
    known = reg.mask != UNKNOWN
    assert np.array_equal((train != UNKNOWN) | (val != UNKNOWN), known)
    for _, x, y, w, h in split.val_windows:  # held out as blocks, each with buildings
        assert (val[y:y + h, x:x + w] == 1).any()
    again = split_blocks([reg], 32, 0.25, seed=1)
    assert again.val_windows == split.val_windows


def test_crop_outside_the_region_is_unknown():
    img, mask = _crop(_region(), 0, 0, 32)
    assert (mask[:16, :] == UNKNOWN).all() and (img[:, :16, :16] == 0).all()


def test_augment_keeps_image_and_mask_aligned():
    reg = _region()
    rng = np.random.default_rng(0)
    for _ in range(8):
        img, mask = augment(reg.image, reg.mask, rng)
        known = mask != UNKNOWN
        assert np.array_equal((img[0] > 0.5)[known], (mask == 1)[known])


def test_sampler_favours_buildings_and_is_seeded():
    sampler = CropSampler([_region()], 32)
    x, y = sampler.batch(16, np.random.default_rng(3))
    assert x.shape == (16, 3, 32, 32) and x.dtype == np.float32 and y.shape == (16, 32, 32)
    assert np.mean([(m == 1).any() for m in y]) >= 0.6
    x2, _ = sampler.batch(16, np.random.default_rng(3))
    assert np.array_equal(x, x2)


def test_sampler_draws_regions_by_pixel_count_times_weight():
    # Two identical regions; the second weighs 3x: crops from it ~ 3/4 of the time.
    # The image's first band is 1 on region A and 5 on region B (brightness jitter is within
    # +-10 % and +-0.1), so each crop names its source.
    a, b = _region(), _region()
    a.image[0], b.image[0] = 1.0, 5.0
    b.weight = 3.0
    x, _ = CropSampler([a, b], 16).batch(400, np.random.default_rng(0))
    share_b = float(np.mean(x[:, 0].max(axis=(1, 2)) > 3.0))
    assert 0.68 < share_b < 0.82


def test_sampler_rejects_labels_outside_the_raster():
    reg = _region()
    reg.mask[:] = UNKNOWN
    with pytest.raises(InputError, match="no labelled pixel"):
        CropSampler([reg], 32)


def test_val_crops_cover_held_out_blocks():
    split = split_blocks([_region()], 32, 0.25, seed=1)
    crops = val_crops(split, 64)
    assert len(crops) == len(split.val_windows)
    assert all(img.shape == (3, 64, 64) and (mask != UNKNOWN).any() for img, mask in crops)


def test_load_regions_resamples_to_the_model_gsd(make_raster, tmp_path):
    data = np.zeros((3, 64, 64), np.uint8)
    data[:, 16:32, 16:32] = 200
    valid = np.ones((64, 64), bool)
    valid[:, 48:] = False
    raster = make_raster(data=data, pixel=0.5, mask=valid)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:32, 16:32] = 1
    mask_path = make_raster("mask.tif", data=mask[None], bands=1, pixel=0.5)
    regions = load_regions(raster, mask_path, [1, 2, 3], gsd_m=1.0, mean=[0, 0, 0],
                           std=[100, 100, 100])
    assert len(regions) == 1
    reg = regions[0]
    assert reg.image.shape == (3, 32, 32) and reg.mask.shape == (32, 32)
    assert (reg.mask[8:16, 8:16] == 1).all() and (reg.mask[:, 24:] == UNKNOWN).all()
    assert reg.image[0, 12, 12] == pytest.approx(2.0)


