"""Pixel and object metrics of predicted footprints against true buildings, and ``evaluate``.

Pixel: Dice = 2TP/(2TP+FP+FN), IoU = TP/(TP+FP+FN), global and as a mean over tiles that hold
any true or predicted building. Object (the headline): predictions matched one to one to true
buildings at IoU ≥ 0.5 (``evaluate.matching``): precision, recall, F1, mean IoU of the matches,
merged and split shares; with the dropped set, the same for the new buildings against the
dropped ones (gap filling). Secondary, the coverage figures: a true building is found when
predicted polygons cover ≥ 50 % of it, and coverage precision is the share of predicted polygons
that overlap a true building (by a positive area).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Optional, Union

import numpy as np
from osgeo import gdal, ogr

from ml_core.evaluate.matching import HALF, IOU_MIN, area_meter, is_found, match_polygons
from ml_core.infer.polygonize import binary_polygons
from ml_core.io import raster as gdalio
from ml_core.io.atomic import atomic_output, check_writable
from ml_core.io.grid import burn, pixel_window, raster_bounds
from ml_core.io.vector import (
    BoxIndex,
    PolygonSet,
    envelope_polygon,
    memory_layer,
    read_polygons,
    split_layer_name,
    srs_of,
)
from ml_core.labels.classes import EDGE, INTERIOR
from ml_core.labels.rasterize import UNKNOWN

gdal.UseExceptions()
ogr.UseExceptions()

NEW_BUILDINGS = "new_buildings"  # the extraction's layer of proposals not already mapped
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb", ".sqlite")
PathLike = Union[str, os.PathLike]


def _ratios(tp: float, fp: float, fn: float) -> tuple[float, float]:
    """(Dice, IoU); both 1 when there is nothing to find and nothing was predicted."""
    denom = tp + fp + fn
    return (2 * tp / (denom + tp), tp / denom) if denom else (1.0, 1.0)


def pixel_counts(pred: np.ndarray, truth: np.ndarray, valid: Optional[np.ndarray] = None) -> tuple:
    """(TP, FP, FN) of boolean arrays, counting only ``valid`` pixels."""
    valid = np.ones(pred.shape, bool) if valid is None else valid
    return (int((pred & truth & valid).sum()), int((pred & ~truth & valid).sum()),
            int((~pred & truth & valid).sum()))


def f_beta(tp: int, fp: int, fn: int, beta: float) -> float:
    """F-score weighting recall ``beta`` times as much as precision (F1 = Dice); 1 when there is
    nothing to find and nothing was predicted."""
    b2 = beta * beta
    denom = (1 + b2) * tp + b2 * fn + fp
    return (1 + b2) * tp / denom if denom else 1.0


def pixel_metrics_from_counts(tp: int, fp: int, fn: int) -> dict:
    """Dice, IoU, TP, FP, FN from accumulated counts (e.g. over several regions)."""
    dice, iou = _ratios(tp, fp, fn)
    return {"dice": dice, "iou": iou, "tp": int(tp), "fp": int(fp), "fn": int(fn)}


def pixel_metrics(pred: np.ndarray, truth: np.ndarray, valid: Optional[np.ndarray] = None) -> dict:
    """Dice, IoU, TP, FP, FN of two boolean masks over ``valid`` pixels."""
    return pixel_metrics_from_counts(*pixel_counts(pred, truth, valid))


def tile_counts(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray, tile: int) -> np.ndarray:
    """``[n_tiles, 3]`` (TP, FP, FN) per ``tile`` x ``tile`` block (vectorised by reshaping)."""
    h, w = pred.shape
    ph, pw = -h % tile, -w % tile

    def blocks(a: np.ndarray) -> np.ndarray:
        a = np.pad(a, ((0, ph), (0, pw)))
        return a.reshape((h + ph) // tile, tile, (w + pw) // tile, tile).sum(axis=(1, 3)).ravel()

    return np.stack([blocks(pred & truth & valid), blocks(pred & ~truth & valid),
                     blocks(~pred & truth & valid)], axis=1)


def tile_mean(counts: np.ndarray) -> dict:
    """Mean Dice and IoU over tiles with any true or predicted building pixel."""
    counts = counts[counts.sum(axis=1) > 0].astype(np.float64)
    if counts.size == 0:
        return {"dice_tile_mean": 1.0, "iou_tile_mean": 1.0, "tiles": 0}
    tp, fp, fn = counts.T
    return {"dice_tile_mean": float(np.mean(2 * tp / (2 * tp + fp + fn))),
            "iou_tile_mean": float(np.mean(tp / (tp + fp + fn))), "tiles": len(counts)}


def _found(targets: list, index: BoxIndex) -> np.ndarray:
    """For each target polygon, whether the indexed polygons cover half of it (coverage rule)."""
    return is_found(index.cover_fraction(targets))


def _overlaps_any(polys: list, index: BoxIndex) -> np.ndarray:
    hit = np.zeros(len(polys), bool)
    for i, p in enumerate(polys):
        hit[i] = any(p.Intersection(index.geoms[j]).GetArea() > 0
                     for j in index.query(p.GetEnvelope()))
    return hit


def _as_polygons(obj, target, what: str, prefer: Optional[str] = None) -> PolygonSet:
    if isinstance(obj, PolygonSet):
        return obj.to(target)
    return read_polygons(obj, target, what, prefer)


def _share(flags: np.ndarray) -> float:
    return float(flags.mean()) if flags.size else 0.0


def object_metrics(pred, truth, dropped=None, new=None, iou_min: float = IOU_MIN) -> dict:
    """Object figures of predicted polygons against true buildings.

    First the one-to-one figures at IoU ≥ ``iou_min`` (:meth:`Matching.summary`: precision,
    recall, f1, mean_iou, merged_share, split_share, matched, n_pred, n_truth), then the
    coverage figures (``coverage_recall``, ``coverage_precision``). With ``dropped``: the
    ``new`` polygons (default: ``pred``) against the dropped buildings, one to one
    (``dropped_*``), and ``dropped_coverage_recall`` (share of dropped buildings that all of
    ``pred`` cover half of). ``errors`` (and ``dropped_errors``) say why the unmatched went
    unmatched (:meth:`~ml_core.evaluate.matching.Matching.errors`). Each argument is a vector
    path (``footprints``/``buildings``/``dropped``/``new_buildings`` layers preferred) or a
    :class:`PolygonSet`; all are reprojected to the CRS of ``pred``, and areas measured in its
    local UTM zone.
    """
    pred = _as_polygons(pred, None, "prediction", "footprints")
    truth = _as_polygons(truth, pred.srs, "truth buildings", "buildings")
    meter = area_meter(pred, truth)
    pred_index = BoxIndex(pred.geoms)
    matching = match_polygons(pred.geoms, truth.geoms, meter, iou_min)
    out = {**matching.summary(), "errors": matching.errors()}
    out["coverage_recall"] = _share(_found(truth.geoms, pred_index))
    out["coverage_precision"] = _share(_overlaps_any(pred.geoms, BoxIndex(truth.geoms)))
    if dropped is not None:
        drop = _as_polygons(dropped, pred.srs, "dropped buildings", "dropped")
        new = pred if new is None else _as_polygons(new, pred.srs, "new buildings",
                                                    "new_buildings")
        matching = match_polygons(new.geoms, drop.geoms, meter, iou_min)
        out.update({**matching.summary("dropped_"), "dropped_errors": matching.errors()})
        out["dropped_coverage_recall"] = _share(_found(drop.geoms, pred_index))
    return out


def shown_on(raster: gdalio.RasterLike, polys: PolygonSet) -> PolygonSet:
    """The polygons of ``polys`` at least half on valid imagery of ``raster``
    (:func:`visible_share`): the buildings a prediction on that raster can be scored against."""
    shown = visible_share(raster, polys) >= HALF
    return replace(polys, geoms=[g for g, s in zip(polys.geoms, shown) if s])


def visible_share(raster: gdalio.RasterLike, polys: PolygonSet) -> np.ndarray:
    """Share of each polygon on valid imagery (its parts beyond the raster, on masked or on
    nodata pixels count as not shown): a building the image does not show cannot be found, so
    scores of gap filling leave out those mostly outside it. Reads one small window per
    polygon."""
    ds = gdalio.open_raster(raster)
    bands = gdalio.default_bands(ds)
    rule = gdalio.valid_mask_band(ds, bands)
    polys = polys.to(ds.GetSpatialRef())
    _src, layer = memory_layer(polys.geoms, polys.srs)
    extent = envelope_polygon(raster_bounds(ds))
    out = np.zeros(len(polys.geoms))
    for i, geom in enumerate(polys.geoms):
        x, y, w, h = pixel_window(ds, geom.GetEnvelope())
        if w == 0 or h == 0 or geom.GetArea() == 0:
            continue
        on_raster = geom.Intersection(extent).GetArea() / geom.GetArea()
        inside = burn(layer, ds, x, y, w, h, value=None, dtype=gdal.GDT_Int32) == i + 1
        if not inside.any():  # smaller than a pixel: judge the pixels it touches
            inside = burn(layer, ds, x, y, w, h, value=None, all_touched=True,
                          dtype=gdal.GDT_Int32) == i + 1
        valid = gdalio.read_validity(ds, bands, x, y, w, h, rule=rule)
        out[i] = on_raster * valid[inside].mean() if inside.any() else 0.0
    return out


def _is_vector(path: PathLike) -> bool:
    return Path(split_layer_name(path)[0]).suffix.lower() in VECTOR_SUFFIXES


def _pixel_pass(grid: gdal.Dataset, pred_of, truth_layer, valid_of, tile: int) -> dict:
    """Global and per-tile pixel metrics, strip by strip (strips are whole tile rows)."""
    W, H = grid.RasterXSize, grid.RasterYSize
    rows = max(tile, gdalio.strip_rows(W) // tile * tile)
    totals, tiles = np.zeros(3, np.int64), []
    for y0 in range(0, H, rows):
        h = min(rows, H - y0)
        pred, valid = pred_of(y0, h), valid_of(y0, h)
        truth = burn(truth_layer, grid, 0, y0, W, h) > 0
        counts = tile_counts(pred, truth, valid, tile)
        totals += counts.sum(axis=0)
        tiles.append(counts)
    dice, iou = _ratios(*totals.tolist())
    return {"dice": dice, "iou": iou, "tp": int(totals[0]), "fp": int(totals[1]),
            "fn": int(totals[2]), **tile_mean(np.concatenate(tiles))}


def _vector_prediction(pred: PathLike, raster: Optional[gdalio.RasterLike]) -> tuple:
    """(grid or None, polygons, pred_of, valid_of) for a footprints vector."""
    grid = gdalio.open_raster(raster) if raster is not None else None
    polys = read_polygons(pred, srs_of(grid) if grid else None, "prediction", "footprints")
    if grid is None:
        return None, polys, None, None
    mem = memory_layer(polys.geoms, polys.srs)  # (data source, layer): keep both alive
    bands = gdalio.default_bands(grid)
    rule = gdalio.valid_mask_band(grid, bands)

    def pred_of(y0: int, h: int) -> np.ndarray:
        return burn(mem[1], grid, 0, y0, grid.RasterXSize, h) > 0

    def valid_of(y0: int, h: int) -> np.ndarray:
        return gdalio.read_validity(grid, bands, 0, y0, grid.RasterXSize, h, rule=rule)

    return grid, polys, pred_of, valid_of


def _raster_prediction(pred: PathLike, threshold: float) -> tuple:
    """(grid, polygons, pred_of, valid_of) for a probability raster or a label mask (binary or
    instance classes: interior and edge are building, contact background, 255 unknown)."""
    grid = gdalio.open_raster(pred)
    band = grid.GetRasterBand(1)
    if band.DataType == gdal.GDT_Byte:
        low, high, unknown = INTERIOR, EDGE, UNKNOWN
    else:
        low, high, unknown = threshold, np.inf, band.GetNoDataValue()
    polys = PolygonSet(binary_polygons(grid, low, high), srs_of(grid), str(pred))

    def read(y0: int, h: int) -> np.ndarray:
        return band.ReadAsArray(0, y0, grid.RasterXSize, h)

    def pred_of(y0: int, h: int) -> np.ndarray:
        v = read(y0, h)
        return (v >= low) & (v <= high)

    def valid_of(y0: int, h: int) -> np.ndarray:
        v = read(y0, h)
        return v != unknown if unknown is not None else np.ones(v.shape, bool)

    return grid, polys, pred_of, valid_of


def _new_buildings_layer(pred: PathLike) -> Optional[str]:
    """``pred``'s ``new_buildings`` layer (bfe's extraction output) when it has one and no layer
    is named: the new buildings are what gap filling is scored on against dropped buildings."""
    file, layer = split_layer_name(pred)
    if layer is not None or not _is_vector(pred) or not Path(file).exists():
        return None
    src = ogr.Open(file)
    found = src is not None and src.GetLayerByName(NEW_BUILDINGS) is not None
    src = None
    return f"{file}|layername={NEW_BUILDINGS}" if found else None


def evaluate(pred: PathLike, truth: PathLike, raster: Optional[gdalio.RasterLike] = None,
             dropped: Optional[PathLike] = None, json_out: Optional[PathLike] = None,
             threshold: float = 0.5, tile: int = 256) -> dict:
    """Score a prediction (probability/mask GeoTIFF or footprints vector) against ``truth``.

    Pixel metrics need a grid: the prediction raster, or ``raster`` for a vector prediction.
    Object metrics always run (a raster prediction is polygonised); with a grid they leave out
    the true buildings mostly off its valid imagery (:func:`shown_on`; counted in
    ``object.truth_off_imagery``) and so do ``dropped`` buildings: no prediction there can
    find them. Against ``dropped`` they
    score the prediction's ``new_buildings`` layer where it has one, else every prediction
    (``object.dropped_scored`` says which). Writes ``json_out``.
    """
    if json_out is not None:
        check_writable(json_out)
    grid, polys, pred_of, valid_of = (_vector_prediction(pred, raster) if _is_vector(pred)
                                      else _raster_prediction(pred, threshold))
    truth_set = read_polygons(truth, polys.srs, "truth buildings", "buildings")
    result: dict = {"prediction": str(pred), "truth": str(truth)}
    if grid is not None:
        _src, truth_layer = memory_layer(truth_set.geoms, truth_set.srs)
        result["pixel"] = _pixel_pass(grid, pred_of, truth_layer, valid_of, tile)
    new = _new_buildings_layer(pred) if dropped is not None else None
    scored = shown_on(grid, truth_set) if grid is not None else truth_set
    if dropped is not None and grid is not None:
        dropped = shown_on(grid, _as_polygons(dropped, polys.srs, "dropped buildings", "dropped"))
    result["object"] = object_metrics(polys, scored, dropped, new)
    result["object"]["truth_off_imagery"] = len(truth_set.geoms) - len(scored.geoms)
    if dropped is not None:
        result["object"]["dropped_scored"] = new or "all predictions"
    if json_out is not None:
        with atomic_output(json_out) as tmp:
            tmp.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result
