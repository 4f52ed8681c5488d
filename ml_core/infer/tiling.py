"""Overlapping tile windows over a raster region and the smooth weights that blend them."""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np


class Window(NamedTuple):
    """A window in raster pixel coordinates (may extend past the raster edge: read as padding)."""

    x: int
    y: int
    w: int
    h: int


def _starts(start: int, length: int, tile: int, stride: int) -> list[int]:
    """Origins covering [start, start+length): regular steps, the last flush with the end."""
    if length <= tile:
        return [start]
    starts = list(range(start, start + length - tile, stride))
    return [*starts, start + length - tile]


def tile_windows(width: int, height: int, tile: int, overlap: int,
                 region: Optional[Window] = None) -> list[Window]:
    """Row-major ``tile`` x ``tile`` windows covering ``region`` (default: the whole raster).

    Neighbours overlap by at least ``overlap`` pixels. A region smaller than a tile gets one
    window that extends past it (the reader pads with invalid pixels).
    """
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"Need tile > 0 and 0 <= overlap < tile (got {tile}, {overlap}).")
    region = region or Window(0, 0, width, height)
    stride = tile - overlap
    return [Window(x, y, tile, tile)
            for y in _starts(region.y, region.h, tile, stride)
            for x in _starts(region.x, region.w, tile, stride)]


def blend_weights(tile: int, overlap: int) -> np.ndarray:
    """``[tile, tile]`` float32 weights: raised-cosine ramps over ``overlap`` pixels at each edge,
    1 in the middle, never 0 (so a pixel covered by one tile keeps its value exactly).
    """
    d = np.minimum(np.arange(tile), np.arange(tile)[::-1]).astype(np.float64)
    ramp = np.ones(tile)
    if overlap > 0:
        inside = d < overlap
        ramp[inside] = 0.5 - 0.5 * np.cos(np.pi * (d[inside] + 0.5) / (overlap + 0.5))
    ramp = np.maximum(ramp, 1e-3)
    return np.outer(ramp, ramp).astype(np.float32)
