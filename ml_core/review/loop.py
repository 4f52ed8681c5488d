"""The annotation loop without QGIS: review states, the labels of the next round, the round log
and a simulated reviewer.

A round turns review answers into labels: the original OSM buildings and the accepted proposals
are buildings, rejected proposals are background, proposals nobody answered and those flagged
"several buildings" are unknown. A complete area only adds certainty: inside it unlabelled pixels
and unanswered proposals are background; outside it the labels are what they would be without
it. The answers in the fixed held-out lattice (``ml_core.review.yardstick``) are never trained
on; the round scores the model before and after it on them. The next model starts from the
current one (warm start: its weights, bands, GSD and normalisation), so a round refines rather
than restarts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
from osgeo import gdal, ogr, osr

from ml_core.config import DEFAULT_THRESHOLD, JobSpec, RasterizeOptions
from ml_core.errors import InputError
from ml_core.evaluate.matching import IOU_MIN, area_meter, match_polygons
from ml_core.events import CancelToken, ProgressCallback, ProgressEvent, emit
from ml_core.io import raster as gdalio
from ml_core.io.atomic import atomic_output, check_writable
from ml_core.io.grid import burn
from ml_core.io.vector import (
    BoxIndex,
    PolygonSet,
    as_list,
    create_gpkg,
    feature_polygons,
    memory_layer,
    open_layer,
    polygon_part,
    read_polygons,
    split_layer_name,
    srs_of,
    transform,
)
from ml_core.labels.classes import UNKNOWN, is_building
from ml_core.labels.rasterize import rasterize_labels
from ml_core.review.yardstick import Lattice, Yardstick

gdal.UseExceptions()
ogr.UseExceptions()

PROPOSED, ACCEPTED, REJECTED, SEVERAL = "proposed", "accepted", "rejected", "several"
STATUSES = (PROPOSED, ACCEPTED, REJECTED, SEVERAL)  # several: one proposal over several buildings
STATUS_FIELD = "status"
NEW_LAYER = "new_buildings"
ROUND_LOG = "review_rounds.jsonl"
ACCEPT_COVER = 0.5  # an earlier answer carries over to a new proposal it covers half of
PathLike = Union[str, os.PathLike]


@dataclass
class ReviewCounts:
    """How many proposals carry each status."""

    proposed: int = 0
    accepted: int = 0
    rejected: int = 0
    several: int = 0


@dataclass
class RoundLabels:
    """The mask of the next round and what went into it."""

    mask: Path
    counts: ReviewCounts
    complete_areas: int
    yardstick: Yardstick  # the held-out answers, left out of ``mask``


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


def write_polygons(geoms: list, srs: osr.SpatialReference, out_path: Path) -> Path:
    """Write polygons (in ``srs``) to a one-layer GeoPackage, atomically; returns its path."""
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


@dataclass
class Answers:
    """The answers of one reviewed layer in the raster's CRS: what trains, what is held out."""

    train: dict  # status -> polygons trained on (``proposed``: nobody answered)
    withheld: list  # held-out answered proposals: unknown in the labels
    complete: list  # complete areas minus their held-out parts
    yardstick: Yardstick


def _to_srs(geoms: list, src: osr.SpatialReference, dst: osr.SpatialReference) -> list:
    ct = transform(src, dst)
    if ct is not None:
        for g in geoms:
            g.Transform(ct)
    return geoms


def split_answers(raster: PathLike, new_buildings: PathLike, complete_area=None,
                  buildings=None, hold_out: bool = True) -> Answers:
    """Read the answers and complete areas into the raster's CRS and split them by the fixed
    held-out lattice (``ml_core.review.yardstick``; nothing held out without ``hold_out``).
    Accepted and rejected proposals can be held out; "several buildings" and unanswered ones
    never are (they are unknown anyway). ``buildings``: the mapped buildings, the true
    buildings inside held-out complete areas."""
    ds = gdalio.open_raster(raster)
    srs, lattice = srs_of(ds), Lattice.of_raster(ds)
    yard = Yardstick(srs)
    train, withheld = {}, []
    for status in STATUSES:
        geoms, layer_srs = status_polygons(new_buildings, status)
        geoms = _to_srs(geoms, layer_srs, srs)
        held = [hold_out and status in (ACCEPTED, REJECTED) and lattice.holds(g) for g in geoms]
        train[status] = [g for g, h in zip(geoms, held) if not h]
        kept = [g for g, h in zip(geoms, held) if h]
        withheld += kept
        yard.region += kept
        yard.counts[status] = len(kept)
        if status == ACCEPTED:
            yard.buildings += kept
    complete, held_parts = [], []
    for g in (g for p in as_list(complete_area) for g in read_polygons(p, srs,
                                                                        "complete-area").geoms):
        part = lattice.held_part(g) if hold_out else None
        rest = g.Difference(part) if part is not None else g
        held_parts += [part] if part is not None else []
        complete += [rest] if not rest.IsEmpty() and rest.GetArea() > 0 else []
    if held_parts:
        index = BoxIndex(held_parts)
        yard.buildings += [g for p in as_list(buildings)
                           for g in read_polygons(p, srs, "buildings").geoms
                           if index.meets(g.PointOnSurface())]
        yard.region += held_parts
    yard.counts["complete_areas"] = len(held_parts)
    return Answers(train, withheld, complete, yard)


def _mark_unknown(mask_path: Path, geoms: list, srs: osr.SpatialReference) -> None:
    """Set the pixels under ``geoms`` that are not building to unknown, strip by strip."""
    ds = gdal.Open(str(mask_path), gdal.GA_Update)
    _src, layer = memory_layer(geoms, srs)
    band = ds.GetRasterBand(1)
    width, height = ds.RasterXSize, ds.RasterYSize
    rows = gdalio.strip_rows(width)
    for y0 in range(0, height, rows):
        h = min(rows, height - y0)
        mask = band.ReadAsArray(0, y0, width, h)
        hit = (burn(layer, ds, 0, y0, width, h) > 0) & ~is_building(mask)
        if hit.any():
            mask[hit] = UNKNOWN
            band.WriteArray(mask, 0, y0)
    ds.FlushCache()
    ds = band = None


def round_labels(raster: PathLike, buildings, new_buildings: PathLike, out_path: PathLike,
                 complete_area=None, options: Optional[RasterizeOptions] = None,
                 unanswered_unknown: bool = True, hold_out: bool = True,
                 progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> RoundLabels:
    """Rasterise the next round's mask from the review answers.

    ``buildings`` (path(s)) and accepted proposals are buildings. Rejected proposals are
    background, minus any labelled building they touch, so a rejection never erases a mapped
    building. ``complete_area`` polygons are the rasteriser's complete areas (unlabelled =
    background inside, nothing changed outside). With ``unanswered_unknown``, proposals still
    ``proposed`` are unknown outside complete areas: the model calls them buildings and nobody
    has said otherwise, so labelling them background would teach it to miss exactly the
    unmapped buildings (missing labels must stay unknown, never background: the premise of
    the partial masks). "Several buildings" proposals are unknown, and so
    are the held-out answers (``hold_out``: returned as the round's yardstick). Side files go
    beside ``out_path`` (``*.accepted.gpkg``, ``*.rejected.gpkg``, ``*.complete.gpkg``).
    """
    out_path = check_writable(out_path)
    counts = count_statuses(new_buildings)
    answers = split_answers(raster, new_buildings, complete_area, buildings, hold_out)
    srs = answers.yardstick.srs
    stem = out_path.with_suffix("")
    labelled = as_list(buildings)
    if answers.train[ACCEPTED]:
        labelled.append(write_polygons(answers.train[ACCEPTED], srs,
                                        Path(f"{stem}.accepted.gpkg")))
    rejected = answers.train[REJECTED]
    if rejected:
        mapped = [g for p in labelled for g in read_polygons(p, srs, "buildings").geoms]
        rejected = _minus(rejected, mapped)
    background = write_polygons(rejected, srs, Path(f"{stem}.rejected.gpkg")) \
        if rejected else None
    complete = write_polygons(answers.complete, srs, Path(f"{stem}.complete.gpkg")) \
        if answers.complete else None
    unanswered = _minus(answers.train[PROPOSED], answers.complete) if unanswered_unknown else []
    unknown = unanswered + answers.train[SEVERAL] + answers.withheld
    with atomic_output(out_path) as tmp:
        rasterize_labels(raster, labelled, tmp, options, complete_area=complete,
                         background=background, progress=progress, cancel=cancel)
        if unknown:
            _mark_unknown(tmp, unknown, srs)
    n_complete = sum(len(read_polygons(p, what="complete-area").geoms)
                     for p in as_list(complete_area))
    return RoundLabels(out_path, counts, n_complete, answers.yardstick)


FULL_PREDICTION_PX = 4_000_000  # rasters up to this size are predicted whole when measured
AOI_PAD_M = 15.0  # otherwise: only around the held-out answers, this far out


def scored_polygons(path: PathLike, srs: osr.SpatialReference, layer_name: str) -> tuple:
    """Polygons (in ``srs``), feature ids and scores of one layer of bfe's extraction."""
    src, layer = open_layer(path, prefer=layer_name)
    ct = transform(srs_of(layer), srs)
    geoms, fids, scores = [], [], []
    for feat, g in feature_polygons(layer, ct):
        if g is None:
            continue
        geoms.append(g)
        fids.append(feat.GetFID())
        scores.append(feat.GetField("score") or 0.0)
    del src
    return geoms, fids, np.asarray(scores, float)


def measure(raster: PathLike, model: PathLike, yardstick: Yardstick, buildings, work: Path,
            job: Optional[JobSpec] = None, bands: Optional[list] = None,
            cancel: Optional[CancelToken] = None,
            whole_up_to_px: int = FULL_PREDICTION_PX) -> Optional[dict]:
    """Object F1 of ``model``'s footprints on the held-out answers, extracted as the dock does
    (``job``'s predict and extract options, the mapped ``buildings`` as existing); None without
    held-out answers. Rasters up to ``whole_up_to_px`` pixels are predicted whole, so the
    figures are those of the next extraction; larger ones only around the held-out answers."""
    from ml_core.infer.extract import extract_footprints, probability_threshold
    from ml_core.infer.predict import predict_raster

    if not yardstick:
        return None
    work.mkdir(parents=True, exist_ok=True)
    ds = gdalio.open_raster(raster)
    aoi = None
    if ds.RasterXSize * ds.RasterYSize > whole_up_to_px:
        pad = AOI_PAD_M * abs(ds.GetGeoTransform()[1]) / gdalio.pixel_size_m(ds)
        aoi = write_polygons([g.Buffer(pad) for g in yardstick.region], yardstick.srs,
                              work / "aoi.gpkg")
    job = job or JobSpec()
    prob = predict_raster(raster, model, work / "probability.tif", job.predict, bands=bands,
                          aoi=aoi, cancel=cancel)
    out = extract_footprints(prob, work / "footprints.gpkg", job.extract, existing=buildings,
                             cancel=cancel).path
    geoms, _fids, scores = scored_polygons(out, yardstick.srs, "footprints")
    threshold = probability_threshold(gdal.Open(str(prob)), job.extract)
    return {**yardstick.score(geoms, scores), "threshold": threshold}


def _copy_model(source: PathLike, target: PathLike) -> None:
    """Put the weights and card of model ``source`` under the name ``target`` (atomically)."""
    from ml_core.learn.modelfile import card_path

    for src, dst in ((Path(source).with_suffix(".safetensors"), Path(target)),
                     (card_path(source), card_path(target))):
        with atomic_output(dst) as tmp:
            shutil.copyfile(src, tmp)


def weights_digest(model: PathLike) -> str:
    """SHA-256 of a model's tensors (names, dtypes, shapes, values), not of the file bytes."""
    from safetensors.numpy import load_file

    digest = hashlib.sha256()
    for name, array in sorted(load_file(str(Path(model).with_suffix(".safetensors"))).items()):
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


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
              out_model: PathLike, job: Optional[JobSpec] = None, complete_area=None,
              bands: Optional[list] = None, unanswered_unknown: bool = True,
              progress: Optional[ProgressCallback] = None,
              cancel: Optional[CancelToken] = None,
              whole_up_to_px: int = FULL_PREDICTION_PX) -> RoundResult:
    """One review round: build the labels, fine-tune from ``current_model``, measure the model
    before and after on the held-out answers (:func:`measure`), log the round.

    ``job`` is used as given; the default, and what front ends pass, is
    ``JobSpec.for_review_round()``: ``ignore_confident`` off and ``keep_start`` on (why: its
    docstring). When the retrained model does not beat the current one on the training's
    held-out blocks, or scores a lower F1 or precision than it on the held-out answers (then
    logged as ``discarded``: the mapper never gets a round that proposes worse), the round
    keeps the current model; the log then says the model did not change (``model_changed``,
    from the tensors' digest) rather than report a gain. The answers still count: the next
    extraction carries them over (``carry_decisions``). The log entry records both settings.
    """
    from ml_core.learn.modelfile import read_card  # torch: imported only when a round really runs
    from ml_core.learn.train import finetune

    job = job or JobSpec().for_review_round()
    out_model = Path(out_model).with_suffix(".safetensors")
    check_writable(out_model)
    labels = round_labels(raster, buildings, new_buildings,
                          out_model.with_name(out_model.stem + ".labels.tif"), complete_area,
                          job.rasterize, unanswered_unknown, progress=progress, cancel=cancel)
    emit(progress, ProgressEvent("rasterize", 1.0, f"round labels: {labels.counts.accepted} "
                                 f"accepted, {labels.counts.rejected} rejected"))
    work = out_model.with_name(out_model.stem + ".yardstick")
    if labels.yardstick:
        emit(progress, ProgressEvent("predict", 0.0, "measuring the current model on the "
                                     "held-out answers"))
    before = measure(raster, current_model, labels.yardstick, buildings, work / "before", job,
                     bands, cancel, whole_up_to_px)
    if not read_round_log(current_model):  # round 0: the model the loop starts from
        log_round(out_model, {"model": str(current_model), "labels_added": 0,
                              "labels_rejected": 0, "yardstick_after": before,
                              "val_dice": read_card(current_model).metrics.get("val_dice")})
    result = finetune(raster, None, out_model, job.train, base=current_model, bands=bands,
                      mask=labels.mask, progress=progress, cancel=cancel,
                      rasterize=job.rasterize, loss_options=job.loss)
    emit(progress, ProgressEvent("predict", 0.0, "measuring the round on the held-out answers"))
    after = measure(raster, result.model_path, labels.yardstick, buildings, work / "after", job,
                    bands, cancel, whole_up_to_px)
    discarded = None
    if before and after and (after["f1"] < before["f1"] or
                             after["precision"] < before["precision"]):
        _copy_model(current_model, result.model_path)
        discarded, after = after, before
    entry = log_round(out_model, previous=current_model, entry={
        "model": str(result.model_path), "base": str(current_model),
        "labels_added": labels.counts.accepted, "labels_rejected": labels.counts.rejected,
        "several": labels.counts.several, "still_proposed": labels.counts.proposed,
        "complete_areas": labels.complete_areas, "held_out": labels.yardstick.counts,
        "yardstick_before": before, "yardstick_after": after, "discarded": discarded,
        "model_changed": weights_digest(current_model) != weights_digest(result.model_path),
        "val_dice": result.best_val_dice,
        "threshold": after["threshold"] if after else result.threshold,
        "epochs": result.epochs_run, "stopped": result.stopped, "seconds": result.seconds,
        "ignore_confident": job.train.ignore_confident, "keep_start": job.train.keep_start})
    return RoundResult(labels, result, entry)


_FIGURES = (("f1", "F1"), ("precision", "precision"), ("recall", "recall"))


def describe_round(entry: dict) -> str:
    """A plain sentence on a logged round for the mapper: what the fixed yardstick measured
    before and after it, and whether the model changed at all (then no gain is claimed)."""
    head = f"Round {entry['round']}: "
    if entry.get("discarded"):
        lost = entry["discarded"]
        head += (f"the retrained model scored lower on the held-out answers (F1 "
                 f"{lost['f1']:.2f}, precision {lost['precision']:.2f}), so the round keeps "
                 "the current one; ")
    elif not entry.get("model_changed", True):
        head += ("the model's weights did not change (no epoch beat the current one on the "
                 "held-out blocks); ")
    before, after = (f if f and f["n_pred"] + f["n_truth"] else None  # judged nothing
                     for f in (entry.get("yardstick_before"), entry.get("yardstick_after")))
    if before and after and not entry.get("model_changed", True) and \
            round(before["threshold"], 2) != round(after["threshold"], 2):
        head += f"only its threshold did ({before['threshold']:.2f} → {after['threshold']:.2f}); "
    if not before or not after:
        return head + ("no held-out answers to measure it yet (the answers in one block in "
                       "three, by place, are kept aside for that): review more proposals.")
    held = entry["held_out"]
    what = (f"proposals on {held[ACCEPTED] + held[REJECTED]} held-out answers"
            + (f" and {held['complete_areas']} complete-area part(s)"
               if held["complete_areas"] else ""))
    if all(round(before[k], 2) == round(after[k], 2) for k, _ in _FIGURES):
        return head + f"{what}: F1 {after['f1']:.2f} (precision {after['precision']:.2f}), " \
            "no change."
    figures = ", ".join(f"{name} {before[k]:.2f} → {after[k]:.2f}" for k, name in _FIGURES)
    return head + f"{what}: {figures}."


def review_order(scores: np.ndarray, order: str = "score", centre: float = DEFAULT_THRESHOLD
                 ) -> np.ndarray:
    """Indices of proposals in review order: ``score`` (highest first) or ``uncertainty``
    (closest to ``centre``, the model's threshold, first). Stable, so ties keep the layer's
    order."""
    if order == "score":
        return np.argsort(-scores, kind="stable")
    if order == "uncertainty":
        return np.argsort(np.abs(scores - centre), kind="stable")
    raise InputError(f"Unknown review order {order!r}; choose 'score' or 'uncertainty'.")


def _proposals(new_buildings: PathLike) -> tuple[PolygonSet, list[int], np.ndarray]:
    """The proposals' polygons, feature ids and scores, in layer order."""
    src, layer = open_layer(new_buildings, prefer=NEW_LAYER)
    srs = srs_of(layer)
    del src
    geoms, fids, scores = scored_polygons(new_buildings, srs, NEW_LAYER)
    return PolygonSet(geoms, srs, str(new_buildings)), fids, scores


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
                    order: str = "score", iou_min: float = IOU_MIN) -> ReviewCounts:
    """Play a ground-truth reviewer on up to ``n`` proposals and write the reviewed layer.

    Proposals are scored one to one against the true buildings (``evaluate.matching``), as a
    mapper adds buildings one at a time. In review ``order`` (default ``score``, the panel's),
    a proposal covering half of each of several true buildings is answered "several
    buildings" (even when it also matches one), one matched to a true building at IoU >=
    ``iou_min`` is accepted, one that touches no true building is rejected, and any other (a
    blob straddling a building and its yard, an outline too far off) is skipped, as a careful
    mapper would rather than label half a yard as building or half a building as background;
    skips do not count as decisions. Writes ``out_path`` (layer ``new_buildings``) with
    ``status`` set; ``new_buildings`` is not modified.
    """
    check_writable(out_path)
    props, fids, scores = _proposals(new_buildings)
    truth_set = read_polygons(truth, props.srs, "truth buildings", "buildings")
    order_idx = review_order(scores, order)
    ordered = [props.geoms[i] for i in order_idx]
    matching = match_polygons(ordered, truth_set.geoms, area_meter(props, truth_set), iou_min)
    touches = BoxIndex(truth_set.geoms).cover_fraction(ordered) > 0
    answer = np.where(matching.merged, SEVERAL, np.where(matching.pred_match >= 0, ACCEPTED,
                                                         np.where(touches, "", REJECTED)))
    decided = np.flatnonzero(answer != "")[:n]  # "": skipped
    decisions = {fids[order_idx[k]]: str(answer[k]) for k in decided}
    with atomic_output(out_path) as tmp:
        gdal.VectorTranslate(str(tmp), split_layer_name(new_buildings)[0], format="GPKG",
                             layers=[NEW_LAYER], layerName=NEW_LAYER, options=["-preserve_fid"])
        set_statuses(tmp, decisions)
    answers = list(decisions.values())
    return ReviewCounts(len(fids) - len(answers), answers.count(ACCEPTED),
                        answers.count(REJECTED), answers.count(SEVERAL))


def set_statuses(new_buildings: PathLike, decisions: dict) -> None:
    """Write ``{fid: status}`` into the ``status`` field of a new-buildings GeoPackage."""
    bad = set(decisions.values()) - set(STATUSES)
    if bad:
        raise InputError(f"Unknown review status {sorted(bad)}; use one of {STATUSES}.")
    src = ogr.Open(split_layer_name(new_buildings)[0], update=1)
    layer = src.GetLayerByName(NEW_LAYER)
    layer.StartTransaction()
    for fid, status in decisions.items():
        feat = layer.GetFeature(int(fid))
        feat.SetField(STATUS_FIELD, status)
        layer.SetFeature(feat)
    layer.CommitTransaction()
    src = None

