"""Each bfe Processing algorithm through processing.run, with parameters from ml_core.config."""

from __future__ import annotations

from dataclasses import fields

import pytest
from osgeo import gdal, ogr
from qgis.core import QgsApplication, QgsProcessingException, QgsProject, QgsVectorLayer

from ml_core.config import ExtractOptions, PredictOptions, RasterizeOptions, TrainOptions

from .conftest import engine_ready

ALGORITHMS = {"rasterise_labels": RasterizeOptions, "drop_labels": None,
              "finetune": TrainOptions, "predict_probability": PredictOptions,
              "extract_footprints": ExtractOptions}


@pytest.fixture
def run(qgis_processing, plugin):
    """``processing.run`` with the bfe provider registered by the plugin."""
    import processing

    return processing.run


@pytest.mark.parametrize(("name", "options"), ALGORITHMS.items())
def test_parameters_are_declared_from_the_config(plugin, name, options):
    algorithm = QgsApplication.processingRegistry().algorithmById(f"bfe:{name}")
    assert algorithm is not None
    if options is not None:
        declared = {p.name() for p in algorithm.parameterDefinitions()}
        assert {f.name for f in fields(options)} <= declared


def test_rasterise_labels(run, layers, tmp_path):
    raster, buildings = layers
    out = tmp_path / "labels.tif"
    result = run("bfe:rasterise_labels", {"INPUT": raster, "BUILDINGS": buildings,
                                          "unknown_margin": 1, "OUTPUT": str(out)})
    mask = gdal.Open(result["OUTPUT"])
    assert (mask.RasterXSize, mask.RasterYSize) == (raster.width(), raster.height())
    assert mask.GetGeoTransform() == gdal.Open(raster.source()).GetGeoTransform()


def test_drop_labels(run, layers, tmp_path):
    _, buildings = layers
    out = tmp_path / "dropped.gpkg"
    run("bfe:drop_labels", {"BUILDINGS": buildings, "FRACTION": 0.5, "SEED": 1, "OUTPUT": str(out)})
    src = ogr.Open(str(out))
    kept, dropped = (src.GetLayerByName(n).GetFeatureCount() for n in ("buildings", "dropped"))
    assert kept + dropped == buildings.featureCount() and dropped > 0


def test_bad_input_raises_a_processing_error(run, layers, tmp_path):
    raster, _ = layers
    empty = QgsVectorLayer("Polygon?crs=EPSG:4326", "empty", "memory")
    QgsProject.instance().addMapLayer(empty)
    with pytest.raises(QgsProcessingException, match="no features"):
        run("bfe:rasterise_labels", {"INPUT": raster, "BUILDINGS": empty,
                                     "OUTPUT": str(tmp_path / "x.tif")})


def test_finetune_predict_extract(run, layers, tmp_path):
    engine_ready("ml_core.train", "ml_core.predict", "ml_core.extract")
    raster, buildings = layers
    model = run("bfe:finetune", {"INPUT": raster, "BUILDINGS": buildings, "epochs": 1,
                                 "steps_per_epoch": 2, "batch_size": 2, "crop_size": 64,
                                 "device": TrainOptions.__dataclass_fields__["device"]
                                 .metadata["choices"].index("cpu"),
                                 "OUTPUT": str(tmp_path / "m.safetensors")})["OUTPUT"]
    prob = run("bfe:predict_probability", {"INPUT": raster, "MODEL": model, "tile_size": 128,
                                           "overlap": 16, "OUTPUT": str(tmp_path / "p.tif")})
    result = run("bfe:extract_footprints", {"INPUT": prob["OUTPUT"], "EXISTING": buildings,
                                            "OUTPUT": str(tmp_path / "f.gpkg")})
    for key in ("FOOTPRINTS", "NEW_BUILDINGS"):
        assert QgsVectorLayer(result[key], key, "ogr").isValid()
