"""The dock on a small real crop: layer filters, rasterise, fine-tune and extract as real tasks."""

from __future__ import annotations

import time

import pytest
from qgis.core import Qgis, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import Qt, QTimer

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
    return {} if group is None else {n.layer().name(): n.layer() for n in group.findLayers()}


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
    dock.rasterise_button.click()
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
    dock.rasterise_button.click()
    wait_for(lambda: dock.task is None)
    assert any("no features" in m for m in bar.get_messages(Qgis.Warning))
    assert set(QgsProject.instance().mapLayers()) == before


def test_finetune_then_extract_as_tasks_without_blocking_the_ui(dock, layers):
    engine_ready("ml_core.train", "ml_core.predict", "ml_core.extract")
    raster, buildings = layers
    _select(dock, raster, buildings)
    _quick_training(dock)
    gaps: dict = {"prepare": [0.0], "train": [0.0]}
    last = [time.monotonic()]

    def beat() -> None:
        now = time.monotonic()
        gaps["train" if dock.chart.loss else "prepare"].append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(beat)
    timer.start(20)
    dock.finetune_button.click()
    wait_for(lambda: dock.task is None, timeout=300)
    timer.stop()
    assert dock.model.path is not None, dock.iface.messageBar().get_messages(Qgis.Warning)
    assert max(gaps["train"]) < 0.2, f"UI blocked {max(gaps['train']):.2f} s in the training loop"
    # Before the first step ml_core reads and rasterises the data; GDAL/numpy calls there hold
    # the GIL for up to ~0.3 s on a busy 2-core machine (a known gap, see the plugin notes).
    assert max(gaps["prepare"]) < 0.5, f"UI blocked {max(gaps['prepare']):.2f} s preparing data"
    assert dock.chart.loss

    dock.add_probability.setChecked(True)
    dock.extract_button.click()
    wait_for(lambda: dock.task is None, timeout=300)
    added = _group_layers("crop")
    assert {"footprints", "new buildings", "building probability"} <= set(added), \
        dock.iface.messageBar().get_messages(Qgis.Warning)
    assert all(layer.isValid() for layer in added.values())
    # the review section now steps through exactly the new-buildings layer just added
    assert dock.review.layer is added["new buildings"]


def test_cancel_stops_fine_tuning(dock, layers):
    engine_ready("ml_core.train")
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


@pytest.mark.parametrize("missing", [[]])
def test_buttons_enabled_when_nothing_is_missing(dock, missing):
    dock.set_missing(missing)
    assert dock.finetune_button.isEnabled() and dock.banner.isHidden()


def test_every_loss_is_offered_with_a_tooltip_and_the_device_is_shown(dock):
    from ml_core.losses import LOSSES

    combo = dock.train_form.editor("loss")
    assert {combo.itemText(i) for i in range(combo.count())} == set(LOSSES)
    assert all(combo.itemData(i, Qt.ToolTipRole) for i in range(combo.count()))
    assert combo.currentText() == "bd_lace_wdice"
    assert dock.device_label.text().startswith(("Device: CPU", "Device: CUDA", "Device: MPS"))
