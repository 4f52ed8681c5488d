"""bfe:export_osm through processing.run: the .osm file, and a refusal as a Processing error."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException

from .conftest import SAMPLE_BUILDINGS


@pytest.fixture
def run(qgis_processing, plugin):
    import processing

    return processing.run


@pytest.fixture
def footprints(tmp_path):
    path = tmp_path / "fp.gpkg"
    gdal.VectorTranslate(str(path), str(SAMPLE_BUILDINGS), layerName="new_buildings")
    return path


def test_export_osm(run, footprints, tmp_path):
    out = tmp_path / "new.osm"
    result = run("bfe:export_osm", {"FOOTPRINTS": str(footprints), "SOURCE": "OAM Banepa",
                                    "OUTPUT": str(out)})
    assert result["BUILDINGS"] == 391
    ways = ET.parse(out).getroot().findall("way")
    assert len(ways) == 391
    assert {w.find("tag[@k='source']").get("v") for w in ways} == {"OAM Banepa"}


def test_export_osm_refuses_flagged(run, footprints, tmp_path):
    out = tmp_path / "new.osm"
    with pytest.raises(QgsProcessingException, match="flagged"):
        run("bfe:export_osm", {"FOOTPRINTS": str(footprints), "ON_FLAGGED": 1,
                               "OUTPUT": str(out)})
    assert not out.exists()
