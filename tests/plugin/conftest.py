"""Fixtures for the plugin tests (pytest-qgis: headless QGIS with a stub iface).

pytest-qgis starts QGIS before this file is imported and points QGIS_CUSTOM_CONFIG_PATH at
``<rootdir>/.qgis-settings``. Cache, config and temp folders are isolated here as well, for
what QGIS and GDAL write later; ``make test`` also sets them before QGIS starts.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

_ISOLATED = Path(tempfile.mkdtemp(prefix="bfe_plugin_tests_"))
for _var in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "TMPDIR"):
    os.environ.setdefault(_var, str(_ISOLATED / _var.lower()))
    Path(os.environ[_var]).mkdir(parents=True, exist_ok=True)
tempfile.tempdir = None  # re-read TMPDIR

from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer  # noqa: E402

from bfe_plugin import classFactory  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SAMPLE_RASTER = REPO / "data" / "sample" / "banepa_sample.tif"
SAMPLE_BUILDINGS = REPO / "data" / "sample" / "banepa_sample_buildings.gpkg"
SHARED = REPO.parent / "shared" / "data" / "banepa_osm"


@pytest.fixture(autouse=True)
def default_options() -> Iterator[None]:
    """Every test starts from the option defaults: the dock saves its options in the QGIS
    profile, which outlives a test (and a test run)."""
    from qgis.core import QgsSettings

    QgsSettings().remove("bfe")
    yield


@pytest.fixture
def plugin(qgis_iface, qgis_new_project) -> Iterator:
    """The plugin, loaded as QGIS loads it, unloaded afterwards."""
    instance = classFactory(qgis_iface)
    instance.initGui()
    yield instance
    instance.unload()


@pytest.fixture
def dock(plugin):
    """The dock, opened through the plugin's action."""
    plugin.action.trigger()
    return plugin.dock


@pytest.fixture(scope="session")
def sample_crop(tmp_path_factory) -> tuple[Path, Path]:
    """A 384 px crop of the shipped sample (or of the shared data) and its buildings."""
    from osgeo import gdal

    if SAMPLE_RASTER.exists():
        raster, buildings = SAMPLE_RASTER, SAMPLE_BUILDINGS
    elif SHARED.exists():
        raster = SHARED / "banepa_osm_z19_wgs84.tif"
        buildings = SHARED / "banepa_osm_buildings.gpkg"
    else:
        pytest.skip("no sample data: data/sample/ and ../shared/data/banepa_osm are both absent")
    crop = tmp_path_factory.mktemp("crop") / "crop.tif"
    gdal.Translate(str(crop), str(raster), srcWin=[256, 256, 384, 384])
    return crop, buildings


@pytest.fixture
def layers(sample_crop, qgis_new_project) -> Iterator[tuple[QgsRasterLayer, QgsVectorLayer]]:
    """The crop and the buildings as project layers; removed again so none outlives QGIS."""
    raster = QgsRasterLayer(str(sample_crop[0]), "crop")
    buildings = QgsVectorLayer(f"{sample_crop[1]}|layername=buildings", "buildings", "ogr")
    assert raster.isValid() and buildings.isValid()
    QgsProject.instance().addMapLayers([raster, buildings])
    yield raster, buildings
    QgsProject.instance().removeAllMapLayers()


def wait_for(predicate, timeout: float = 120.0, heartbeat=None) -> float:
    """Process Qt events until ``predicate()``; return the seconds it took (fails on timeout)."""
    from qgis.PyQt.QtCore import QCoreApplication

    start = time.monotonic()
    while not predicate():
        QCoreApplication.processEvents()
        time.sleep(0.005)
        assert time.monotonic() - start < timeout, "timed out waiting for a bfe task"
    QCoreApplication.processEvents()
    return time.monotonic() - start


def engine_ready(*modules: str) -> None:
    """Skip (naming the module) when an ml_core engine module cannot be imported yet."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            pytest.skip(f"{module} is not importable yet ({exc}); "
                        "the engine is still being written")


@pytest.fixture(autouse=True)
def qt_exceptions(monkeypatch) -> Iterator[list]:
    """Fail the test on an exception raised inside a Qt slot or virtual (PyQt would abort)."""
    caught: list = []
    monkeypatch.setattr(sys, "excepthook", lambda *info: caught.append(info))
    yield caught
    assert not caught, "".join(traceback.format_exception(*caught[0]))
