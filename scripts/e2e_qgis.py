"""End-to-end check inside a real QGIS desktop (run with ``qgis --code``, e.g. under Xvfb).

Loads the sample raster and buildings, drives the bfe dock through its own code paths
(rasterise, a short fine-tune, extract), asserts the result layers exist, saves a screenshot to
``docs/screenshot.png`` and exits QGIS with status 0 (success) or 1. ``BFE_REPO`` names the
checkout (default: the current folder); ``BFE_E2E_SCREENSHOT`` overrides the screenshot path.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

import qgis.utils
from qgis.core import Qgis, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QCoreApplication

REPO = Path(os.environ.get("BFE_REPO", os.getcwd()))
SCREENSHOT = Path(os.environ.get("BFE_E2E_SCREENSHOT", REPO / "docs" / "screenshot.png"))
EXPECTED = ("labels (partial mask)", "footprints", "new buildings", "building probability")


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


def main() -> None:
    iface = qgis.utils.iface
    plugin = qgis.utils.plugins["bfe_plugin"]
    raster = QgsRasterLayer(str(REPO / "data" / "sample" / "banepa_sample.tif"), "banepa_sample")
    buildings = QgsVectorLayer(f"{REPO / 'data' / 'sample' / 'banepa_sample_buildings.gpkg'}"
                               "|layername=buildings", "OSM buildings", "ogr")
    assert raster.isValid() and buildings.isValid(), "sample data missing"
    QgsProject.instance().addMapLayers([raster, buildings])
    iface.mainWindow().showMaximized()
    iface.mapCanvas().setExtent(raster.extent())
    plugin.action.setChecked(True)
    dock = plugin.dock
    dock.inputs.raster_combo.setLayer(raster)
    dock.inputs.buildings_combo.setLayer(buildings)
    run_task(dock, dock.rasterise_button)
    form = dock.train_form
    form.set_options(form.options_cls(epochs=2, steps_per_epoch=10, batch_size=4,
                                      crop_size=128, minutes=3.0))
    run_task(dock, dock.finetune_button)
    dock.add_probability.setChecked(True)
    run_task(dock, dock.extract_button)
    group = QgsProject.instance().layerTreeRoot().findGroup("bfe: banepa_sample")
    names = {node.layer().name() for node in group.findLayers()} if group else set()
    missing = [name for name in EXPECTED if name not in names]
    assert not missing, f"layers missing after the run: {missing}"
    iface.mapCanvas().refreshAllLayers()
    wait(seconds=3)  # let the canvas render
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    iface.mainWindow().grab().save(str(SCREENSHOT))
    print(f"e2e: OK, layers {sorted(names)}, screenshot {SCREENSHOT}", flush=True)


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
