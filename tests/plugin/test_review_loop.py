"""The annotation loop in QGIS on a small real crop: extract, review (accept two, reject one),
copy into the user's layer, fine-tune again, and check the second round's labels."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from osgeo import gdal, ogr
from qgis.core import (
    QgsApplication,
    QgsFeature,
    QgsGeometry,
    QgsProject,
    QgsVectorLayer,
)
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QApplication, QPushButton

from .conftest import engine_ready, wait_for

TINY = dict(epochs=1, steps_per_epoch=2, batch_size=2, crop_size=64, device="cpu", width=4,
            depth=2, patience=1)


def disk_content(path: Path) -> tuple[int, str]:
    """(feature count, checksum of every fid, geometry and attribute) as OGR reads the file.

    Not a checksum of the bytes: opening a GeoPackage for editing updates its SQLite header
    without changing any feature."""
    src = ogr.Open(str(path))
    layer = src.GetLayer(0)
    h = hashlib.sha256()
    for f in layer:
        h.update(repr((f.GetFID(), f.GetGeometryRef().ExportToWkb(), f.items())).encode())
    return layer.GetFeatureCount(), h.hexdigest()


def run_task(task) -> object:
    """Run a bfe CoreTask in the task manager; return its result (fails on its error)."""
    QgsApplication.taskManager().addTask(task)
    wait_for(lambda: task.result is not None or task.error is not None, timeout=300)
    wait_for(lambda: not QgsApplication.taskManager().activeTasks())
    assert task.error is None, task.details
    return task.result


def pixels(grid: Path, wkts: list, srs) -> np.ndarray:
    """Boolean mask of ``wkts`` (in ``srs``) on the grid of raster ``grid``."""
    from ml_core.io.grid import burn
    from ml_core.io.vector import memory_layer

    ds = gdal.Open(str(grid))
    _src, layer = memory_layer([ogr.CreateGeometryFromWkt(w) for w in wkts], srs)
    return burn(layer, ds, 0, 0, ds.RasterXSize, ds.RasterYSize) > 0


@pytest.fixture
def user_layer(sample_crop, tmp_path, qgis_new_project) -> tuple[QgsVectorLayer, Path]:
    """The user's building layer: half of the crop's OSM buildings (the rest are 'unmapped')."""
    from ml_core.labels.rasterize import drop_buildings

    drop = drop_buildings(sample_crop[1], 0.5, 0, tmp_path / "drop.gpkg")
    path = tmp_path / "my_buildings.gpkg"
    gdal.VectorTranslate(str(path), str(drop.path), layers=["buildings"], layerName="buildings")
    layer = QgsVectorLayer(f"{path}|layername=buildings", "my buildings", "ogr")
    QgsProject.instance().addMapLayer(layer)
    yield layer, path
    QgsProject.instance().removeAllMapLayers()


@pytest.fixture
def model(tmp_path) -> Path:
    """The shipped base model, else a tiny one trained for two steps."""
    engine_ready("ml_core.learn.train", "ml_core.infer.predict", "ml_core.infer.extract")
    from ml_core.config import TrainOptions
    from ml_core.learn.train import DEFAULT_BASE, finetune

    if DEFAULT_BASE.exists():
        return DEFAULT_BASE
    from .conftest import SAMPLE_BUILDINGS, SAMPLE_RASTER

    return finetune(SAMPLE_RASTER, SAMPLE_BUILDINGS, tmp_path / "tiny.safetensors",
                    TrainOptions(**TINY), base=None).model_path


def extract(raster: Path, model: Path, existing: Path, folder: Path,
            previous: Optional[str] = None) -> QgsVectorLayer:
    """Step 1: extraction as the dock runs it (ExtractTask); the new-buildings layer."""
    from bfe_plugin.tasks import ExtractJob, ExtractTask
    from ml_core.config import ExtractOptions, PredictOptions

    job = ExtractJob(str(raster), str(model), folder / "probability.tif",
                     folder / "footprints.gpkg", PredictOptions(device="cpu"),
                     ExtractOptions(threshold=0.4), existing=str(existing), previous=previous)
    run_task(ExtractTask(job, lambda _r: None, lambda *_e: None))
    layer = QgsVectorLayer(f"{job.footprints}|layername=new_buildings", "new buildings", "ogr")
    QgsProject.instance().addMapLayer(layer)
    assert layer.featureCount() >= 3, "the crop should give at least three proposals"
    return layer


def test_full_review_round(sample_crop, user_layer, model, qgis_canvas, tmp_path):
    from bfe_plugin.review.panel import ReviewPanel
    from bfe_plugin.review.refine_task import RefineTask, round_job
    from ml_core.config import JobSpec, TrainOptions
    from ml_core.io.vector import srs_of
    from ml_core.labels.rasterize import read_mask
    from ml_core.review.loop import read_round_log

    raster = sample_crop[0]
    mine, mine_path = user_layer
    before_count, on_disk = mine.featureCount(), disk_content(mine_path)
    new = extract(raster, model, mine_path, tmp_path)

    # 2. review: accept two proposals (A key), reject one (panel), copy into the user's layer
    panel = ReviewPanel(qgis_canvas)
    panel.show()
    panel.set_layer(new)
    by_score = sorted(new.getFeatures(), key=lambda f: -f["score"])
    assert panel.current == by_score[0].id()
    QApplication.setActiveWindow(panel)
    panel.setFocus()
    accepted = [panel.current]
    QTest.keyClick(panel, Qt.Key_A)
    assert panel.current != accepted[0], "the A key accepts and moves on"
    accepted.append(panel.current)
    panel.shortcuts["A"].activated.emit()
    rejected = panel.current
    panel.reject()
    assert [new.getFeature(f)["status"] for f in [*accepted, rejected]] == \
        ["accepted", "accepted", "rejected"]
    panel.target.setLayer(mine)
    assert panel.copy_accepted() == 2
    assert panel.copy_accepted() == 0  # copied once only

    # 3. fine-tune again from the current model, as a task
    folder = tmp_path / "round1"
    folder.mkdir()
    # the original OSM buildings are the saved file; the accepted ones come from the review
    job = round_job(str(raster), str(mine_path), new, panel.complete_layer(), str(model),
                    folder, JobSpec(train=TrainOptions(**TINY)))
    assert job.spec.train.ignore_confident is None and job.spec.train.keep_start  # the round's
    result = run_task(RefineTask(job, lambda _r: None, lambda *_e: None))
    assert result.train.model_path.exists()
    logged = read_round_log(result.train.model_path)[-1]
    assert logged["labels_added"] == 2
    assert (logged["ignore_confident"], logged["keep_start"]) == (None, True)

    # 4. the second round's mask: accepted polygons are buildings, the rejected one background;
    # answers whose centre lies in a held-out block are not trained on (unknown): the yardstick
    from ml_core.labels.classes import UNKNOWN, is_building
    from ml_core.review.yardstick import Lattice

    mask = read_mask(result.labels.mask)
    lattice = Lattice.of_raster(gdal.Open(str(raster)))
    srs = srs_of(new.crs().toWkt())
    mapped_px = pixels(result.labels.mask, [f.geometry().asWkt() for f in mine.getFeatures()],
                       srs_of(mine.crs().toWkt()))
    checked = 0
    for fid, trained in ([(f, is_building) for f in accepted] +
                         [(rejected, lambda m: m == 0)]):
        wkt = new.getFeature(fid).geometry().asWkt()
        px = pixels(result.labels.mask, [wkt], srs) & ~mapped_px
        checked += px.sum()
        if lattice.holds(ogr.CreateGeometryFromWkt(wkt)):
            assert (mask[px] == UNKNOWN).all()
        else:
            assert trained(mask[px]).all()
    assert checked > 40

    # 5. the user's layer: in edit mode with the additions, not saved by bfe; undo removes them
    assert mine.isEditable()
    assert mine.featureCount() == before_count + 2
    assert mine.isModified() and disk_content(mine_path) == on_disk
    mine.undoStack().undo()
    assert mine.featureCount() == before_count
    mine.rollBack()


def test_extracting_again_carries_the_answers_over(sample_crop, user_layer, model, qgis_canvas,
                                                   tmp_path):
    from bfe_plugin.review.panel import ReviewPanel

    raster, (_mine, mine_path) = sample_crop[0], user_layer
    first = tmp_path / "first"
    first.mkdir()
    new = extract(raster, model, mine_path, first)
    panel = ReviewPanel(qgis_canvas)
    panel.set_layer(new)
    assert panel.answers_file(tmp_path) is None  # nothing answered yet: nothing to carry
    accepted = panel.current
    panel.accept()
    rejected = panel.current
    panel.reject()
    answers = panel.answers_file(tmp_path)
    again = tmp_path / "again"
    again.mkdir()
    # the same model and buildings give the same proposals; the answers come with them
    renewed = extract(raster, model, mine_path, again, previous=answers)
    status = {f.geometry().asWkt(0): f["status"] for f in renewed.getFeatures()}
    assert status[new.getFeature(accepted).geometry().asWkt(0)] == "accepted"
    assert status[new.getFeature(rejected).geometry().asWkt(0)] == "rejected"
    assert sorted(status.values()).count("proposed") == renewed.featureCount() - 2


@pytest.fixture
def proposals(qgis_new_project) -> QgsVectorLayer:
    """A memory new-buildings layer of four squares with scores 0.9, 0.7, 0.5, 0.3."""
    layer = QgsVectorLayer("Polygon?crs=EPSG:3857&field=score:double&field=status:string",
                           "new buildings", "memory")
    features = []
    for i, score in enumerate((0.3, 0.9, 0.5, 0.7)):
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromRect(
            QgsGeometry.fromWkt(f"POINT({i * 20} 0)").buffer(5, 1).boundingBox()))
        f.setAttributes([score, "proposed"])
        features.append(f)
    layer.dataProvider().addFeatures(features)
    QgsProject.instance().addMapLayer(layer)
    yield layer
    QgsProject.instance().removeAllMapLayers()


def test_panel_order_skip_and_bulk_actions(proposals, qgis_canvas):
    from bfe_plugin.review.panel import ReviewPanel

    panel = ReviewPanel(qgis_canvas)
    assert not panel.map_shortcuts["A"].isEnabled()  # no review yet: the keys stay QGIS's
    panel.set_layer(proposals, threshold=0.65)
    assert panel.map_shortcuts["A"].isEnabled() and "Space" not in panel.map_shortcuts
    scores = [proposals.getFeature(f)["score"] for f in panel.order]
    assert scores == [0.9, 0.7, 0.5, 0.3]
    first = panel.current
    panel.shortcuts["Space"].activated.emit()
    panel.map_shortcuts["S"].activated.emit()  # the same key over the map canvas
    assert proposals.getFeature(panel.current)["score"] == 0.5
    assert proposals.getFeature(first)["status"] == "proposed"  # skipping decides nothing
    box = proposals.getFeature(panel.current).geometry().boundingBox()  # 10 m x 10 m
    assert qgis_canvas.extent().contains(box)
    assert qgis_canvas.scale() >= 500 * 0.99  # context: never closer than 1:500
    assert qgis_canvas.extent().center().distance(box.center()) < 0.01  # centred
    assert qgis_canvas.extent().width() >= 3 * box.width() * 0.99
    panel.order_by.setCurrentIndex(panel.order_by.findData("uncertainty"))
    # centred on the model's threshold (0.65), not on 0.5
    assert [proposals.getFeature(f)["score"] for f in panel.order] == [0.7, 0.5, 0.9, 0.3]
    assert "0.65" in panel.order_by.currentText()
    panel.order_by.setCurrentIndex(panel.order_by.findData("score"))
    messages: list = []
    panel.message.connect(messages.append)
    assert panel.accept_above() == 0  # no answers yet: a raw score alone is not trusted
    assert "Nothing accepted" in messages[-1]
    # the last round's held-out answers: 5 of 5 right at 0.8-0.9 and above, 1 of 5 at 0.6-0.7
    panel.calibration = [[0.6, 0.7, 5, 1], [0.8, 0.9, 3, 3], [0.9, 1.0, 2, 2]]
    panel.min_score.setValue(0.9)
    assert panel.accept_above() == 1  # only the 0.9 proposal, not the 0.7 one
    assert "0.80" in messages[-1]
    panel.map_shortcuts["M"].activated.emit()  # the current one (0.7): several buildings
    proposals.selectByIds([panel.order[2], panel.order[3]])
    assert panel.reject_selected() == 2
    statuses = [proposals.getFeature(f)["status"] for f in panel.order]
    assert statuses == ["accepted", "several", "rejected", "rejected"]
    panel.set_busy(True)  # a round runs: no decision, no key, no second round
    assert not panel.map_shortcuts["A"].isEnabled()
    assert not any(b.isEnabled() for b in panel.findChildren(QPushButton)
                   if b.text() in ("Accept (A)", "Reject (R)", "Fine-tune again"))
    panel.reject()
    assert proposals.getFeature(panel.order[0])["status"] == "accepted"
    panel.set_busy(False)
    assert not proposals.isEditable()  # bfe's own layer: decisions are committed
    errors: list = []
    panel.error.connect(errors.append)
    next(b for b in panel.findChildren(QPushButton) if b.text() == "Copy accepted").click()
    assert "Choose the building layer" in str(errors[0])  # no target: a message, no exception


def test_copy_into_a_scratch_layer_sets_source_and_reprojects(proposals, qgis_canvas):
    from bfe_plugin.review.accept import copy_features

    target = QgsVectorLayer("MultiPolygon?crs=EPSG:4326&field=source:string", "scratch",
                            "memory")
    ids = [f.id() for f in proposals.getFeatures()][:2]
    assert copy_features(proposals, target, ids) == 2
    assert target.isEditable()
    copied = list(target.getFeatures())
    assert {f["source"] for f in copied} == {"bfe"}
    assert all(abs(f.geometry().boundingBox().xMinimum()) < 0.01 for f in copied)  # degrees
    plain = QgsVectorLayer("Polygon?crs=EPSG:3857", "plain", "memory")
    assert copy_features(proposals, plain, ids, add_source_field=True) == 2
    assert plain.fields().indexOf("source") >= 0  # added in the edit buffer, undoable
    plain.undoStack().undo()
    assert plain.featureCount() == 0 and plain.fields().indexOf("source") < 0


def test_draw_a_complete_area(qgis_canvas, qgis_new_project):
    from bfe_plugin.review.complete_area import LAYER_NAME, CompleteAreaTool, complete_area_layer

    qgis_canvas.resize(200, 200)
    qgis_canvas.setExtent(QgsGeometry.fromWkt("POLYGON((0 0,100 0,100 100,0 100,0 0))")
                          .boundingBox())
    layer = complete_area_layer(qgis_canvas.mapSettings().destinationCrs())
    assert complete_area_layer(layer.crs()) is layer
    tool = CompleteAreaTool(qgis_canvas, layer)
    for x, y, button in ((20, 20, Qt.LeftButton), (150, 20, Qt.LeftButton),
                         (150, 150, Qt.LeftButton), (0, 0, Qt.RightButton)):
        tool.canvasReleaseEvent(QgsMapMouseEvent(qgis_canvas, QEvent.MouseButtonRelease,
                                                 QPoint(x, y), button))
    assert layer.name() == LAYER_NAME and layer.featureCount() == 1
    area = next(layer.getFeatures()).geometry()
    assert area.area() > 0 and area.contains(QgsGeometry.fromPointXY(
        tool.toMapCoordinates(QPoint(120, 40))))
    QgsProject.instance().removeAllMapLayers()


def test_the_panel_draws_complete_areas_in_the_bfe_group_and_releases_the_tool(
        proposals, qgis_canvas):
    from bfe_plugin.layers import result_group
    from bfe_plugin.review.complete_area import LAYER_NAME
    from bfe_plugin.review.panel import COMPLETE_TEXT, ReviewPanel

    group = result_group("crop")
    QgsProject.instance().layerTreeRoot().removeLayer(proposals)
    group.addLayer(proposals)
    panel = ReviewPanel(qgis_canvas)
    panel.set_layer(proposals)
    assert "nothing changes" in COMPLETE_TEXT  # the panel says what an area means
    qgis_canvas.resize(200, 200)
    qgis_canvas.setExtent(proposals.extent())
    panel.draw_complete_areas()
    assert qgis_canvas.mapTool() is panel.tool
    for x, y, button in ((20, 20, Qt.LeftButton), (150, 20, Qt.LeftButton),
                         (150, 150, Qt.LeftButton), (0, 0, Qt.RightButton)):
        panel.tool.canvasReleaseEvent(QgsMapMouseEvent(qgis_canvas, QEvent.MouseButtonRelease,
                                                       QPoint(x, y), button))
    assert qgis_canvas.mapTool() is not panel.tool  # released once the polygon closed
    layer = panel.complete_layer()
    assert layer.name() == LAYER_NAME and layer.featureCount() == 1
    assert group.findLayer(layer.id()) is not None  # inside the bfe group


def test_a_new_bfe_message_closes_the_old_ones(qgis_iface):
    from qgis.core import Qgis
    from qgis.gui import QgsMessageBar

    from bfe_plugin.messages import report_success

    bar = QgsMessageBar()
    bar.pushMessage("other plugin", "kept", Qgis.Info, 0)
    report_success(bar, "round 1 done")
    report_success(bar, "round 2 done")
    assert sorted(item.text() for item in bar.items()) == ["kept", "round 2 done"]


@pytest.mark.filterwarnings("ignore:QgsVectorLayer.splitFeatures")  # 3.22 binds only this one
def test_a_split_proposal_is_reviewed_as_its_parts_and_accept_moves_to_the_next(
        proposals, qgis_canvas):
    from qgis.core import QgsPointXY

    from bfe_plugin.review.panel import ReviewPanel

    panel = ReviewPanel(qgis_canvas)
    panel.set_layer(proposals)
    second = panel.order[1]
    panel.accept()
    assert panel.current == second  # the next one: the panel's own save does not reorder
    blob = proposals.getFeature(panel.order[2]).geometry().boundingBox()  # score 0.5, 10 x 10 m
    proposals.startEditing()  # as QGIS's Split Features tool does, with a line across it
    x = blob.center().x()
    assert proposals.splitFeatures([QgsPointXY(x, blob.yMinimum() - 1),
                                    QgsPointXY(x, blob.yMaximum() + 1)]) == 0
    panel.reject()  # a decision while the layer is being edited goes into its edits
    assert proposals.commitChanges()
    assert len(panel.order) == 5  # the two halves are reviewed, each with the blob's score
    halves = [f for f in proposals.getFeatures() if f["score"] == 0.5]
    assert len(halves) == 2 and {f["status"] for f in halves} == {"proposed"}
