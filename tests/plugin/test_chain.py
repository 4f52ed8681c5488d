"""'Find missing buildings': the whole chain from the dock, on a file and on a tile service."""

from __future__ import annotations

import re

import pytest
from osgeo import gdal
from qgis.core import Qgis, QgsProject

from bfe_plugin.tasks import ChainProgress
from bfe_plugin.widgets.inputs import AREAS
from ml_core.events import ProgressEvent

from .conftest import engine_ready, wait_for
from .test_dock import _group_layers, _pixel_box, _quick_training, _select, canvas  # noqa: F401
from .test_imagery import _sample_centre, _xyz_layer, tiles  # noqa: F401

RUN_NAME = re.compile(r" · \d{4}-\d\d-\d\d \d\d:\d\d, model fine-tuned in bfe_run_\d+$")


def _quick_chain(dock) -> None:
    _quick_training(dock)
    dock.predict_form.set_options(dock.predict_form.options_cls(device="cpu", tile_size=128,
                                                                overlap=16))


def _watch(dock) -> tuple[list, list]:
    """Progress bar values and ETA texts, as the user sees them while the chain runs."""
    values: list = []
    etas: list = []
    dock.progress.valueChanged.connect(values.append)
    original = dock.eta.setText

    def set_text(text: str) -> None:
        etas.append(text)
        original(text)

    dock.eta.setText = set_text
    return values, etas


def test_find_missing_buildings_on_the_canvas_extent(dock, layers, canvas):  # noqa: F811
    engine_ready("ml_core.pipeline")
    raster, buildings = layers
    _select(dock, raster, buildings)
    _quick_chain(dock)
    canvas.resize(300, 200)
    canvas.setDestinationCrs(raster.crs())
    canvas.setExtent(_pixel_box(raster, 100.5, 120.5, 250.5, 220.5))
    expected = canvas.extent()
    dock.inputs.area.setCurrentIndex(AREAS.index("Current canvas extent"))
    dock.add_probability.setChecked(True)
    values, etas = _watch(dock)
    dock.find_button.click()
    assert not dock.find_button.isEnabled() and dock.cancel_button.isEnabled()
    wait_for(lambda: dock.task is None, timeout=300)
    added = _group_layers("crop")
    assert {"labels (partial mask)", "footprints", "new buildings",
            "building probability"} <= set(added), \
        dock.iface.messageBar().get_messages(Qgis.Warning)
    # one progress bar for the whole chain: it only goes forward, up to the end
    assert values and values == sorted(values) and values[-1] >= 99
    assert any(text.startswith("ETA ") for text in etas)
    # names say what the layer holds, when and by which model
    for name in ("footprints", "new buildings", "building probability"):
        assert RUN_NAME.search(added[name].name()), added[name].name()
    root = QgsProject.instance().layerTreeRoot()
    assert not root.findLayer(added["labels (partial mask)"].id()).itemVisibilityChecked()
    # only the chosen area was worked on: the probability raster is the clipped window
    prob = added["building probability"]
    got, px = prob.extent(), raster.rasterUnitsPerPixelX()
    assert 0 <= expected.xMinimum() - got.xMinimum() < px
    assert 0 <= got.xMaximum() - expected.xMaximum() < px
    assert prob.width() < raster.width() and prob.height() < raster.height()
    # the results are ready for review and the fine-tuned model is the current one
    assert dock.review.layer is added["new buildings"]
    assert dock.model.path is not None and dock.model.path.name == "model.safetensors"
    assert dock.rasterize_button.isEnabled() and dock.finetune_button.isEnabled()


def test_find_missing_buildings_on_a_tile_service(dock, layers, canvas, tiles):  # noqa: F811
    """An XYZ layer as the raster: the area is fetched at the chosen zoom, then the chain runs
    on the fetched GeoTIFF, which is added under the results."""
    engine_ready("ml_core.pipeline")
    _, buildings = layers
    xyz = _xyz_layer(tiles[0], "Test aerial tiles")
    _select(dock, xyz, buildings)
    _quick_chain(dock)
    assert dock.inputs.fetch_button.isEnabled()
    canvas.resize(300, 300)
    canvas.setDestinationCrs(xyz.crs())
    canvas.setExtent(_sample_centre(xyz, 90.0))
    dock.inputs.area.setCurrentIndex(AREAS.index("Current canvas extent"))
    dock.inputs.resolution.setCurrentIndex(dock.inputs.resolution.findData(19))
    dock.add_probability.setChecked(True)
    dock.find_button.click()
    wait_for(lambda: dock.task is None, timeout=300)
    added = _group_layers("Test aerial tiles")
    assert {"footprints", "new buildings", "building probability"} <= set(added), \
        dock.iface.messageBar().get_messages(Qgis.Warning)
    assert tiles[1], "no tile was requested"
    imagery = [layer for name, layer in added.items() if name.startswith("imagery: ")]
    assert len(imagery) == 1 and "(zoom 19)" in imagery[0].name()
    assert imagery[0].crs().authid() == "EPSG:3857"
    prob = gdal.Open(added["building probability"].source())
    fetched = gdal.Open(imagery[0].source())
    assert (prob.RasterXSize, prob.RasterYSize) == (fetched.RasterXSize, fetched.RasterYSize)


def test_cancel_stops_the_chain_and_keeps_the_best_model(dock, layers):
    engine_ready("ml_core.pipeline")
    raster, buildings = layers
    _select(dock, raster, buildings)
    _quick_chain(dock)
    dock.train_form.set_options(dock.train_form.options_cls(epochs=1000, steps_per_epoch=2,
                                                            crop_size=64, device="cpu",
                                                            patience=1000))
    bar = dock.iface.messageBar()
    bar.clear_messages()
    dock.find_button.click()
    chart = dock.chart
    wait_for(lambda: dock.task is None or len(chart.dice) >= 2, timeout=300)  # epochs 0 and 1
    assert dock.task is not None, bar.get_messages(Qgis.Warning)
    dock.cancel_button.click()
    assert wait_for(lambda: dock.task is None, timeout=30) < 5
    assert any("ancel" in m for m in bar.get_messages(Qgis.Info))
    assert any("best model so far is kept" in m for m in bar.get_messages(Qgis.Success))
    assert dock.model.path is not None and dock.model.path.exists()
    assert "new buildings" not in _group_layers("crop")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_chain_progress_maps_stages_and_estimates_the_whole_chain():
    events: list = []
    clock = _Clock()
    chain = ChainProgress(events.append, ("rasterize", "train", "predict", "extract"), clock)
    # shares without fetch: 0.02, 0.75, 0.12, 0.03 of 0.92
    total = 0.92
    clock.now = 10.0
    chain(ProgressEvent("rasterize", 1.0))
    assert events[-1].fraction == pytest.approx(0.02 / total)
    # training half done, its own ETA 60 s: the train share left takes 60 s, so the chain's
    # rate is (0.75 / total / 2) / 60 per second
    clock.now = 70.0
    chain(ProgressEvent("train", 0.5, loss=0.3, eta_s=60.0))
    done = (0.02 + 0.75 / 2) / total
    rate = (0.75 / total / 2) / 60.0
    assert events[-1].fraction == pytest.approx(done)
    assert events[-1].eta_s == pytest.approx((1 - done) / rate)
    assert events[-1].loss == 0.3  # the chart still gets its numbers
    # a validation event belongs to training; an unknown stage keeps the fraction
    chain(ProgressEvent("validate", 0.5, val_dice=0.8))
    chain(ProgressEvent("read", 0.0, "reading"))
    assert events[-1].fraction == pytest.approx(done)
    # prediction without its own ETA: from its progress since it began
    clock.now = 100.0
    chain(ProgressEvent("predict", 0.0))
    clock.now = 110.0
    chain(ProgressEvent("predict", 0.5))
    done = (0.02 + 0.75 + 0.06) / total
    assert events[-1].eta_s == pytest.approx((1 - done) / ((0.12 / total * 0.5) / 10.0))
    # never backwards
    chain(ProgressEvent("train", 0.1))
    assert events[-1].fraction == pytest.approx(done)
    chain(ProgressEvent("extract", 1.0))
    assert events[-1].fraction == pytest.approx(1.0)
