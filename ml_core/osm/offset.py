"""The shift between OSM's buildings and the imagery, by phase correlation, in metres.

Mapped outlines are often drawn on older or differently rectified imagery, so they sit a metre or
two off the roofs. For each block (:data:`BLOCK_M` square) holding at least
:data:`MIN_BLOCK_BUILDINGS` mapped buildings, the rasterised buildings are phase-correlated with
a building probability (the base model's): the normalised cross-power spectrum of the two
Hann-windowed images (magnitude divided out to the power :data:`WHITEN`) peaks at the
displacement, refined to 1/:data:`UPSAMPLE` pixel by a
local, upsampled inverse DFT around the peak. The shifts of the blocks with a clear peak
(peak-to-sidelobe ratio at least :data:`MIN_PSR`) are combined by a median weighted by their
buildings, then averaged (same weights) over the blocks that agree with it; the confidence is
their weighted median ratio. The estimate counts as confident with
at least :data:`MIN_BUILDINGS` buildings, a ratio of at least :data:`MIN_PSR` and at least
:data:`MIN_AGREEMENT` of the buildings in clear blocks within :data:`AGREE_M` (or a pixel) of
the median: on real areas a few sparse blocks peak on the wrong roofs.

``Offset.dx_m, dy_m`` (east, north) go *from OSM's frame to the imagery's*: training labels are
moved by (+dx, +dy) (:func:`align_labels`), new buildings by (-dx, -dy) before export.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional, Union

import numpy as np
from osgeo import gdal, ogr, osr

from ml_core.events import CancelToken, ProgressCallback, ProgressEvent, check_cancel, emit
from ml_core.io import raster as gdalio
from ml_core.io.atomic import atomic_output
from ml_core.io.grid import burn, raster_bounds, window_envelope
from ml_core.io.vector import (
    BoxIndex,
    as_list,
    create_gpkg,
    ground_distance_m,
    local_utm,
    memory_layer,
    read_polygons,
    srs_of,
    transform,
)

gdal.UseExceptions()
ogr.UseExceptions()

PathLike = Union[str, os.PathLike]
BLOCK_M = 120.0
MAX_BLOCK_PX = 2048
MAX_SHIFT_M = 8.0
MIN_BUILDINGS = 10
MIN_BLOCK_BUILDINGS = 5
MIN_PSR = 6.0
APPLY_MIN_PX = 0.5  # shifts under half a (model) pixel are not applied
UPSAMPLE = 20
ALIGNMENT_OFF = "label alignment off"
WHITEN = 0.75  # 1 is pure phase correlation; 0.75 was steadier against a smooth probability
AGREE_M = 0.5  # blocks agree when within this or a pixel of the median
MIN_AGREEMENT = 0.5  # share of the buildings in agreeing blocks with a clear peak


@dataclass
class Offset:
    """Shift from OSM's frame to the imagery's, in metres east/north, with its confidence."""

    dx_m: float = 0.0
    dy_m: float = 0.0
    confidence: float = 0.0  # median peak-to-sidelobe ratio of the blocks
    buildings: int = 0
    confident: bool = False
    pixel_m: float = 0.0  # the pixel size deciding whether the shift is worth applying
    reason: str = ""
    blocks: list = field(default_factory=list)

    @classmethod
    def none(cls, reason: str, buildings: int = 0) -> Offset:
        return cls(buildings=buildings, reason=reason)

    @property
    def applies(self) -> bool:
        """Confident and at least half a pixel long."""
        long_enough = np.hypot(self.dx_m, self.dy_m) >= APPLY_MIN_PX * self.pixel_m
        return bool(self.confident and long_enough)

    def describe(self) -> str:
        """One line for the user: the shift, its confidence and whether it is applied."""
        if self.reason == ALIGNMENT_OFF:
            return "Label alignment is off: labels unshifted."
        if not self.confident:
            return f"OSM-imagery offset not estimated with confidence ({self.reason}); unshifted."
        verdict = "applied" if self.applies else "under half a pixel, not applied"
        return (f"OSM buildings sit {abs(self.dx_m):.2f} m {'west' if self.dx_m > 0 else 'east'}"
                f" and {abs(self.dy_m):.2f} m {'south' if self.dy_m > 0 else 'north'} of the "
                f"imagery (confidence {self.confidence:.1f}, {self.buildings} buildings, "
                f"{len(self.blocks)} block(s)); {verdict}.")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Offset:
        return cls(**json.loads(text))


def _hann(h: int, w: int) -> np.ndarray:
    return np.outer(np.hanning(h), np.hanning(w))


def _upsampled_peak(spectrum: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Sub-pixel (row, col) of the correlation maximum near integer ``peak``: the inverse DFT of
    ``spectrum`` evaluated on a 1/UPSAMPLE grid of ±1.5 pixels around it."""
    h, w = spectrum.shape
    offs = np.arange(-1.5, 1.5 + 1e-9, 1.0 / UPSAMPLE)
    rows, cols = peak[0] + offs, peak[1] + offs
    ey = np.exp(2j * np.pi * np.outer(rows, np.fft.fftfreq(h)))
    ex = np.exp(2j * np.pi * np.outer(np.fft.fftfreq(w), cols))
    local = np.real(ey @ spectrum @ ex)
    i, j = np.unravel_index(np.argmax(local), local.shape)
    return np.array([rows[i], cols[j]])


def phase_correlate(image: np.ndarray, labels: np.ndarray,
                    max_shift_px: float) -> tuple[np.ndarray, float]:
    """((row, col) shift of ``image`` relative to ``labels``, peak-to-sidelobe ratio).

    ``image`` ≈ ``labels`` moved by the shift. Only shifts up to ``max_shift_px`` are searched.
    """
    h, w = labels.shape
    win = _hann(h, w)
    a = np.fft.fft2((image - image.mean()) * win)
    b = np.fft.fft2((labels - labels.mean()) * win)
    cross = a * np.conj(b)
    cross /= (np.abs(cross) + 1e-9 * np.abs(cross).max()) ** WHITEN
    surface = np.fft.fftshift(np.real(np.fft.ifft2(cross)))
    cy, cx = h // 2, w // 2
    r = int(min(max_shift_px, cy - 1, cx - 1))
    search = surface[cy - r:cy + r + 1, cx - r:cx + r + 1]
    i, j = np.unravel_index(np.argmax(search), search.shape)
    side = np.ones_like(search, bool)
    side[max(0, i - 2):i + 3, max(0, j - 2):j + 3] = False
    psr = float((search[i, j] - search[side].mean()) / (search[side].std() + 1e-12))
    return _upsampled_peak(cross, np.array([i - r, j - r])), psr


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value at which the cumulative weight of the sorted values reaches half."""
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2)])


def _centres_in(envelopes: np.ndarray, env: tuple) -> int:
    """How many (minx, maxx, miny, maxy) envelopes have their centre inside ``env``."""
    cx, cy = envelopes[:, :2].mean(1), envelopes[:, 2:].mean(1)
    return int(np.sum((cx >= env[0]) & (cx < env[1]) & (cy >= env[2]) & (cy < env[3])))


def _pixel_metres(ds: gdal.Dataset) -> tuple[float, float]:
    """Ground size (m) of one pixel along x and along y at the raster centre."""
    gt, srs = ds.GetGeoTransform(), ds.GetSpatialRef()
    cx, cy = gt[0] + gt[1] * ds.RasterXSize / 2, gt[3] + gt[5] * ds.RasterYSize / 2
    return (ground_distance_m(srs, (cx, cy), (cx + gt[1], cy)),
            ground_distance_m(srs, (cx, cy), (cx, cy + gt[5])))


def estimate_offset(prob: gdalio.RasterLike, buildings: Sequence[ogr.Geometry],
                    srs: Optional[osr.SpatialReference] = None,
                    cancel: Optional[CancelToken] = None) -> Offset:
    """Offset between ``buildings`` (polygons in ``srs``, default the raster's) and band 1 of
    building-probability raster ``prob``; see the module docstring."""
    ds = gdalio.open_raster(prob)
    ds_srs = srs_of(ds)
    geoms = list(buildings)
    ct = transform(srs, ds_srs) if srs is not None else None
    if ct is not None:
        geoms = [g.Clone() for g in geoms]
        for g in geoms:
            g.Transform(ct)
    px_x, px_y = _pixel_metres(ds)
    index = BoxIndex(geoms)
    on_raster = index.query(raster_bounds(ds))
    if len(on_raster) < MIN_BUILDINGS:
        return Offset.none(f"{len(on_raster)} mapped building(s) on the raster, at least "
                           f"{MIN_BUILDINGS} needed", len(on_raster))
    _src, layer = memory_layer([geoms[i] for i in on_raster], ds_srs)
    block = int(min(MAX_BLOCK_PX, max(64, round(BLOCK_M / min(px_x, px_y)))))
    band = ds.GetRasterBand(1)
    nodata = band.GetNoDataValue()
    max_px = MAX_SHIFT_M / min(px_x, px_y)
    blocks = []
    W, H = ds.RasterXSize, ds.RasterYSize
    for y0 in range(0, H, block):
        for x0 in range(0, W, block):
            check_cancel(cancel)
            w, h = min(block, W - x0), min(block, H - y0)
            if min(w, h) < 4 * max_px and (w, h) != (W, H):
                continue  # an edge strip too narrow to see the shift
            env = window_envelope(ds, x0, y0, w, h)
            count = _centres_in(index.env[on_raster], env)
            if count < MIN_BLOCK_BUILDINGS:
                continue
            image = band.ReadAsArray(x0, y0, w, h).astype(np.float64)
            if nodata is not None:
                image[image == nodata] = 0.0
            layer.SetSpatialFilterRect(env[0], env[2], env[1], env[3])  # this block's only
            labels = burn(layer, ds, x0, y0, w, h).astype(np.float64)
            (drow, dcol), psr = phase_correlate(image, labels, max_px)
            blocks.append({"x": x0, "y": y0, "buildings": count, "psr": round(psr, 2),
                           "dx_m": round(float(dcol) * px_x, 3),
                           "dy_m": round(float(-drow) * px_y, 3)})
    total = sum(b["buildings"] for b in blocks)
    if not blocks or total < MIN_BUILDINGS:
        return Offset.none(f"too few mapped buildings per {BLOCK_M:.0f} m block (at least "
                           f"{MIN_BLOCK_BUILDINGS} in a block, {MIN_BUILDINGS} in all)", total)
    clear = [b for b in blocks if b["psr"] >= MIN_PSR] or blocks
    weight = np.array([b["buildings"] for b in clear], float)
    dx = _weighted_median(np.array([b["dx_m"] for b in clear]), weight)
    dy = _weighted_median(np.array([b["dy_m"] for b in clear]), weight)
    psr = _weighted_median(np.array([b["psr"] for b in clear]), weight)
    agree = max(px_x, px_y, AGREE_M)
    near = np.array([np.hypot(b["dx_m"] - dx, b["dy_m"] - dy) <= agree for b in clear])
    share = float(weight[near].sum() / total)
    shifts = np.array([(b["dx_m"], b["dy_m"]) for b in clear])
    if near.any():  # dx and dy are separate medians: no block need lie near both
        dx, dy = np.average(shifts[near], axis=0, weights=weight[near])
    reasons = ([f"peak-to-sidelobe ratio {psr:.1f} < {MIN_PSR}"] if psr < MIN_PSR else []) + \
              ([f"blocks disagree ({share:.0%} of the buildings in blocks within {agree:.2f} m "
                "of the median)"] if share < MIN_AGREEMENT else [])
    return Offset(round(float(dx), 3), round(float(dy), 3), round(psr, 2), total, not reasons,
                  (px_x + px_y) / 2, "; ".join(reasons), blocks)


def _translate(geom: ogr.Geometry, dx: float, dy: float) -> None:
    """Move every vertex of ``geom`` by (dx, dy) in its own units, in place."""
    if geom.GetGeometryCount() == 0:
        for i, (x, y) in enumerate(np.array(geom.GetPoints())[:, :2]):
            geom.SetPoint_2D(i, float(x + dx), float(y + dy))
        return
    for k in range(geom.GetGeometryCount()):
        _translate(geom.GetGeometryRef(k), dx, dy)


def shift_geoms(geoms: Sequence[ogr.Geometry], srs: osr.SpatialReference, dx_m: float,
                dy_m: float) -> list:
    """Copies of ``geoms`` (in ``srs``) moved ``dx_m`` east and ``dy_m`` north, in metres
    (applied in the local UTM zone, so any CRS works)."""
    out = [g.Clone() for g in geoms]
    if not out:
        return out
    env = np.array([g.GetEnvelope() for g in out])
    utm = local_utm(srs_of(srs), float(env[:, 0].min() + env[:, 1].max()) / 2,
                    float(env[:, 2].min() + env[:, 3].max()) / 2)
    there, back = transform(srs, utm), transform(utm, srs)
    for g in out:
        if there is not None:
            g.Transform(there)
        _translate(g, dx_m, dy_m)
        if back is not None:
            g.Transform(back)
    return out


def write_polygons(path: PathLike, geoms: Sequence[ogr.Geometry],
                   srs: osr.SpatialReference) -> Path:
    """A GeoPackage (layer ``buildings``) of ``geoms``, written atomically (replacing ``path``)."""
    with atomic_output(path) as tmp:
        src = create_gpkg(tmp)
        layer = src.CreateLayer("buildings", srs=srs, geom_type=ogr.wkbMultiPolygon)
        layer.StartTransaction()
        for g in geoms:
            feat = ogr.Feature(layer.GetLayerDefn())
            feat.SetGeometry(ogr.ForceToMultiPolygon(g.Clone()))
            layer.CreateFeature(feat)
        layer.CommitTransaction()
        layer = None  # the layer before its datasource
        src = None
    return Path(path)


def align_labels(raster: gdalio.RasterLike, labels, model, workdir: PathLike,
                 enabled: bool = True, device: str = "auto",
                 bands: Optional[Sequence[int]] = None,
                 progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> tuple[list, Offset]:
    """(label paths to train on, offset): the building polygons ``labels`` moved onto the
    imagery when the offset against ``model``'s probability is confident and at least half a
    model pixel; otherwise ``labels`` unchanged. The message is reported via ``progress``."""
    paths = as_list(labels)
    if not enabled or model is None or not paths:
        return paths, Offset.none(ALIGNMENT_OFF)
    from ml_core.config import PredictOptions
    from ml_core.infer.predict import predict_raster
    from ml_core.learn.modelfile import load_model

    ds = gdalio.open_raster(raster)
    srs = srs_of(ds)
    geoms = [g for p in paths for g in read_polygons(p, srs, what="buildings").geoms]
    on_raster = len(BoxIndex(geoms).query(raster_bounds(ds)))
    if on_raster < MIN_BUILDINGS:  # no prediction needed to know there is too little to go on
        offset = Offset.none(f"{on_raster} building(s) on the raster, at least {MIN_BUILDINGS} "
                             "needed", on_raster)
        emit(progress, ProgressEvent("align", 1.0, offset.describe()))
        return paths, offset
    loaded = load_model(model) if isinstance(model, (str, os.PathLike)) else model
    work = Path(workdir)
    emit(progress, ProgressEvent("align", 0.0, "estimating the OSM-imagery offset"))
    prob = predict_raster(ds, loaded, work / "offset_probability.tif",
                          PredictOptions(device=device), bands=bands, cancel=cancel)
    offset = estimate_offset(prob, geoms, cancel=cancel)
    offset = replace(offset, pixel_m=max(offset.pixel_m, loaded.card.gsd_m or 0.0))
    emit(progress, ProgressEvent("align", 1.0, offset.describe()))
    if not offset.applies:
        return paths, offset
    moved = shift_geoms(geoms, srs, offset.dx_m, offset.dy_m)
    return [write_polygons(work / "aligned_labels.gpkg", moved, srs)], offset
