"""End-to-end check inside a real QGIS desktop (run with ``qgis --code``, e.g. under Xvfb).

Loads the sample raster and buildings into a 1600 x 1000 main window, runs the dock's "Find
missing buildings" (rasterise, a short fine-tune, extract) through its own code paths, asserts
the result layers exist, and saves two screenshots: ``docs/screenshot.png`` (the dock beside
the map, the new buildings outlined on the imagery, the probability layer off) and
``docs/screenshot_review.png`` (the review section stepping through the proposals). Exits QGIS
with status 0 (success) or 1. ``BFE_REPO`` names the checkout (default: the current folder);
``BFE_E2E_SCREENSHOT`` overrides the first screenshot's path (the second goes beside it).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

import qgis.utils
from qgis.core import (
    Qgis,
    QgsFillSymbol,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.gui import QgsCollapsibleGroupBox
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtWidgets import QDockWidget

REPO = Path(os.environ.get("BFE_REPO", os.getcwd()))
SCREENSHOT = Path(os.environ.get("BFE_E2E_SCREENSHOT", REPO / "docs" / "screenshot.png"))
REVIEW_SHOT = SCREENSHOT.with_name(f"{SCREENSHOT.stem}_review{SCREENSHOT.suffix}")
EXPECTED = ("labels (partial mask)", "footprints", "new buildings", "building probability")
WINDOW = (1600, 1000)
DOCK_WIDTH = 470
LAYERS_WIDTH = 340  # the layer panel, wide enough for the result names (what, date, model)
SEPARATOR = " · "  # between what a layer holds and its run (bfe_plugin.layers.SEPARATOR)


def wait(seconds: float = 0.0, until=None, timeout: float = 900.0) -> None:
    """Keep QGIS responsive while waiting for time to pass or ``until()`` to hold."""
    start = time.monotonic()
    while (until is not None and not until()) or time.monotonic() - start < seconds:
        QCoreApplication.processEvents()
        time.sleep(0.01)
        if time.monotonic() - start > timeout:
            raise TimeoutError("a bfe task did not finish in time")


def run_task(dock, button) -> None:
    """Click a dock button and wait for its task; fail on the message it reported."""
    bar = qgis.utils.iface.messageBar()
    button.click()
    wait(until=lambda: dock.task is None)
    current = bar.currentItem()
    if current is not None and current.level() in (Qgis.Warning, Qgis.Critical):
        raise RuntimeError(f"bfe reported: {current.text()}")


def result_layers(raster_name: str) -> dict:
    """The layers of the result group, by what they hold (the run's date and model cut off)."""
    group = QgsProject.instance().layerTreeRoot().findGroup(f"bfe: {raster_name}")
    return {} if group is None else {n.layer().name().split(SEPARATOR)[0]: n.layer()
                                     for n in group.findLayers()}


def set_visible(layer, visible: bool) -> None:
    QgsProject.instance().layerTreeRoot().findLayer(layer.id()).setItemVisibilityChecked(visible)


def lay_out_window(iface) -> None:
    """The main window at 1600 x 1000 (no window manager under Xvfb maximises it), the browser
    panel closed so the map has the room, the message bar cleared before each picture."""
    window = iface.mainWindow()
    window.showNormal()
    window.setGeometry(0, 0, *WINDOW)
    for dock in window.findChildren(QDockWidget):
        if dock.objectName() in ("Browser", "Browser2"):
            dock.hide()
        elif dock.objectName() == "Layers":
            window.resizeDocks([dock], [LAYERS_WIDTH], Qt.Horizontal)
    wait(seconds=0.5)


def show_sections(dock, open_titles: tuple) -> None:
    """Expand the dock sections named in ``open_titles``, collapse the others."""
    for box in dock.widget().widget().findChildren(QgsCollapsibleGroupBox):
        if box.parent() is dock.widget().widget():  # top-level sections only
            box.setCollapsed(box.title() not in open_titles)


def snapshot(iface, path: Path) -> None:
    iface.messageBar().clearWidgets()
    iface.mapCanvas().refreshAllLayers()
    wait(seconds=3)  # let the canvas render
    wait(until=lambda: not iface.mapCanvas().isDrawing(), timeout=60)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = iface.mainWindow().grab()
    if image.width() < WINDOW[0] or image.height() < WINDOW[1]:
        raise RuntimeError(f"the window is {image.width()} x {image.height()}, not {WINDOW}")
    image.save(str(path))


def review_some(review) -> int:
    """Answer a few proposals as a mapper would (accept, reject, skip); returns how many."""
    answers = [getattr(review, name, None) for name in ("accept", "accept", "reject", "skip")]
    done = 0
    for answer in answers:
        if answer is not None and review.current is not None:
            answer()
            done += 1
            wait(seconds=0.3)
    return done


def main() -> None:
    iface = qgis.utils.iface
    plugin = qgis.utils.plugins["bfe_plugin"]
    raster = QgsRasterLayer(str(REPO / "data" / "sample" / "banepa_sample.tif"), "banepa_sample")
    buildings = QgsVectorLayer(f"{REPO / 'data' / 'sample' / 'banepa_sample_buildings.gpkg'}"
                               "|layername=buildings", "OSM buildings", "ogr")
    assert raster.isValid() and buildings.isValid(), "sample data missing"
    buildings.renderer().setSymbol(QgsFillSymbol.createSimple(
        {"style": "no", "outline_color": "255,255,0", "outline_width": "0.5"}))
    QgsProject.instance().addMapLayers([buildings, raster])  # the outlines above the imagery
    lay_out_window(iface)
    plugin.action.setChecked(True)
    dock = plugin.dock
    iface.mainWindow().resizeDocks([dock], [DOCK_WIDTH], Qt.Horizontal)
    dock.inputs.raster_combo.setLayer(raster)
    dock.inputs.buildings_combo.setLayer(buildings)
    form = dock.train_form
    form.set_options(form.options_cls(epochs=2, steps_per_epoch=10, batch_size=4,
                                      crop_size=128, minutes=3.0))
    dock.add_probability.setChecked(True)
    show_sections(dock, ("Inputs", "Find missing buildings", "Fine-tune"))
    run_task(dock, dock.find_button)
    names = result_layers("banepa_sample")
    missing = [name for name in EXPECTED if name not in names]
    assert not missing, f"layers missing after the run: {missing}"
    new = names["new buildings"]
    assert new.featureCount() > 0, "no new buildings proposed"
    set_visible(names["building probability"], False)  # the imagery shows through
    set_visible(names["footprints"], False)  # the new ones stand out, OSM's are in yellow
    canvas = iface.mapCanvas()
    canvas.setExtent(raster.extent())
    show_sections(dock, ("Inputs", "Find missing buildings", "Fine-tune"))
    dock.widget().verticalScrollBar().setValue(0)
    snapshot(iface, SCREENSHOT)
    show_sections(dock, ("Find missing buildings", "Review"))
    review = dock.review
    answered = review_some(review)
    dock.widget().ensureWidgetVisible(review)
    snapshot(iface, REVIEW_SHOT)
    print(f"e2e: OK, layers {sorted(names)}, {new.featureCount()} new buildings, "
          f"{answered} answered, screenshots {SCREENSHOT} {REVIEW_SHOT}", flush=True)


def run_and_exit() -> None:
    """Run ``main`` and leave QGIS with its status (no save-project prompt)."""
    status = 0
    try:
        main()
    except Exception:  # report anything and exit non-zero
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


run_and_exit()
