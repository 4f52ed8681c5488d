"""The annotation loop without QGIS: review states, the labels of the next round, the round log
and a simulated reviewer.

A round turns review answers into labels: the original OSM buildings and the accepted proposals
are buildings (1), rejected proposals are background (0) even where background is otherwise
unknown, and complete areas make background outside them unknown (the rasteriser's rules,
``labels.rasterize_labels``). The next model starts from the current one (warm start: its
weights, bands, GSD and normalisation), so a round refines rather than restarts.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Union

import numpy as np
from osgeo import gdal, ogr, osr

from ml_core.config import RasterizeOptions, TrainOptions
from ml_core.errors import InputError
from ml_core.events import CancelToken, ProgressCallback, ProgressEvent, emit
from ml_core.io.atomic import atomic_output, check_writable
from ml_core.io.vector import (
    BoxIndex,
    PolygonSet,
    as_list,
    create_gpkg,
    envelope_polygon,
    open_layer,
    polygon_part,
    raster_bounds,
    read_polygons,
    srs_of,
    transform,
)
from ml_core.labels.rasterize import rasterize_labels

gdal.UseExceptions()
ogr.UseExceptions()

PROPOSED, ACCEPTED, REJECTED = "proposed", "accepted", "rejected"
STATUSES = (PROPOSED, ACCEPTED, REJECTED)
STATUS_FIELD = "status"
NEW_LAYER = "new_buildings"
ROUND_LOG = "review_rounds.jsonl"
ACCEPT_COVER = 0.5  # the simulated reviewer accepts a proposal half covered by true buildings
PathLike = Union[str, os.PathLike]


@dataclass
class ReviewCounts:
    """How many proposals carry each status."""

    proposed: int = 0
    accepted: int = 0
    rejected: int = 0


@dataclass
class RoundLabels:
    """The mask of the next round and what went into it."""

    mask: Path
    counts: ReviewCounts
    complete_areas: int


@dataclass
class RoundResult:
    """One finished review round: its labels, the training result and the log entry."""

    labels: RoundLabels
    train: object  # ml_core.learn.train.TrainResult (not imported here: it pulls in torch)
    log_entry: dict


def _where(status: str) -> str:
    return f"{STATUS_FIELD} = '{status}'"


def _check_status_field(layer: ogr.Layer, path: PathLike) -> None:
    if layer.GetLayerDefn().GetFieldIndex(STATUS_FIELD) < 0:
        raise InputError(f"{path} has no '{STATUS_FIELD}' field. Use the new_buildings layer "
                         "written by bfe's extraction.")


def count_statuses(new_buildings: PathLike) -> ReviewCounts:
    """Count the proposals of each status in a reviewed ``new_buildings`` layer."""
    src, layer = open_layer(new_buildings, prefer=NEW_LAYER)
    _check_status_field(layer, new_buildings)
    counts = ReviewCounts()
    for status in STATUSES:
        layer.SetAttributeFilter(_where(status))
        setattr(counts, status, layer.GetFeatureCount())
    del src
    return counts


def status_polygons(new_buildings: PathLike, status: str) -> tuple[list, osr.SpatialReference]:
    """Valid polygons of the proposals with ``status``, and the layer's CRS."""
    src, layer = open_layer(new_buildings, prefer=NEW_LAYER)
    _check_status_field(layer, new_buildings)
    layer.SetAttributeFilter(_where(status))
    geoms = [polygon_part(f.GetGeometryRef().Clone()) for f in layer
             if f.GetGeometryRef() is not None]
    srs = srs_of(layer)
    del src
    return [g for g in geoms if g is not None], srs


def _write_polygons(geoms: list, srs: osr.SpatialReference, out_path: Path) -> Path:
    with atomic_output(out_path) as tmp:
        out = create_gpkg(tmp)  # keep the data source alive while writing its layer
        layer = out.CreateLayer(out_path.stem, srs=srs, geom_type=ogr.wkbUnknown)
        for g in geoms:
            feat = ogr.Feature(layer.GetLayerDefn())
            feat.SetGeometry(g)
            layer.CreateFeature(feat)
        out = layer = None
    return out_path


def _minus(geoms: list, others: list) -> list:
    """Each of ``geoms`` minus the ``others`` it touches; empty remainders are dropped."""
    index = BoxIndex(others)
    out = []
    for g in geoms:
        union = index.union(index.query(g.GetEnvelope()))
        g = g.Difference(union) if union is not None else g
        if not g.IsEmpty() and g.GetArea() > 0:
            out.append(g)
    return out


def _known_area(raster: PathLike, complete_area, srs: osr.SpatialReference,
                unanswered: list) -> list:
    """Where background counts: the complete areas (default: the whole raster) minus the
    proposals nobody answered, as polygons in ``srs``."""
    if complete_area is None:
        ds = gdal.OpenEx(str(raster))
        box = envelope_polygon(raster_bounds(ds))
        ct = transform(srs_of(ds), srs)
        if ct is not None:
            box.Transform(ct)
        areas = [box]
    else:
        areas = [g for p in as_list(complete_area)
                 for g in read_polygons(p, srs, "complete-area").geoms]
    return _minus(areas, unanswered)


def round_labels(raster: PathLike, buildings, new_buildings: PathLike, out_path: PathLike,
                 complete_area=None, options: Optional[RasterizeOptions] = None,
                 unanswered_unknown: bool = True, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> RoundLabels:
    """Rasterise the next round's mask from the review answers.

    ``buildings`` (path(s)) and accepted proposals are 1. Rejected proposals are 0, minus any
    labelled building they touch, so a rejection never erases a mapped building.
    ``complete_area`` polygons are the rasteriser's complete areas. With
    ``unanswered_unknown``, proposals still ``proposed`` are unknown (255), not background:
    the model calls them buildings and nobody has said otherwise, so labelling them 0 would
    teach it to miss exactly the unmapped buildings (FINDINGS lesson 2, at object level and
    under the reviewer's control). Side files go beside ``out_path`` (``*.accepted.gpkg``,
    ``*.rejected.gpkg``, ``*.complete.gpkg``).
    """
    out_path = check_writable(out_path)
    counts = count_statuses(new_buildings)
    stem = out_path.with_suffix("")
    labelled = as_list(buildings)
    accepted, srs = status_polygons(new_buildings, ACCEPTED)
    if accepted:
        labelled.append(_write_polygons(accepted, srs, Path(f"{stem}.accepted.gpkg")))
    rejected, _ = status_polygons(new_buildings, REJECTED)
    if rejected:
        mapped = [g for p in labelled for g in read_polygons(p, srs, "buildings").geoms]
        rejected = _minus(rejected, mapped)
    background = _write_polygons(rejected, srs, Path(f"{stem}.rejected.gpkg")) \
        if rejected else None
    n_complete = sum(len(read_polygons(p, what="complete-area").geoms)
                     for p in as_list(complete_area))
    unanswered = status_polygons(new_buildings, PROPOSED)[0] if unanswered_unknown else []
    if unanswered:
        complete_area = _write_polygons(_known_area(raster, complete_area, srs, unanswered),
                                        srs, Path(f"{stem}.complete.gpkg"))
    mask = rasterize_labels(raster, labelled, out_path, options, complete_area=complete_area,
                            background=background, progress=progress, cancel=cancel)
    return RoundLabels(mask, counts, n_complete)


def round_log_path(model: PathLike) -> Path:
    """The round log (JSON lines) in the folder of ``model``."""
    return Path(model).parent / ROUND_LOG


def read_round_log(model: PathLike) -> list[dict]:
    """All logged rounds next to ``model`` (empty when none)."""
    path = round_log_path(model)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def log_round(model: PathLike, entry: dict, previous: Optional[PathLike] = None) -> dict:
    """Append ``entry``, numbered (from 0) after the rounds already logged, to the log next to
    ``model``. A log next to ``previous`` (the model the round started from) in another folder
    is carried over first, so every round's log holds the whole history."""
    path = round_log_path(model)
    if previous is not None and round_log_path(previous) != path and not path.exists():
        carried = read_round_log(previous)
        path.write_text("".join(json.dumps(e) + "\n" for e in carried), encoding="utf-8")
    entry = {"round": len(read_round_log(model)), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
             **entry}
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry, default=str) + "\n")
    return entry


def run_round(raster: PathLike, buildings, new_buildings: PathLike, current_model: PathLike,
              out_model: PathLike, options: Optional[TrainOptions] = None, complete_area=None,
              rasterize: Optional[RasterizeOptions] = None, bands: Optional[list] = None,
              unanswered_unknown: bool = True, progress: Optional[ProgressCallback] = None,
              cancel: Optional[CancelToken] = None) -> RoundResult:
    """One review round: build the labels, fine-tune from ``current_model``, log the round.

    ``ignore_confident`` is switched off: the current model calls the rejected proposals
    building, so it would turn exactly the reviewer's background answers back into unknown.
    ``keep_start`` is switched on: the held-out blocks now hold the reviewer's answers and are
    not cleaned by the current model's own predictions, so they can fairly decide whether the
    retrained model beats the one the reviewer worked with; if not, the round keeps it (and the
    answers still count: the next extraction carries them over, ``carry_decisions``).
    """
    from ml_core.learn.modelfile import read_card  # torch: imported only when a round really runs
    from ml_core.learn.train import finetune

    out_model = Path(out_model).with_suffix(".safetensors")
    check_writable(out_model)
    labels = round_labels(raster, buildings, new_buildings,
                          out_model.with_name(out_model.stem + ".labels.tif"), complete_area,
                          rasterize, unanswered_unknown, progress, cancel)
    emit(progress, ProgressEvent("rasterize", 1.0, f"round labels: {labels.counts.accepted} "
                                 f"accepted, {labels.counts.rejected} rejected"))
    options = replace(options or TrainOptions(), ignore_confident=None, keep_start=True)
    if not read_round_log(current_model):  # round 0: the model the loop starts from
        log_round(out_model, {"model": str(current_model), "labels_added": 0,
                              "labels_rejected": 0,
                              "val_dice": read_card(current_model).metrics.get("val_dice")})
    result = finetune(raster, None, out_model, options, base=current_model, bands=bands,
                      mask=labels.mask, progress=progress, cancel=cancel)
    entry = log_round(out_model, previous=current_model, entry={
        "model": str(result.model_path), "base": str(current_model),
        "labels_added": labels.counts.accepted, "labels_rejected": labels.counts.rejected,
        "still_proposed": labels.counts.proposed, "complete_areas": labels.complete_areas,
        "val_dice": result.best_val_dice, "threshold": result.threshold,
        "epochs": result.epochs_run, "stopped": result.stopped, "seconds": result.seconds})
    return RoundResult(labels, result, entry)


def review_order(scores: np.ndarray, order: str = "score") -> np.ndarray:
    """Indices of proposals in review order: ``score`` (highest first) or ``uncertainty``
    (closest to 0.5 first). Stable, so ties keep the layer's order."""
    if order == "score":
        return np.argsort(-scores, kind="stable")
    if order == "uncertainty":
        return np.argsort(np.abs(scores - 0.5), kind="stable")
    raise InputError(f"Unknown review order {order!r}; choose 'score' or 'uncertainty'.")


def _proposals(new_buildings: PathLike) -> tuple[PolygonSet, list[int], np.ndarray]:
    """The proposals' polygons, feature ids and scores, in layer order."""
    props = read_polygons(new_buildings, what="new buildings", prefer=NEW_LAYER)
    src, layer = open_layer(new_buildings, prefer=NEW_LAYER)
    fids, scores = [], []
    for feat in layer:
        if feat.GetGeometryRef() is not None:
            fids.append(feat.GetFID())
            scores.append(feat.GetField("score"))
    del src
    if len(fids) != len(props.geoms):
        raise InputError(f"{new_buildings}: some proposals have no polygon; extract again.")
    return props, fids, np.asarray(scores, float)


def carry_decisions(previous: PathLike, new_buildings: PathLike,
                    min_cover: float = ACCEPT_COVER) -> ReviewCounts:
    """Give the proposals of a new extraction the answers of the ``previous`` review.

    A new proposal covered at least ``min_cover`` by previously rejected proposals is marked
    rejected (the reviewer is not asked twice about the same false building), one covered by
    accepted proposals accepted. ``new_buildings`` (bfe's own output) is updated in place;
    returns the counts of the carried answers (``proposed``: left for review).
    """
    props, fids, _ = _proposals(new_buildings)
    decisions: dict[int, str] = {}
    for status in (ACCEPTED, REJECTED):  # a rejection wins where both cover a proposal
        geoms, srs = status_polygons(previous, status)
        ct = transform(srs, props.srs)
        if ct is not None:
            for g in geoms:
                g.Transform(ct)
        cover = BoxIndex(geoms).cover_fraction(props.geoms) if geoms else np.zeros(len(fids))
        decisions.update({fids[i]: status for i in np.flatnonzero(cover >= min_cover)})
    set_statuses(new_buildings, decisions)
    accepted = sum(s == ACCEPTED for s in decisions.values())
    return ReviewCounts(len(fids) - len(decisions), accepted, len(decisions) - accepted)


def simulate_review(new_buildings: PathLike, truth: PathLike, out_path: PathLike, n: int = 20,
                    order: str = "score", min_cover: float = ACCEPT_COVER) -> ReviewCounts:
    """Play a ground-truth reviewer on up to ``n`` proposals and write the reviewed layer.

    In review ``order`` (default ``score``, the panel's), a proposal that true buildings cover
    at least ``min_cover`` of is accepted, one that touches no true building is rejected, and
    one in between (a blob straddling a building and its yard) is skipped, as a careful mapper
    would rather than label half a yard as building or half a building as background; skips do
    not count as decisions. Writes ``out_path`` (layer ``new_buildings``) with ``status`` set;
    ``new_buildings`` is not modified.
    """
    check_writable(out_path)
    props, fids, scores = _proposals(new_buildings)
    truth_geoms = read_polygons(truth, props.srs, "truth buildings", "buildings").geoms
    order_idx = review_order(scores, order)
    cover = BoxIndex(truth_geoms).cover_fraction([props.geoms[i] for i in order_idx])
    answer = np.where(cover >= min_cover, 1, np.where(cover == 0, 0, -1))  # -1: skip
    decided = np.flatnonzero(answer >= 0)[:n]
    decisions = {fids[order_idx[k]]: ACCEPTED if answer[k] else REJECTED for k in decided}
    with atomic_output(out_path) as tmp:
        gdal.VectorTranslate(str(tmp), str(new_buildings).split("|")[0], format="GPKG",
                             layers=[NEW_LAYER], layerName=NEW_LAYER, options=["-preserve_fid"])
        set_statuses(tmp, decisions)
    accepted = sum(s == ACCEPTED for s in decisions.values())
    return ReviewCounts(len(fids) - len(decisions), accepted, len(decisions) - accepted)


def set_statuses(new_buildings: PathLike, decisions: dict) -> None:
    """Write ``{fid: status}`` into the ``status`` field of a new-buildings GeoPackage."""
    bad = set(decisions.values()) - set(STATUSES)
    if bad:
        raise InputError(f"Unknown review status {sorted(bad)}; use one of {STATUSES}.")
    src = ogr.Open(str(new_buildings).split("|")[0], update=1)
    layer = src.GetLayerByName(NEW_LAYER)
    layer.StartTransaction()
    for fid, status in decisions.items():
        feat = layer.GetFeature(int(fid))
        feat.SetField(STATUS_FIELD, status)
        layer.SetFeature(feat)
    layer.CommitTransaction()
    src = None

