"""The dock on a small real crop: layer filters, rasterise, fine-tune and extract as real tasks."""

from __future__ import annotations

import sys
import threading
import time
import weakref

import pytest
from qgis.core import (
    Qgis,
    QgsFeature,
    QgsGeometry,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import Qt, QTimer

from bfe_plugin.layers import SEPARATOR

from .conftest import engine_ready, wait_for


def _select(dock, raster, buildings) -> None:
    dock.inputs.raster_combo.setLayer(raster)
    dock.inputs.buildings_combo.setLayer(buildings)


def _quick_training(dock) -> None:
    form = dock.train_form
    form.set_options(form.options_cls(epochs=1, steps_per_epoch=2, batch_size=2, crop_size=64,
                                      device="cpu", width=8, depth=2, patience=1))


def _group_layers(raster_name: str) -> dict:
    group = QgsProject.instance().layerTreeRoot().findGroup(f"bfe: {raster_name}")
    return {} if group is None else {n.layer().name().split(SEPARATOR)[0]: n.layer()
                                     for n in group.findLayers()}


def test_combos_filter_layer_types(dock, layers):
    points = QgsVectorLayer("Point?crs=EPSG:4326", "points", "memory")
    QgsProject.instance().addMapLayer(points)
    raster_names = {dock.inputs.raster_combo.itemText(i)
                    for i in range(dock.inputs.raster_combo.count())}
    building_names = {dock.inputs.buildings_combo.itemText(i)
                      for i in range(dock.inputs.buildings_combo.count())}
    assert raster_names == {"crop"}
    assert building_names == {"buildings"}


def test_rasterise_adds_mask_with_raster_extent_and_crs(dock, layers):
    raster, buildings = layers
    _select(dock, raster, buildings)
    dock.rasterize_button.click()
    wait_for(lambda: dock.task is None)
    mask = _group_layers("crop").get("labels (partial mask)")
    assert isinstance(mask, QgsRasterLayer), dock.iface.messageBar().get_messages(Qgis.Warning)
    assert mask.crs() == raster.crs()
    assert mask.extent() == raster.extent()
    assert (mask.width(), mask.height()) == (raster.width(), raster.height())


def test_bad_input_shows_a_message_and_adds_no_layer(dock, layers):
    raster, _ = layers
    empty = QgsVectorLayer("Polygon?crs=EPSG:4326", "empty", "memory")
    QgsProject.instance().addMapLayer(empty)
    _select(dock, raster, empty)
    bar = dock.iface.messageBar()
    bar.clear_messages()
    before = set(QgsProject.instance().mapLayers())
    dock.rasterize_button.click()
    wait_for(lambda: dock.task is None)
    assert any("no features" in m for m in bar.get_messages(Qgis.Warning))
    assert set(QgsProject.instance().mapLayers()) == before


class Heartbeat:
    """A 20 ms QTimer on the UI thread; ``gaps`` are the intervals between its ticks, by phase."""

    def __init__(self) -> None:
        self.phase = "idle"
        self.gaps: dict = {}
        self._last = time.monotonic()
        self._timer = QTimer()
        self._timer.timeout.connect(self._beat)
        self._timer.start(20)

    def _beat(self) -> None:
        now = time.monotonic()
        self.gaps.setdefault(self.phase, [0.0]).append(now - self._last)
        self._last = now

    def longest(self, phase: str) -> float:
        return max(self.gaps.get(phase, [0.0]))

    def stop(self) -> None:
        self._timer.stop()


class WorkerImports:
    """Modules imported inside a task's ``run()`` (the worker thread), by task class name."""

    def __init__(self, monkeypatch) -> None:
        from bfe_plugin.tasks import CoreTask

        self.names: dict = {}
        self._running: dict = {}  # thread id -> task class name
        run = CoreTask.run

        def watched(task) -> bool:
            self._running[threading.get_ident()] = type(task).__name__
            self.names.setdefault(type(task).__name__, [])
            try:
                return run(task)
            finally:
                del self._running[threading.get_ident()]

        monkeypatch.setattr(CoreTask, "run", watched)
        monkeypatch.setattr(sys, "meta_path", [self, *sys.meta_path])

    def find_spec(self, name, path=None, target=None):  # a meta path finder that finds nothing
        task = self._running.get(threading.get_ident())
        if task is not None and name not in sys.modules:
            self.names[task].append(name)
        return None


def test_finetune_then_extract_as_tasks_without_blocking_the_ui(dock, layers, monkeypatch):
    engine_ready("ml_core.learn.train", "ml_core.infer.predict", "ml_core.infer.extract")
    imported = WorkerImports(monkeypatch)
    raster, buildings = layers
    _select(dock, raster, buildings)
    _quick_training(dock)
    beat = Heartbeat()
    beat.phase = "prepare"  # button click, task start, data preparation: up to the first loss
    dock.finetune_button.click()
    wait_for(lambda: dock.task is None or bool(dock.chart.loss), timeout=300)
    beat.phase = "train"
    wait_for(lambda: dock.task is None, timeout=300)
    assert dock.model.path is not None, dock.iface.messageBar().get_messages(Qgis.Warning)
    assert dock.chart.loss

    beat.phase = "extract"  # click, prediction, polygonising, adding the layers
    dock.add_probability.setChecked(True)
    dock.add_hints.setChecked(True)  # the hints run in the same worker: covered by the checks
    dock.extract_button.click()
    wait_for(lambda: dock.task is None, timeout=300)
    beat.stop()
    added = _group_layers("crop")
    assert {"footprints", "new buildings", "building probability",
            "hints (look here first)"} <= set(added), \
        dock.iface.messageBar().get_messages(Qgis.Warning)
    assert all(layer.isValid() for layer in added.values())
    # the review section now steps through exactly the new-buildings layer just added
    assert dock.review.layer is added["new buildings"]
    # The limit, for the whole of each task. Torch's lazy imports (torch._dynamo on the
    # first optimiser) used to run in the worker, where their full garbage collections held the
    # GIL for 0.1-0.3 s; tasks.preload_torch now does them on the UI thread when the dock opens.
    for phase in ("prepare", "train", "extract"):
        assert beat.longest(phase) < 0.2, f"UI blocked {beat.longest(phase):.2f} s ({phase})"
    # the cause, measured directly: nothing is imported in the worker threads
    assert imported.names == {"FinetuneTask": [], "ExtractTask": []}


def _polygon_layer(name: str, crs, wkts: list) -> QgsVectorLayer:
    layer = QgsVectorLayer(f"Polygon?crs={crs.authid()}", name, "memory")
    features = []
    for wkt in wkts:
        feature = QgsFeature()
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    layer.updateExtents()
    QgsProject.instance().addMapLayer(layer)
    return layer


def _pixel_box(raster: QgsRasterLayer, x0: float, y0: float, x1: float, y1: float) -> QgsRectangle:
    """The rectangle between pixel coordinates (x0, y0) and (x1, y1) of ``raster``."""
    e, px, py = raster.extent(), raster.rasterUnitsPerPixelX(), raster.rasterUnitsPerPixelY()
    return QgsRectangle(e.xMinimum() + x0 * px, e.yMaximum() - y1 * py,
                        e.xMinimum() + x1 * px, e.yMaximum() - y0 * py)


@pytest.fixture
def canvas(dock):
    """The map canvas; its CRS, size and extent are restored afterwards (other tests share it)."""
    canvas = dock.iface.mapCanvas()
    crs, size, extent = canvas.mapSettings().destinationCrs(), canvas.size(), canvas.extent()
    yield canvas
    canvas.setDestinationCrs(crs)
    canvas.resize(size)
    canvas.setExtent(extent)


@pytest.mark.parametrize("mode", ["Current canvas extent", "Selected features", "Polygon layer"])
def test_extract_covers_only_the_chosen_area(dock, layers, canvas, mode):
    """The probability raster covers the area's bounding box, snapped outwards to the raster's
    pixel grid (less than one pixel more on each side), and nothing else of the raster."""
    from osgeo import gdal

    from bfe_plugin.widgets.inputs import AREAS

    engine_ready("ml_core.infer.predict", "ml_core.infer.extract")
    raster, buildings = layers
    _select(dock, raster, buildings)
    dock.predict_form.set_options(dock.predict_form.options_cls(device="cpu", tile_size=128,
                                                                overlap=16))
    # a triangle in the north-west and a square in the south-east (pixel coordinates, off-grid)
    tri = _pixel_box(raster, 40.5, 30.5, 170.5, 150.5)
    box = _pixel_box(raster, 220.5, 250.5, 330.5, 350.5)
    if mode == "Current canvas extent":
        canvas.resize(300, 200)
        canvas.setDestinationCrs(raster.crs())
        canvas.setExtent(_pixel_box(raster, 100.5, 120.5, 250.5, 220.5))
        expected, inside = canvas.extent(), None
    else:
        area = _polygon_layer("area", raster.crs(), [
            f"POLYGON(({tri.xMinimum()} {tri.yMaximum()},{tri.xMaximum()} {tri.yMaximum()},"
            f"{tri.xMinimum()} {tri.yMinimum()},{tri.xMinimum()} {tri.yMaximum()}))",
            box.asWktPolygon()])
        dock.inputs.area_layer.setLayer(area)
        if mode == "Selected features":
            area.selectByIds([next(area.getFeatures()).id()])  # the triangle only
            expected = QgsRectangle(tri)
        else:
            expected = QgsRectangle(tri)
            expected.combineExtentWith(box)
        inside = area
    dock.inputs.area.setCurrentIndex(AREAS.index(mode))
    dock.add_probability.setChecked(True)
    dock.extract_button.click()
    wait_for(lambda: dock.task is None, timeout=300)
    prob = _group_layers("crop").get("building probability")
    assert prob is not None, dock.iface.messageBar().get_messages(Qgis.Warning)
    got, px, py = prob.extent(), raster.rasterUnitsPerPixelX(), raster.rasterUnitsPerPixelY()
    assert (prob.rasterUnitsPerPixelX(), prob.rasterUnitsPerPixelY()) == pytest.approx((px, py))
    assert 0 <= expected.xMinimum() - got.xMinimum() < px
    assert 0 <= got.xMaximum() - expected.xMaximum() < px
    assert 0 <= expected.yMinimum() - got.yMinimum() < py
    assert 0 <= got.yMaximum() - expected.yMaximum() < py
    # on the raster's grid: whole pixels from the raster's corner
    offset = ((got.xMinimum() - raster.extent().xMinimum()) / px,
              (raster.extent().yMaximum() - got.yMaximum()) / py)
    assert offset == pytest.approx((round(offset[0]), round(offset[1])), abs=1e-6)
    if inside is not None:  # outside the polygons: nodata, e.g. the triangle's south-east corner
        opened = gdal.Open(prob.source())  # held while its band is read
        values = opened.GetRasterBand(1).ReadAsArray()  # the building band
        assert values[-2, round((tri.xMaximum() - got.xMinimum()) / px) - 2] == -1
        assert values[2, 2] != -1


@pytest.mark.parametrize("hints", [True, False])
def test_extract_adds_styled_hints_only_when_asked(dock, layers, hints):
    from ml_core.review.hints import REASONS

    engine_ready("ml_core.infer.predict", "ml_core.infer.extract", "ml_core.review.hints")
    raster, buildings = layers
    _select(dock, raster, buildings)
    dock.predict_form.set_options(dock.predict_form.options_cls(device="cpu", tile_size=128,
                                                                overlap=16))
    dock.add_hints.setChecked(hints)
    dock.extract_button.click()
    wait_for(lambda: dock.task is None, timeout=300)
    added = _group_layers("crop")
    assert "new buildings" in added, dock.iface.messageBar().get_messages(Qgis.Warning)
    layer = added.get("hints (look here first)")
    if not hints:
        assert layer is None
        return
    assert layer is not None and layer.isValid()
    reasons = [f["reason"] for f in layer.getFeatures()]
    assert reasons and set(reasons) <= set(REASONS)
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "reason"
    assert {c.value() for c in renderer.categories()} == set(REASONS)


def test_cancel_stops_fine_tuning(dock, layers):
    engine_ready("ml_core.learn.train")
    raster, buildings = layers
    _select(dock, raster, buildings)
    _quick_training(dock)
    dock.train_form.set_options(dock.train_form.options_cls(epochs=1000, crop_size=64,
                                                            device="cpu"))
    bar = dock.iface.messageBar()
    bar.clear_messages()
    dock.finetune_button.click()
    wait_for(lambda: dock.progress.value() > 0 or dock.task is None, timeout=120)
    dock.cancel_button.click()
    assert wait_for(lambda: dock.task is None, timeout=30) < 5
    assert any("ancel" in m for m in bar.get_messages(Qgis.Info))


def test_a_failed_step_leaves_nothing_alive_in_its_frames():
    """What a failed step held (e.g. an open GDAL dataset) is released when the task fails,
    not at a later garbage collection: run after QGIS exits, that one crashed in GDALClose."""
    from bfe_plugin.tasks import CoreTask

    class Held:
        pass

    held = []

    def step(progress, cancel):
        dataset = Held()
        held.append(weakref.ref(dataset))
        raise ValueError("the step failed")

    task = CoreTask("bfe: failing step", step, on_done=print, on_error=print)
    assert not task.run()
    assert "the step failed" in task.details
    assert held[0]() is None


@pytest.mark.parametrize("missing", [[]])
def test_buttons_enabled_when_nothing_is_missing(dock, missing):
    dock.set_missing(missing)
    assert dock.finetune_button.isEnabled() and dock.banner.isHidden()


def test_every_loss_is_offered_with_a_tooltip_and_the_device_is_shown(dock):
    from ml_core.learn.losses import LOSSES

    combo = dock.train_form.editor("loss")
    assert {combo.itemText(i) for i in range(combo.count())} == set(LOSSES)
    assert all(combo.itemData(i, Qt.ToolTipRole) for i in range(combo.count()))
    assert combo.currentText() == "bd_lace_wdice"
    assert dock.device_label.text().startswith(("Device: CPU", "Device: CUDA", "Device: MPS"))
