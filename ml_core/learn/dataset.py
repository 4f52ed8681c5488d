"""Training data: raster areas in memory at the model's GSD, a spatial-block split, and crops.

A raster is read in windows (``load_regions``), resampled to the model's ground sampling
distance, normalised, and windows without any labelled pixel are skipped, so sparse mosaics
cost little memory. Validation holds out whole spatial blocks, never random pixels: a held-out
block is unknown (255) in the training mask and vice versa. Crops are centred on labelled
buildings most of the time (the minority class carries the signal) and augmented with flips,
rot90 and mild photometric jitter.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from osgeo import gdal
from scipy import ndimage

from ml_core.errors import InputError
from ml_core.events import CancelToken, check_cancel
from ml_core.io import raster as gdalio
from ml_core.labels.classes import UNKNOWN, for_classes, is_building

PathLike = Union[str, os.PathLike]


@dataclass
class Region:
    """One area in memory: normalised image [C,H,W] float32 and mask [H,W] uint8 (0/1/255)."""

    image: np.ndarray
    mask: np.ndarray
    name: str = ""
    gsd_m: float = 0.0  # pixel size the region was read at (0: not known)
    weight: float = 1.0  # sampling weight per candidate pixel (balances areas of unequal size)


@dataclass
class Split:
    """Training and validation masks of the same regions (held-out blocks are 255 in training)."""

    train: list[Region]
    val: list[Region]
    val_windows: list[tuple[int, int, int, int, int]]  # (region index, x, y, w, h) to score


def _read_mask(ds: gdal.Dataset, xoff: int, yoff: int, xsize: int, ysize: int,
               out_size: tuple[int, int]) -> np.ndarray:
    """Read a mask window with nearest-neighbour resampling (labels must not be blended)."""
    arr = ds.GetRasterBand(1).ReadAsArray(
        xoff, yoff, xsize, ysize, buf_xsize=out_size[0], buf_ysize=out_size[1],
        resample_alg=gdal.GRIORA_NearestNeighbour)
    return arr.astype(np.uint8)


def load_regions(raster: PathLike, mask_path: PathLike, bands: Sequence[int], gsd_m: float,
                 mean: Sequence[float], std: Sequence[float], window_m: float = 300.0,
                 cancel: Optional[CancelToken] = None, num_classes: int = 4) -> list[Region]:
    """Read ``raster`` and its label mask (same grid) at ``gsd_m``, in windows of ``window_m``.

    Windows without any labelled pixel are skipped; invalid (nodata) pixels become unknown.
    The mask keeps the classes a network with ``num_classes`` outputs trains on.
    """
    ds = gdalio.open_raster(raster)
    try:
        mask_ds = gdal.Open(str(mask_path))
    except RuntimeError as exc:
        raise InputError(f"Label mask {mask_path} cannot be opened ({exc}). "
                         "Rasterise the labels again.") from exc
    size = (ds.RasterXSize, ds.RasterYSize)
    if mask_ds is None or (mask_ds.RasterXSize, mask_ds.RasterYSize) != size:
        raise InputError(f"Label mask {mask_path} does not match the grid of {raster}. "
                         "Rasterise the labels on this raster again.")
    scale = gdalio.gsd_scale(ds, gsd_m)
    step = max(16, round(window_m / gdalio.pixel_size_m(ds)))
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    regions = []
    for yoff in range(0, ds.RasterYSize, step):
        for xoff in range(0, ds.RasterXSize, step):
            check_cancel(cancel)
            w, h = min(step, ds.RasterXSize - xoff), min(step, ds.RasterYSize - yoff)
            out = (max(1, round(w * scale)), max(1, round(h * scale)))
            mask = for_classes(_read_mask(mask_ds, xoff, yoff, w, h, out), num_classes)
            if not (mask != UNKNOWN).any():
                continue
            img, valid = gdalio.read_window(ds, list(bands), xoff, yoff, w, h, out_size=out)
            mask[~valid] = UNKNOWN
            if (mask != UNKNOWN).any():
                regions.append(Region(((img - m) / s).astype(np.float32), mask,
                                      f"{os.path.basename(str(raster))}@{xoff},{yoff}",
                                      gsd_m=gdalio.pixel_size_m(ds) / scale))
    return regions


def split_blocks(regions: Sequence[Region], block: int, val_fraction: float,
                 seed: int) -> Split:
    """Hold out ``val_fraction`` of the labelled ``block``-pixel blocks that contain buildings.

    At least one block is held out when there are two or more; with a single block nothing is
    (validation then falls back to the training mask, reported by ``Split.val_windows`` empty).
    """
    rng = np.random.default_rng(seed)
    blocks = []
    for r, reg in enumerate(regions):
        H, W = reg.mask.shape
        for y in range(0, H, block):
            for x in range(0, W, block):
                sub = reg.mask[y:y + block, x:x + block]
                if is_building(sub).sum() >= 16:
                    blocks.append((r, x, y, sub.shape[1], sub.shape[0]))
    n_val = round(val_fraction * len(blocks))
    n_val = min(max(n_val, 1 if len(blocks) >= 2 else 0), max(len(blocks) - 1, 0))
    picks = sorted(rng.choice(len(blocks), n_val, replace=False)) if n_val else []
    chosen = [blocks[i] for i in picks]
    train = [replace(reg, mask=reg.mask.copy()) for reg in regions]
    val = [replace(reg, mask=np.full_like(reg.mask, UNKNOWN)) for reg in regions]
    for r, x, y, w, h in chosen:
        val[r].mask[y:y + h, x:x + w] = regions[r].mask[y:y + h, x:x + w]
        train[r].mask[y:y + h, x:x + w] = UNKNOWN
    return Split(train=train, val=val, val_windows=chosen)


def _crop(region: Region, cx: int, cy: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` crop centred near (cx, cy); outside the region is zero image, unknown mask."""
    C, H, W = region.image.shape
    x0, y0 = cx - size // 2, cy - size // 2
    img = np.zeros((C, size, size), np.float32)
    mask = np.full((size, size), UNKNOWN, np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + size, W), min(y0 + size, H)
    if sx1 > sx0 and sy1 > sy0:
        img[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = region.image[:, sy0:sy1, sx0:sx1]
        mask[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = region.mask[sy0:sy1, sx0:sx1]
    return img, mask


def augment(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            jitter: float = 0.1, photometric: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Random rot90 and flip (the 8 symmetries) plus per-band brightness/contrast jitter.

    ``photometric`` adds what other sensors look like: stronger colour balance and contrast
    changes, haze (a pull towards grey) and blur, each on a share of the crops.
    """
    k = int(rng.integers(4))
    img, mask = np.rot90(img, k, axes=(1, 2)), np.rot90(mask, k)
    if rng.random() < 0.5:
        img, mask = img[:, :, ::-1], mask[:, ::-1]
    spread = 3 * jitter if photometric else jitter
    gain = 1.0 + rng.uniform(-spread, spread, (img.shape[0], 1, 1))
    bias = rng.uniform(-spread, spread, (img.shape[0], 1, 1))
    img = img * gain + bias
    if photometric:
        if rng.random() < 0.3:
            img = img * (1 - rng.uniform(0.1, 0.5))
        if rng.random() < 0.3:
            img = ndimage.gaussian_filter(img, (0, *[rng.uniform(0.5, 1.5)] * 2))
    return np.ascontiguousarray(img, dtype=np.float32), np.ascontiguousarray(mask)


def _resized(img: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A square crop resampled to ``size``: bilinear with anti-aliasing, nearest for labels."""
    src = mask.shape[0]
    if src == size:
        return img, mask
    x = torch.from_numpy(np.ascontiguousarray(img))[None]
    img = F.interpolate(x, (size, size), mode="bilinear", antialias=src > size,
                        align_corners=False)[0].numpy()
    pick = ((np.arange(size) + 0.5) * src / size).astype(int)
    return img, mask[np.ix_(pick, pick)]


class CropSampler:
    """Random training crops: centred on a building pixel with probability ``p_building``,
    otherwise on any labelled pixel; regions are chosen in proportion to those pixel counts
    times each region's ``weight``."""

    def __init__(self, regions: Sequence[Region], crop: int, p_building: float = 0.7,
                 stride: int = 4, gsd_range_m: Optional[tuple[float, float]] = None,
                 photometric: bool = False) -> None:
        self.regions = list(regions)
        self.crop = crop
        self.p_building = p_building
        self.gsd_range_m, self.photometric = gsd_range_m, photometric
        # Candidate centres, subsampled by ``stride`` to keep the index small.
        self._building = [np.argwhere(is_building(r.mask[::stride, ::stride])) * stride
                          for r in self.regions]
        self._labelled = [np.argwhere(r.mask[::stride, ::stride] != UNKNOWN) * stride
                          for r in self.regions]
        if not any(len(c) for c in self._labelled):
            raise InputError("The training labels contain no labelled pixel inside the raster. "
                             "Check that the buildings overlap the raster.")

    def _centre(self, pools: list[np.ndarray], rng: np.random.Generator) -> tuple[int, int, int]:
        counts = np.array([len(p) * reg.weight for p, reg in zip(pools, self.regions)],
                          np.float64)
        r = int(rng.choice(len(pools), p=counts / counts.sum()))
        y, x = pools[r][int(rng.integers(len(pools[r])))]
        return r, int(x), int(y)

    def _source_size(self, region: Region, rng: np.random.Generator) -> int:
        """Crop size to read so that, resized to ``crop``, it shows a pixel size drawn
        log-uniformly from ``gsd_range_m`` (scale augmentation; ``crop`` without a range)."""
        if self.gsd_range_m is None or region.gsd_m <= 0:
            return self.crop
        low, high = np.log(self.gsd_range_m)
        target = float(np.exp(rng.uniform(low, high)))
        return max(16, round(self.crop * target / region.gsd_m))

    def batch(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` augmented crops: images [n,C,S,S] float32 and masks [n,S,S] uint8."""
        imgs, masks = [], []
        has_buildings = any(len(c) for c in self._building)
        for _ in range(n):
            use_b = has_buildings and rng.random() < self.p_building
            r, x, y = self._centre(self._building if use_b else self._labelled, rng)
            # Jitter the centre so buildings do not always sit in the middle of the crop.
            x += int(rng.integers(-self.crop // 4, self.crop // 4 + 1))
            y += int(rng.integers(-self.crop // 4, self.crop // 4 + 1))
            size = self._source_size(self.regions[r], rng)
            img, mask = _resized(*_crop(self.regions[r], x, y, size), self.crop)
            img, mask = augment(img, mask, rng, photometric=self.photometric)
            imgs.append(img)
            masks.append(mask)
        return np.stack(imgs), np.stack(masks)


def val_crops(split: Split, crop: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed validation crops centred on the held-out blocks, masks unknown outside them."""
    return [_crop(split.val[r], x + w // 2, y + h // 2, crop)
            for r, x, y, w, h in split.val_windows]
