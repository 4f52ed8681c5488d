"""Streaming tiled prediction: a raster (or part of it) -> a building-probability GeoTIFF.

Tiles are read at the model's ground sampling distance (resampled on read when the raster's pixel
size differs by more than 20 %), normalised with the raster's own band statistics (as every
bfe model is trained: each training raster by its own; the card's statistics on request), and
the network's
probability is resized back to the tile's raster window. Overlapping tiles are blended with
:func:`ml_core.infer.tiling.blend_weights` in a strip accumulator one tile high and one region wide;
rows no later tile touches are written out at once, so memory is bounded by tile size x (batch +
region width), never by raster height.

Output: Float32 probability 0..1 on the raster's pixel grid, covering the requested region
(whole raster, ``extent`` or ``aoi`` bounding box), tiled, DEFLATE, BigTIFF when needed;
:data:`NODATA` (-1) where the imagery is invalid or outside the AOI polygons.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from osgeo import gdal

from ml_core.config import PredictOptions
from ml_core.errors import InputError
from ml_core.events import CancelToken, ProgressCallback, ProgressEvent, check_cancel, emit
from ml_core.infer.thresholds import Thresholds
from ml_core.infer.tiling import Window, blend_weights, tile_windows
from ml_core.io import raster as gdalio
from ml_core.io.atomic import atomic_output, check_not_input, check_writable, close_raster
from ml_core.io.grid import burn, pixel_window, window_envelope
from ml_core.io.vector import (
    BoxIndex,
    PolygonSet,
    envelope_polygon,
    memory_layer,
    read_polygons,
    srs_of,
    transform,
)
from ml_core.learn.device import describe_device, select_device
from ml_core.learn.modelfile import LoadedModel, check_bands, load_model, working_gsd

gdal.UseExceptions()

NODATA = -1.0
PathLike = Union[str, os.PathLike]


def probability_bands(logits: torch.Tensor) -> torch.Tensor:
    """What a probability raster holds, ``[N, B, h, w]``, from logits ``[N, C, h, w]``.

    Band 1 is the building probability: softmax channel 1 for 2 classes, interior plus edge
    for the 4 instance classes (``ml_core.labels.classes``), sigmoid for one channel. Instance
    models add band 2, the interior probability, which seeds the separation of buildings.
    """
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    probs = torch.softmax(logits, 1)
    if logits.shape[1] == 2:
        return probs[:, 1:2]
    return torch.stack([probs[:, 1] + probs[:, 2], probs[:, 1]], 1)


def network_probability(net: torch.nn.Module, x: torch.Tensor, tta: bool = False) -> torch.Tensor:
    """:func:`probability_bands` of ``net`` on ``x``; ``tta`` averages over horizontal and
    vertical flips."""
    total = probability_bands(net(x))
    if not tta:
        return total
    for dims in ((3,), (2,), (2, 3)):
        total = total + probability_bands(net(x.flip(dims))).flip(dims)
    return total / 4


def out_of_range_warning(card, ds: gdal.Dataset) -> str:
    """The warning for a raster whose pixel size lies outside the model's trained range."""
    low, high = card.gsd_range_m
    return (f"Warning: {gdalio.raster_name(ds)} has {gdalio.pixel_size_m(ds):.2f} m pixels, "
            f"outside the {low:g}-{high:g} m the model was trained for; it is resampled to the "
            "nearest end of that range, and results may be worse.")


def output_bands(num_classes: int) -> int:
    """Bands of the probability raster of a network with ``num_classes`` outputs."""
    return 2 if num_classes > 2 else 1


def parse_extent(ds: gdal.Dataset, extent: Sequence) -> tuple:
    """``(xmin, ymin, xmax, ymax[, crs])`` -> (minx, maxx, miny, maxy) in the raster CRS."""
    xmin, ymin, xmax, ymax = (float(v) for v in extent[:4])
    ring = envelope_polygon((xmin, xmax, ymin, ymax))
    if len(extent) > 4:
        ct = transform(srs_of(str(extent[4])), srs_of(ds))
        if ct is not None:
            ring.Segmentize((xmax - xmin) / 16 or 1)
            ring.Transform(ct)
    return ring.GetEnvelope()


def windows_in_aoi(ds: gdal.Dataset, windows: Sequence[Window], aoi: PolygonSet) -> list[Window]:
    """The windows that meet an AOI polygon; the others would be masked out entirely."""
    index = BoxIndex(aoi.geoms)
    return [win for win in windows if index.meets(envelope_polygon(window_envelope(ds, *win)))]


def prediction_region(ds: gdal.Dataset, extent: Optional[Sequence] = None, aoi=None):
    """The pixel window to predict and the AOI polygons (in the raster CRS) or None."""
    env, polys = None, None
    if aoi is not None:
        polys = read_polygons(aoi, ds.GetSpatialRef(), what="area-of-interest")
        env = polys.envelope()
    if extent is not None:
        e = parse_extent(ds, extent)
        env = e if env is None else (max(env[0], e[0]), min(env[1], e[1]),
                                     max(env[2], e[2]), min(env[3], e[3]))
    region = Window(0, 0, ds.RasterXSize, ds.RasterYSize)
    if env is not None:
        region = Window(*pixel_window(ds, env))
    if region.w == 0 or region.h == 0:
        raise InputError(f"The requested extent/area of interest does not overlap raster "
                         f"{gdalio.raster_name(ds)}. Choose an area inside the raster.")
    return region, polys


class StripBlender:
    """Weighted accumulation of tile probabilities over a strip one tile high, written to ``band``
    as soon as later tiles can no longer touch its top rows."""

    def __init__(self, out: gdal.Dataset, ds: gdal.Dataset, region: Window, tile: int,
                 weights: np.ndarray, aoi_layer=None) -> None:
        self.out, self.ds, self.region, self.tile = out, ds, region, tile
        self.weights, self.aoi = weights, aoi_layer
        self.value = np.zeros((out.RasterCount, tile, region.w), np.float32)
        self.weight = np.zeros((tile, region.w), np.float32)
        self.valid = np.zeros((tile, region.w), bool)
        self.y0 = region.y

    def add(self, win: Window, prob: np.ndarray, valid: np.ndarray) -> None:
        """Blend one tile (``prob`` ``[B, tile, tile]``, ``valid`` ``[tile, tile]``, on the
        raster grid)."""
        self.flush_until(win.y)
        r = self.region
        x0, x1 = max(win.x, r.x), min(win.x + win.w, r.x + r.w)
        rows = min(win.h, r.y + r.h - win.y)
        src = (slice(0, rows), slice(x0 - win.x, x1 - win.x))
        dst = (slice(0, rows), slice(x0 - r.x, x1 - r.x))
        w = self.weights[src]
        self.value[(slice(None), *dst)] += prob[(slice(None), *src)] * w
        self.weight[dst] += w
        self.valid[dst] |= valid[src]

    def flush_until(self, y: int) -> None:
        """Write every row above raster row ``y`` (clipped to the region)."""
        y = min(y, self.region.y + self.region.h)
        while self.y0 < y:
            n = min(y - self.y0, self.tile)
            ok = self.valid[:n] & (self.weight[:n] > 0)
            if self.aoi is not None:
                inside = burn(self.aoi, self.ds, self.region.x, self.y0, self.region.w, n)
                ok &= inside > 0
            for b in range(self.value.shape[0]):
                out = np.full((n, self.region.w), NODATA, np.float32)
                np.divide(self.value[b, :n], self.weight[:n], out=out, where=ok)
                self.out.GetRasterBand(b + 1).WriteArray(out, 0, self.y0 - self.region.y)
            for buf in (self.value, self.weight, self.valid):
                buf[..., :-n, :] = buf[..., n:, :].copy()
                buf[..., -n:, :] = 0
            self.y0 += n

    def finish(self) -> None:
        self.flush_until(self.region.y + self.region.h)


def _resolve_model(model, device: torch.device) -> LoadedModel:
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device)
    loaded.net.to(device).eval()
    return loaded


def predict_raster(raster: gdalio.RasterLike, model: Union[LoadedModel, PathLike],
                   out_path: PathLike, options: Optional[PredictOptions] = None,
                   bands: Optional[Sequence[int]] = None, extent: Optional[Sequence] = None,
                   aoi: Optional[PathLike] = None, progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelToken] = None,
                   runner: Optional[WindowRunner] = None) -> Path:
    """Predict building probability over ``raster`` (or ``extent``/``aoi``) into ``out_path``.

    ``bands`` overrides the card's band list (same length). ``runner`` predicts the windows
    elsewhere (``ml_core.infer.cluster``); default :func:`predict_windows` in this process.
    See the module docstring.
    """
    options = options or PredictOptions()
    ds = gdalio.open_raster(raster)
    name = gdalio.raster_name(ds)
    check_writable(out_path)
    model_file = None if isinstance(model, LoadedModel) else Path(model)
    check_not_input(out_path, raster, aoi, model_file,
                    model_file and model_file.with_suffix(".json"))
    device = select_device(options.device)
    loaded = _resolve_model(model, device)
    card = loaded.card
    check_bands(card, ds.RasterCount, name)
    bands = gdalio.check_band_list(ds, bands or card.bands)
    if len(bands) != len(card.bands):
        raise InputError(f"The model takes {len(card.bands)} band(s) but {len(bands)} were "
                         f"chosen for {name}. Choose exactly {len(card.bands)} bands.")
    region, aoi_polys = prediction_region(ds, extent, aoi)
    aoi_src = memory_layer(aoi_polys.geoms, aoi_polys.srs) if aoi_polys else (None, None)
    gsd, outside = working_gsd(card, gdalio.pixel_size_m(ds))
    if outside:
        emit(progress, ProgressEvent("predict", 0.0, out_of_range_warning(card, ds)))
    scale = gdalio.gsd_scale(ds, gsd)
    multiple = getattr(loaded.net, "multiple", 1)
    net_tile = math.ceil(options.tile_size / multiple) * multiple
    tile = max(1, round(net_tile / scale))
    overlap = min(round(options.overlap / scale), tile // 2)
    windows = tile_windows(ds.RasterXSize, ds.RasterYSize, tile, overlap, region)
    if aoi_polys is not None:
        windows = windows_in_aoi(ds, windows, aoi_polys)
    rule = gdalio.valid_mask_band(ds, bands)
    stats = gdalio.band_statistics(ds, bands) if options.normalize == "raster" else (card.mean,
                                                                                  card.std)
    out_size = None if scale == 1 else (net_tile, net_tile)
    job = WindowJob(tuple(bands), tile, out_size, rule, tuple(stats[0]), tuple(stats[1]),
                    options.batch_size, options.tta)
    results = (predict_windows(ds, loaded.net, job, windows, device, progress, cancel)
               if runner is None else runner(ds, loaded, job, windows, progress, cancel))
    with atomic_output(out_path) as tmp, contextlib.closing(results):
        out = gdalio.create_like(ds, tmp, region.x, region.y, region.w, region.h,
                                 gdal.GDT_Float32, nodata=NODATA,
                                 bands=output_bands(getattr(loaded.net, "num_classes", 2)))
        Thresholds.of_card(card).write(out)
        blender = StripBlender(out, ds, region, tile,
                               blend_weights(tile, overlap), aoi_src[1])
        for win, prob, valid in results:
            blender.add(win, prob, valid)
        blender.finish()
        check_cancel(cancel)  # Ctrl-C in the last batch still cancels
        close_raster(out, out_path)
        out = blender = None
    return Path(out_path)


@dataclass(frozen=True)
class WindowJob:
    """How every window is read and predicted: small and picklable, so that cluster workers
    (``ml_core.infer.cluster``) predict exactly as this process does."""

    bands: tuple
    tile: int  # window size on the raster grid
    out_size: Optional[tuple]  # network input size when the raster is resampled, else None
    rule: gdalio.ValidityRule
    mean: tuple  # normalisation per band
    std: tuple
    batch_size: int
    tta: bool


WindowRunner = Callable[..., Iterable[tuple]]
"""``runner(ds, loaded, job, windows, progress, cancel)`` -> what :func:`predict_windows`
yields, in the order of ``windows``."""


def predict_windows(ds: gdal.Dataset, net: torch.nn.Module, job: WindowJob,
                    windows: Sequence[Window], device: torch.device,
                    progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelToken] = None) -> Iterator[tuple]:
    """``(window, probability [B, tile, tile], valid [tile, tile])`` on the raster grid for
    each of ``windows`` that has a valid pixel, in order; read and predicted in batches."""
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)
                 for v in (job.mean, job.std))
    for start in range(0, len(windows), job.batch_size):
        check_cancel(cancel)
        batch = []
        for win in windows[start:start + job.batch_size]:
            img, valid = gdalio.read_window(ds, job.bands, *win, out_size=job.out_size,
                                            rule=job.rule)
            if valid.any():
                batch.append((win, img, valid))
        if batch:
            yield from _predict_batch(net, batch, mean, std, device, job.tile, job.tta)
        done = min(start + job.batch_size, len(windows))
        emit(progress, ProgressEvent("predict", done / len(windows),
                                     f"tile {done}/{len(windows)}", device=describe_device(device)))


@torch.no_grad()
def _predict_batch(net: torch.nn.Module, batch: list[tuple[Window, np.ndarray, np.ndarray]],
                   mean: torch.Tensor, std: torch.Tensor, device: torch.device, tile: int,
                   tta: bool) -> list[tuple[Window, np.ndarray, np.ndarray]]:
    """(window, probability bands [B, tile, tile], valid [tile, tile]) for each read window of
    ``batch`` (window, image, valid), normalised with ``mean``/``std`` [1, C, 1, 1]."""
    imgs = torch.from_numpy(np.stack([b[1] for b in batch]))
    valid = torch.from_numpy(np.stack([b[2] for b in batch]))[:, None]
    x = torch.where(valid, (imgs - mean) / std, torch.zeros(()))
    prob = network_probability(net, x.to(device), tta).float()
    if prob.shape[-1] != tile:
        prob = F.interpolate(prob, size=(tile, tile), mode="bilinear", align_corners=False)
        valid = F.interpolate(valid.float(), size=(tile, tile), mode="nearest") > 0
    prob = prob.cpu().numpy()
    valid = valid[:, 0].numpy()
    return list(zip([b[0] for b in batch], prob, valid))
