"""A mapper's two review rounds through the dock, on the shipped sample (real imagery and OSM).

Half of the sample's buildings are the mapper's layer. Round 1: extract with the base model, a
ground-truth reviewer answers every proposal, a complete area is drawn over empty ground with
the panel's tool, and "Fine-tune again" runs (a second click starts nothing). Round 2: extract
again. The round is measured on the fixed yardstick (held-out answers), and the test measures
both extractions on that yardstick itself, from the files the dock wrote: the figures the dock
reports are the ones measured, and round 2 is at least as precise as round 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import ogr
from qgis.core import QgsApplication, QgsPointXY, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt
from qgis.PyQt.QtWidgets import QPushButton

from .conftest import SAMPLE_BUILDINGS, SAMPLE_RASTER, engine_ready, wait_for

EMPTY_M = ((25.0, 45.0), (20.0, 20.0), (12.0, 12.0))  # complete areas tried, largest first


def button(widget, text: str) -> QPushButton:
    return next(b for b in widget.findChildren(QPushButton) if b.text() == text)


def run_dock(dock, start) -> None:
    """Start a dock step and wait until the dock is idle again (fails on a reported error)."""
    start()
    assert dock.task is not None, "the step did not start"
    wait_for(lambda: dock.task is None, timeout=600)
    wait_for(lambda: not QgsApplication.taskManager().activeTasks())


def empty_box(raster: Path, truth: list):
    """The largest box of EMPTY_M metres (raster CRS) on the raster meeting no true building
    (the sample is a dense town: its empty ground is small)."""
    from osgeo import gdal

    from ml_core.io import raster as gdalio
    from ml_core.io.vector import BoxIndex, envelope_polygon

    ds = gdal.Open(str(raster))
    gt, px_m = ds.GetGeoTransform(), gdalio.pixel_size_m(ds)
    index = BoxIndex(truth)
    for size in EMPTY_M:
        w, h = (round(m / px_m) for m in size)
        for row in range(0, ds.RasterYSize - h, max(1, h // 4)):
            for col in range(0, ds.RasterXSize - w, max(1, w // 4)):
                x0, y0 = gt[0] + col * gt[1], gt[3] + row * gt[5]
                box = envelope_polygon((x0, x0 + w * gt[1], y0 + h * gt[5], y0))
                if not index.meets(box):
                    return box
    pytest.skip("no empty ground in the sample for a complete area")


def answer_all(panel, truth: list) -> dict:
    """A ground-truth reviewer: accept what true buildings cover half of, reject what touches
    none, flag a proposal covering two or more true buildings by half as several buildings."""
    from ml_core.io.vector import BoxIndex
    from ml_core.review.loop import ACCEPTED, REJECTED, SEVERAL

    layer = panel.layer
    index = BoxIndex(truth)
    decided: dict = {ACCEPTED: [], REJECTED: [], SEVERAL: []}
    for feature in layer.getFeatures():
        geom = ogr.CreateGeometryFromWkt(feature.geometry().asWkt())
        cover = index.cover_fraction([geom])[0]
        halves = sum(truth[j].Intersection(geom).GetArea() >= 0.5 * truth[j].GetArea()
                     for j in index.query(geom.GetEnvelope()))
        if halves >= 2:
            decided[SEVERAL].append(feature.id())
        elif cover >= 0.5:
            decided[ACCEPTED].append(feature.id())
        elif cover == 0:
            decided[REJECTED].append(feature.id())
    for status, fids in decided.items():
        panel.set_status(fids, status)
    return {k: len(v) for k, v in decided.items()}


def draw(panel, canvas, box) -> None:
    """Draw ``box`` (canvas CRS) with the panel's complete-area tool, by mouse events."""
    panel.draw_complete_areas()
    minx, maxx, miny, maxy = box.GetEnvelope()
    to_px = canvas.getCoordinateTransform()
    corners = [(minx, miny), (maxx, miny), (maxx, maxy), (minx, maxy)]
    tool = panel.tool
    for x, y in corners:
        p = to_px.transform(QgsPointXY(x, y))
        tool.canvasReleaseEvent(QgsMapMouseEvent(canvas, QEvent.MouseButtonRelease,
                                                 QPoint(round(p.x()), round(p.y())),
                                                 Qt.LeftButton))
    tool.canvasReleaseEvent(QgsMapMouseEvent(canvas, QEvent.MouseButtonRelease, QPoint(0, 0),
                                             Qt.RightButton))
    assert canvas.mapTool() is not tool, "the drawing tool is released once the area closes"


def footprints_of(layer: QgsVectorLayer) -> str:
    """The extraction GeoPackage behind a new-buildings layer."""
    return layer.source().split("|")[0]


@pytest.mark.skipif(not SAMPLE_RASTER.exists(), reason="the shipped sample (data/sample) is absent")
def test_two_review_rounds_with_a_complete_area(dock, qgis_iface, tmp_path):
    engine_ready("ml_core.learn.train", "ml_core.infer.predict", "ml_core.infer.extract")
    from ml_core.config import TrainOptions
    from ml_core.io.vector import read_polygons
    from ml_core.labels.classes import UNKNOWN
    from ml_core.labels.rasterize import drop_buildings, read_mask
    from ml_core.review.loop import read_round_log, round_labels, scored_polygons, split_answers

    drop = drop_buildings(SAMPLE_BUILDINGS, 0.5, 0, tmp_path / "drop.gpkg")
    raster = QgsRasterLayer(str(SAMPLE_RASTER), "sample")
    mine = QgsVectorLayer(f"{drop.path}|layername=buildings", "my buildings", "ogr")
    QgsProject.instance().addMapLayers([raster, mine])
    canvas = qgis_iface.mapCanvas()
    canvas.resize(800, 800)
    canvas.setDestinationCrs(raster.crs())
    canvas.setExtent(raster.extent())
    dock.inputs.raster_combo.setLayer(raster)
    dock.inputs.buildings_combo.setLayer(mine)
    dock.train_form.set_options(TrainOptions(epochs=1, steps_per_epoch=2, batch_size=2,
                                             crop_size=128, patience=1, device="cpu"))
    truth = read_polygons(SAMPLE_BUILDINGS, raster.crs().toWkt(), "truth").geoms

    # round 1: the base model's proposals, every one answered; a complete area on empty ground
    run_dock(dock, dock.start_extract)
    panel = dock.review
    first = panel.layer
    assert not dock.review_box.isCollapsed()  # the dock moved on to the review
    answers = answer_all(panel, truth)
    assert answers["accepted"] >= 3 and answers["rejected"] >= 1, answers
    empty = empty_box(SAMPLE_RASTER, truth)
    draw(panel, canvas, empty)
    assert panel.complete_layer().featureCount() == 1

    # fine-tune again; a second click, or a second call, starts nothing
    refine = button(panel, "Fine-tune again")
    refine.click()
    task = dock.task
    assert task is not None and task.description().startswith("bfe: fine-tune again")
    assert not refine.isEnabled() and not button(panel, "Accept (A)").isEnabled()
    refine.click()
    dock.start_refine()
    assert dock.task is task
    assert len([t for t in QgsApplication.taskManager().activeTasks()
                if t.description().startswith("bfe:")]) <= 1
    wait_for(lambda: dock.task is None, timeout=600)
    wait_for(lambda: not QgsApplication.taskManager().activeTasks())
    assert task.error is None, task.details
    entry = read_round_log(task.out_model)[-1]
    before, after = entry["yardstick_before"], entry["yardstick_after"]
    assert before is not None and after is not None, "some answers must be held out"
    told = panel.status.text()  # what the dock told the mapper
    assert f"{after['f1']:.2f}" in told and f"{after['precision']:.2f}" in told

    # the round's labels: the complete area added background and removed nothing outside it
    job = task.job
    mask = read_mask(task.out_model.with_name(task.out_model.stem + ".labels.tif"))
    plain = read_mask(round_labels(job.raster, job.buildings, job.new_buildings,
                                   tmp_path / "plain.tif", None, job.spec.rasterize).mask)
    changed = mask != plain
    assert (plain[changed] == UNKNOWN).all() and (mask[changed] == 0).all()
    assert (mask == 0).mean() >= (plain == 0).mean() > 0.3  # known background is kept

    # round 2: extract again with the round's model
    run_dock(dock, dock.start_extract)
    second = panel.layer
    assert second is not first and second.isValid()

    # the yardstick, rebuilt from the files the round read, measures both extractions
    yard = split_answers(job.raster, job.new_buildings, job.complete_area, job.buildings).yardstick
    assert yard.counts == entry["held_out"]
    measured = [yard.score(*scored_polygons(footprints_of(layer), yard.srs, "footprints")[::2])
                for layer in (first, second)]
    for logged, own in zip((before, after), measured):
        for key in ("precision", "recall", "f1", "matched", "n_pred", "n_truth"):
            assert logged[key] == pytest.approx(own[key]), key
    assert measured[1]["precision"] >= measured[0]["precision"]
    assert measured[1]["f1"] >= measured[0]["f1"]
    if not entry["model_changed"]:
        assert "did not change" in told or "keeps the current" in told
    assert np.isfinite(after["f1"])
    QgsProject.instance().removeAllMapLayers()
