"""tiling.py: windows cover the region with the requested overlap; blend weights are smooth."""

from __future__ import annotations

import numpy as np
import pytest

from ml_core.infer.tiling import Window, blend_weights, tile_windows


def test_windows_cover_region_with_overlap():
    wins = tile_windows(100, 70, 32, 8)
    cover = np.zeros((70, 100), int)
    for w in wins:
        cover[w.y:w.y + w.h, w.x:w.x + w.w] += 1
    assert (cover > 0).all()
    xs = sorted({w.x for w in wins})
    assert xs[-1] == 100 - 32 and all(b - a <= 24 for a, b in zip(xs, xs[1:]))
    assert [w.y for w in wins] == sorted(w.y for w in wins)  # row-major


def test_region_and_small_raster():
    assert tile_windows(10, 5, 32, 8) == [Window(0, 0, 32, 32)]
    wins = tile_windows(1000, 1000, 64, 16, region=Window(100, 200, 50, 90))
    assert {w.x for w in wins} == {100} and min(w.y for w in wins) == 200
    assert max(w.y + w.h for w in wins) == 290
    with pytest.raises(ValueError):
        tile_windows(10, 10, 8, 8)


def test_blend_weights_positive_and_symmetric():
    w = blend_weights(32, 8)
    assert w.shape == (32, 32) and (w > 0).all() and w.max() == 1.0
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert w[0, 0] < w[4, 4] < w[8, 8] == 1.0
    assert (blend_weights(16, 0) == 1).all()
