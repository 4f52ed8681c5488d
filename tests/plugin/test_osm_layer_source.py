"""An .osm file loaded in QGIS as a vector layer reaches ml_core through its building filter:
QGIS shows every multipolygon of the OSM driver (landuse too), the core gets only buildings."""

from __future__ import annotations

import pytest
from osgeo import ogr
from osm_helpers import squares_osm
from qgis.core import QgsProject, QgsVectorLayer

BANEPA = (85.5208, 27.6322)


@pytest.fixture
def osm_layer(tmp_path, qgis_new_project):
    """The multipolygons layer of an extract with one building and one landuse area."""
    path = squares_osm(tmp_path / "extract.osm", [
        (*BANEPA, {"building": "house"}),
        (BANEPA[0] + 0.001, BANEPA[1], {"landuse": "farmland"})])
    layer = QgsVectorLayer(f"{path}|layername=multipolygons", "extract multipolygons", "ogr")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    yield layer, path
    QgsProject.instance().removeAllMapLayers()


def test_qgis_itself_shows_the_landuse_too(osm_layer):
    layer, _ = osm_layer  # the reason for the filter: without it both would reach the core
    assert sorted(str(f["building"] or f["landuse"]) for f in layer.getFeatures()) == \
        ["farmland", "house"]


def test_processing_gets_only_the_building(osm_layer, qgis_processing, plugin, tmp_path):
    import processing

    layer, _ = osm_layer
    out = tmp_path / "kept.gpkg"
    processing.run("bfe:drop_labels", {"BUILDINGS": layer, "FRACTION": 0.0, "SEED": 0,
                                       "OUTPUT": str(out)})
    src = ogr.Open(str(out))
    kept = [(f.GetField("building"), f.GetField("osm_way_id"))
            for f in src.GetLayerByName("buildings")]
    assert kept == [("house", "1")]
    assert src.GetLayerByName("dropped").GetFeatureCount() == 0


def test_the_dock_and_processing_path_is_the_extract_itself(osm_layer, tmp_path):
    from bfe_plugin.sources import vector_path

    layer, path = osm_layer
    assert vector_path(layer, tmp_path / "copy.gpkg") == str(path)
    assert not (tmp_path / "copy.gpkg").exists()
    whole = QgsVectorLayer(str(path), "extract", "ogr")  # the file without a layer name
    assert vector_path(whole, tmp_path / "copy.gpkg") == str(path)


def test_a_subset_filter_is_the_users_choice(osm_layer, tmp_path):
    from bfe_plugin.sources import vector_path

    layer, _ = osm_layer
    layer.setSubsetString("landuse IS NOT NULL")
    copy = vector_path(layer, tmp_path / "copy.gpkg")
    src = ogr.Open(copy)
    assert [f.GetField("landuse") for f in src.GetLayer(0)] == ["farmland"]


def test_an_area_layer_from_an_extract_keeps_all_its_polygons(osm_layer, qgis_canvas, tmp_path):
    from bfe_plugin.widgets.inputs import AREAS, InputsPanel

    layer, path = osm_layer  # e.g. a landuse area as the area to work on
    panel = InputsPanel(qgis_canvas)
    panel.area.setCurrentIndex(AREAS.index("Polygon layer"))
    panel.area_layer.setLayer(layer)
    extent, aoi = panel.area_limits(tmp_path)
    assert extent is None and aoi != str(path)
    src = ogr.Open(aoi)
    assert sorted(str(f.GetField("building") or f.GetField("landuse"))
                  for f in src.GetLayer(0)) == ["farmland", "house"]


def _polygons(path) -> list[str]:
    src = ogr.Open(str(path))
    return sorted(str(f.GetField("building") or f.GetField("landuse")) for f in src.GetLayer(0))


def test_processing_area_inputs_keep_all_polygons(osm_layer, qgis_processing, plugin):
    from qgis.core import QgsApplication, QgsProcessingContext

    from bfe_plugin.processing.base import vector_input_path

    layer, path = osm_layer  # a building input gets the extract; an area of interest all
    algorithm = QgsApplication.processingRegistry().algorithmById("bfe:predict_cluster")
    context = QgsProcessingContext()
    assert vector_input_path(algorithm, "AOI", {"AOI": layer}, context) == str(path)
    aoi = vector_input_path(algorithm, "AOI", {"AOI": layer}, context, osm_buildings=False)
    assert aoi != str(path) and _polygons(aoi) == ["farmland", "house"]


def test_rasterise_labels_complete_areas_from_an_extract_keep_the_landuse(
        qgis_processing, plugin, tmp_path):
    import processing
    from osgeo import gdal
    from qgis.core import QgsRasterLayer

    from .conftest import SAMPLE_RASTER

    # a building, and a landuse square over its eastern half and beyond: where the buildings
    # are complete. Only there the unknown margin around the building becomes background.
    path = squares_osm(tmp_path / "extract.osm", [
        (*BANEPA, {"building": "house"}), (BANEPA[0] + 5e-5, BANEPA[1], {"landuse": "grass"})])
    layer = QgsVectorLayer(f"{path}|layername=multipolygons", "extract multipolygons", "ogr")
    raster = QgsRasterLayer(str(SAMPLE_RASTER), "sample")
    out = processing.run("bfe:rasterise_labels", {
        "INPUT": raster, "BUILDINGS": layer, "COMPLETE_AREA": layer, "instance": False,
        "unknown_margin": 10, "OUTPUT": str(tmp_path / "labels.tif")})["OUTPUT"]
    mask = gdal.Open(out)
    inverse = gdal.InvGeoTransform(mask.GetGeoTransform())

    def value(lon: float, lat: float) -> int:
        col, row = (int(v) for v in gdal.ApplyGeoTransform(inverse, lon, lat))
        return int(mask.GetRasterBand(1).ReadAsArray(col, row, 1, 1)[0, 0])

    lat = BANEPA[1] + 5e-5  # the squares' middle row; they are 1e-4 degrees, pixels ~1.3e-6
    assert value(BANEPA[0] + 5e-5, lat) == 1  # the building
    assert value(BANEPA[0] - 5e-6, lat) == 255  # its margin, west: outside the landuse
    assert value(BANEPA[0] + 1e-4 + 5e-6, lat) == 0  # its margin, east: inside the landuse
    mask = None


def test_review_round_complete_areas_from_an_extract_keep_the_landuse(osm_layer, tmp_path):
    from bfe_plugin.review.refine_task import round_job
    from ml_core.config import JobSpec

    layer, path = osm_layer
    job = round_job("raster.tif", str(path), layer, layer, "model.safetensors", tmp_path,
                    JobSpec())
    assert job.new_buildings == str(path)  # reviewed buildings: the extract's buildings
    assert job.complete_area != str(path) and _polygons(job.complete_area) == \
        ["farmland", "house"]
