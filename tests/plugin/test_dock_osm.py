"""The dock with OSM: an .osm extract chosen instead of the building layer, its bad files, and
"Export for OSM" of the new buildings under review (accepted, or all new; refused; unwritable).

The extracts are cut in ``tmp_path`` from the sample's buildings (© OpenStreetMap
contributors, ODbL 1.0) or written by hand; nothing here is committed data.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from osgeo import gdal
from osm_helpers import mapped_osm, squares_osm
from qgis.core import Qgis, QgsProject, QgsVectorLayer

from bfe_plugin.layers import SEPARATOR

from .conftest import wait_for

MASK = "labels (partial mask)"


def _messages(dock, level=Qgis.Warning) -> list:
    return dock.iface.messageBar().get_messages(level)


def _mask_layers() -> list:
    return [lyr for lyr in QgsProject.instance().mapLayers().values()
            if lyr.name().split(SEPARATOR)[0] == MASK]


def _read(path) -> np.ndarray:
    ds = gdal.Open(str(path))  # held while its band is read
    return ds.GetRasterBand(1).ReadAsArray()


@pytest.fixture
def crop_extract(sample_crop, tmp_path):
    """An .osm extract of every other sample building on the crop (fewer than the layer)."""
    from ml_core.io.vector import read_polygons, srs_of

    crop, buildings = sample_crop
    ds = gdal.Open(str(crop))
    x0, px, _, y0, _, py = ds.GetGeoTransform()
    x1, y1 = x0 + px * ds.RasterXSize, y0 + py * ds.RasterYSize
    polys = read_polygons(buildings, target=ds.GetSpatialRef())
    inside = [g for g in polys.geoms
              if g.GetEnvelope()[0] > x0 and g.GetEnvelope()[1] < x1
              and g.GetEnvelope()[2] > y1 and g.GetEnvelope()[3] < y0]
    assert len(inside) > 10
    return mapped_osm(inside[::2], srs_of(polys.srs), tmp_path / "crop.osm")


def test_an_osm_file_replaces_the_layer_and_is_read_as_the_cli_reads_it(dock, layers,
                                                                        crop_extract, tmp_path):
    from ml_core.labels.rasterize import rasterize_labels

    raster, buildings = layers
    dock.inputs.raster_combo.setLayer(raster)
    dock.inputs.buildings_combo.setLayer(buildings)
    dock.inputs.buildings_file.setFilePath(str(crop_extract))
    assert not dock.inputs.buildings_combo.isEnabled()  # the file replaces the layer
    assert dock.inputs.buildings_name() == "crop.osm"
    dock.rasterize_button.click()
    wait_for(lambda: dock.task is None)
    masks = _mask_layers()
    assert len(masks) == 1, _messages(dock)
    got = _read(masks[0].source())
    # the same mask as the core (and so 'bfe rasterize') makes from the file itself
    cli = _read(rasterize_labels(raster.source(), crop_extract, tmp_path / "cli.tif"))
    layer_mask = _read(rasterize_labels(raster.source(), f"{buildings.source()}",
                                        tmp_path / "layer.tif"))
    np.testing.assert_array_equal(got, cli)
    assert 0 < (got == 1).sum() < 0.8 * (layer_mask == 1).sum()  # half the buildings: the file's
    dock.inputs.buildings_file.setFilePath("")
    assert dock.inputs.buildings_combo.isEnabled()


@pytest.mark.parametrize("case, expected", [
    ("no buildings", "has no buildings"),
    ("elsewhere", "does not overlap"),
    ("not osm", "is not an OSM extract"),
    ("missing", "not found"),
])
def test_a_bad_osm_file_is_a_clear_message_and_adds_nothing(dock, layers, tmp_path, case,
                                                            expected):
    raster, buildings = layers
    if case == "no buildings":  # a park and a landuse area only
        path = squares_osm(tmp_path / "parks.osm", [(85.5208, 27.6322, {"leisure": "park"}),
                                                    (85.5209, 27.6321, {"landuse": "grass"})])
    elif case == "elsewhere":  # a building in Kampala, far from the Banepa crop
        path = squares_osm(tmp_path / "kampala.osm", [(32.58, 0.35, {"building": "yes"})])
    elif case == "not osm":
        path = tmp_path / "buildings.geojson"
        path.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    else:
        path = tmp_path / "gone.osm.pbf"
    dock.inputs.raster_combo.setLayer(raster)
    dock.inputs.buildings_combo.setLayer(buildings)
    dock.inputs.buildings_file.setFilePath(str(path))
    dock.iface.messageBar().clear_messages()
    before = set(QgsProject.instance().mapLayers())
    dock.rasterize_button.click()
    wait_for(lambda: dock.task is None)
    warnings = _messages(dock)
    assert any(expected in m and str(path.name) in m for m in warnings), warnings
    assert not any("Traceback" in m or "Unexpected" in m for m in warnings)
    assert not _messages(dock, Qgis.Critical)
    assert set(QgsProject.instance().mapLayers()) == before
    assert dock.rasterize_button.isEnabled()  # idle again


# -- Export for OSM ---------------------------------------------------------------------------

@pytest.fixture
def under_review(dock, tmp_path):
    """The sample's 391 buildings as the new-buildings layer of a footprints GeoPackage (score,
    status and flags fields, as extraction writes them), under review in the dock."""
    from .conftest import SAMPLE_BUILDINGS

    if not SAMPLE_BUILDINGS.exists():
        pytest.skip("data/sample/ absent")
    fp = tmp_path / "footprints.gpkg"
    gdal.VectorTranslate(str(fp), str(SAMPLE_BUILDINGS), layerName="new_buildings",
                         SQLStatement="SELECT geom, 0.9 AS score, 'proposed' AS status, "
                                      "'' AS flags FROM buildings", SQLDialect="SQLite")
    layer = QgsVectorLayer(f"{fp}|layername=new_buildings", "new buildings", "ogr")
    assert layer.isValid() and layer.featureCount() == 391
    QgsProject.instance().addMapLayer(layer)
    dock.review.set_layer(layer)
    yield layer
    QgsProject.instance().removeAllMapLayers()


def _export(dock, out, source="", refuse=False) -> str:
    dock.export.output.setFilePath(str(out))
    dock.export.source.setText(source)
    dock.export.on_flagged.setCurrentIndex(dock.export.on_flagged.findData(
        "refuse" if refuse else "warn"))
    dock.iface.messageBar().clear_messages()
    dock.export.button.click()
    wait_for(lambda: dock.task is None)
    return dock.export.result.text()


def test_export_writes_the_accepted_buildings_with_the_source_tag(dock, under_review, tmp_path):
    from ml_core.osm.read import read_buildings
    from ml_core.review.loop import ACCEPTED, REJECTED

    fids = sorted(f.id() for f in under_review.getFeatures())
    dock.review.set_status(fids[:3], ACCEPTED)
    dock.review.set_status(fids[3:4], REJECTED)
    out = tmp_path / "new.osm"
    text = _export(dock, out, source="OAM Banepa")
    assert "Exported the accepted proposals: 3 buildings" in text, _messages(dock)
    assert len(read_buildings(out).geoms) == 3
    ways = ET.parse(out).getroot().findall("way")  # GDAL's osmconf.ini drops source= on read
    assert {w.find("tag[@k='source']").get("v") for w in ways} == {"OAM Banepa"}
    assert any("3 buildings" in m for m in _messages(dock, Qgis.Success))


def test_export_without_accepted_writes_all_new_but_rejected_and_warns(dock, under_review,
                                                                       tmp_path):
    from ml_core.review.loop import REJECTED

    dock.review.set_status([next(under_review.getFeatures()).id()], REJECTED)
    out = tmp_path / "new.geojson"
    text = _export(dock, out)
    assert "none accepted yet" in text and "390 buildings" in text, _messages(dock)
    src = gdal.OpenEx(str(out))
    assert src.GetLayer(0).GetFeatureCount() == 390
    assert src.GetLayer(0).GetSpatialRef().GetAuthorityCode(None) == "4326"
    # the sample's hand-drawn outlines are partly unsquare: one warning line per building
    assert "written with a warning:" in text and "proposal fid" in text


def test_export_refusing_flagged_writes_nothing(dock, under_review, tmp_path):
    out = tmp_path / "new.osm"
    text = _export(dock, out, refuse=True)
    assert text.startswith("Nothing exported") and "flagged" in text
    assert any("flagged" in m and "Nothing was written" in m for m in _messages(dock))
    assert not out.exists() and list(tmp_path.glob("new*")) == []


def test_export_to_an_unwritable_path_is_a_clear_message(dock, under_review, tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    out = blocker / "new.osm"
    text = _export(dock, out)
    assert "is not a folder" in text and "Choose another output path" in text
    assert any("is not a folder" in m for m in _messages(dock))
    assert blocker.read_text() == "a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["footprints.gpkg", "notes.txt"]


def test_export_never_replaces_the_chosen_osm_extract(dock, under_review, tmp_path):
    extract = squares_osm(tmp_path / "mapped.osm", [(85.5208, 27.6322, {"building": "yes"})])
    before = extract.read_bytes()
    dock.inputs.buildings_file.setFilePath(str(extract))
    _export(dock, extract)
    assert any("is also an input" in m and "mapped.osm" in m for m in _messages(dock))
    assert dock.task is None and extract.read_bytes() == before
    dock.inputs.buildings_file.setFilePath("")


def test_export_without_new_buildings_or_output_says_what_to_do(dock, tmp_path):
    dock.export.button.click()
    assert any("Extract buildings first" in m for m in _messages(dock))
    assert dock.task is None and dock.export.button.isEnabled()


def test_export_button_is_locked_while_a_task_runs(dock, under_review, tmp_path):
    dock._set_busy(True)
    assert not dock.export.button.isEnabled()
    dock._set_busy(False)
    assert dock.export.button.isEnabled()
