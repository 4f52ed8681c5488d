"""Each bfe Processing algorithm through processing.run, with parameters from ml_core.config."""

from __future__ import annotations

from dataclasses import fields

import pytest
from osgeo import gdal, ogr
from qgis.core import (
    QgsApplication,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameters,
    QgsProcessingParameterVectorLayer,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

from ml_core.config import (
    ExtractOptions,
    LossOptions,
    PredictOptions,
    RasterizeOptions,
    TrainOptions,
)

from .conftest import engine_ready

ALGORITHMS = {"rasterise_labels": (RasterizeOptions,), "drop_labels": (),
              "finetune": (TrainOptions, RasterizeOptions, LossOptions),
              "predict_probability": (PredictOptions,), "extract_footprints": (ExtractOptions,)}


@pytest.fixture
def run(qgis_processing, plugin):
    """``processing.run`` with the bfe provider registered by the plugin."""
    import processing

    return processing.run


@pytest.mark.parametrize(("name", "options"), ALGORITHMS.items())
def test_parameters_are_declared_from_the_config(plugin, name, options):
    algorithm = QgsApplication.processingRegistry().algorithmById(f"bfe:{name}")
    assert algorithm is not None
    declared = {p.name() for p in algorithm.parameterDefinitions()}
    assert {f.name for cls in options for f in fields(cls)} <= declared


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
    engine_ready("ml_core.learn.train", "ml_core.infer.predict", "ml_core.infer.extract")
    raster, buildings = layers
    from ml_core.learn.losses import LOSSES
    from ml_core.learn.modelfile import read_card

    model = run("bfe:finetune", {"INPUT": raster, "BUILDINGS": buildings, "epochs": 1,
                                 "steps_per_epoch": 2, "batch_size": 2, "crop_size": 64,
                                 "device": TrainOptions.__dataclass_fields__["device"]
                                 .metadata["choices"].index("cpu"),
                                 "loss": list(LOSSES).index("lace"), "lace_tau": 0.5,
                                 "lace_prior": "0.8, 0.1, 0.07, 0.03", "unknown_margin": 1,
                                 "instance": False,
                                 "OUTPUT": str(tmp_path / "m.safetensors")})["OUTPUT"]
    card = read_card(model)  # the advanced loss options reached training
    assert (card.loss, card.loss_params["tau"]) == ("lace", 0.5)
    assert tuple(card.loss_params["prior"]) == (0.8, 0.1, 0.07, 0.03)  # the 4-class base
    prob = run("bfe:predict_probability", {"INPUT": raster, "MODEL": model, "tile_size": 128,
                                           "overlap": 16, "OUTPUT": str(tmp_path / "p.tif")})
    result = run("bfe:extract_footprints", {"INPUT": prob["OUTPUT"], "EXISTING": buildings,
                                            "OUTPUT": str(tmp_path / "f.gpkg")})
    for key in ("FOOTPRINTS", "NEW_BUILDINGS"):
        assert QgsVectorLayer(result[key], key, "ogr").isValid()


def building_pixels(path: str) -> int:
    """The number of building pixels (value 1) in a label mask."""
    return int((gdal.Open(path).ReadAsArray() == 1).sum())


def modeler_child(algorithm_id: str, child_id: str,
                  sources: dict) -> QgsProcessingModelChildAlgorithm:
    """A child algorithm as the Modeler's dialog makes it: every input has a source, the
    ones not in ``sources`` a static value of their default."""
    child = QgsProcessingModelChildAlgorithm(algorithm_id)
    child.setChildId(child_id)
    child.setDescription(child.algorithm().displayName())
    for param in child.algorithm().parameterDefinitions():
        if param.isDestination():
            continue
        if param.name() in sources:
            child.addParameterSources(param.name(), [sources[param.name()]])
        elif param.defaultValue() is not None:
            child.addParameterSources(param.name(), [QgsProcessingModelChildParameterSource
                                                     .fromStaticValue(param.defaultValue())])
    return child


def drop_then_rasterise_model() -> QgsProcessingModelAlgorithm:
    """A Graphical Modeler model: drop labels, then rasterise the kept buildings."""
    source = QgsProcessingModelChildParameterSource
    model = QgsProcessingModelAlgorithm("drop_then_rasterise", "bfe tests", "bfetests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("raster", "Raster"),
                            QgsProcessingModelParameter("raster"))
    model.addModelParameter(QgsProcessingParameterVectorLayer(
        "buildings", "Buildings", [QgsProcessing.TypeVectorPolygon]),
        QgsProcessingModelParameter("buildings"))
    model.addModelParameter(QgsProcessingParameterNumber(
        "fraction", "Fraction", QgsProcessingParameterNumber.Double, 0.5),
        QgsProcessingModelParameter("fraction"))

    drop = modeler_child("bfe:drop_labels", "drop", {
        "BUILDINGS": source.fromModelParameter("buildings"),
        "FRACTION": source.fromModelParameter("fraction"), "SEED": source.fromStaticValue(3)})
    assert model.addChildAlgorithm(drop) == "drop"

    rasterise = modeler_child("bfe:rasterise_labels", "rasterise", {
        "INPUT": source.fromModelParameter("raster"),
        "BUILDINGS": source.fromChildOutput("drop", "KEPT"),
        "unknown_margin": source.fromStaticValue(1)})
    mask = QgsProcessingModelOutput("mask", "Label mask")
    mask.setChildId("rasterise")
    mask.setChildOutputName("OUTPUT")
    rasterise.setModelOutputs({"mask": mask})
    assert model.addChildAlgorithm(rasterise) == "rasterise"
    model.updateDestinationParameters()
    return model


def test_algorithms_are_offered_to_the_modeler_and_batch_mode(plugin):
    for name in ALGORITHMS:
        flags = QgsApplication.processingRegistry().algorithmById(f"bfe:{name}").flags()
        assert flags & QgsProcessingAlgorithm.FlagSupportsBatch
        assert not flags & QgsProcessingAlgorithm.FlagHideFromModeler


def test_modeler_chains_drop_labels_into_rasterise_labels(run, layers, tmp_path):
    raster, buildings = layers
    model = drop_then_rasterise_model()
    assert model.validate() == (True, [])
    # the connection the Modeler's dialog offers: drop labels' kept layer for BUILDINGS
    offered = model.availableSourcesForChild(
        "rasterise", [QgsProcessingParameterVectorLayer.typeName()],
        [QgsProcessingOutputVectorLayer.typeName()], [QgsProcessing.TypeVectorPolygon])
    assert QgsProcessingModelChildParameterSource.fromChildOutput("drop", "KEPT") in offered
    assert {p.name() for p in model.destinationParameterDefinitions()} == {"rasterise:mask"}

    full = run("bfe:rasterise_labels", {"INPUT": raster, "BUILDINGS": buildings,
                                        "unknown_margin": 1,
                                        "OUTPUT": str(tmp_path / "full.tif")})["OUTPUT"]
    saved = tmp_path / "drop_then_rasterise.model3"
    assert model.toFile(str(saved))
    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(saved))
    assert loaded.childAlgorithm("rasterise").parameterSources()["BUILDINGS"] == [
        QgsProcessingModelChildParameterSource.fromChildOutput("drop", "KEPT")]

    masks = []
    for label, instance in (("built", model), ("loaded", loaded)):
        out = tmp_path / f"{label}.tif"
        result = run(instance, {"raster": raster, "buildings": buildings, "fraction": 0.5,
                                "rasterise:mask": str(out)}, feedback=QgsProcessingFeedback())
        assert out.exists()
        assert result["rasterise:mask"] == str(out)
        layer = QgsRasterLayer(str(out), label)
        assert (layer.width(), layer.height()) == (raster.width(), raster.height())
        assert layer.crs() == raster.crs()
        masks.append(building_pixels(str(out)))
    assert 0 < masks[0] < building_pixels(full)
    assert masks[1] == masks[0]  # the same seed, whether built in code or read from .model3


def test_batch_rows_run_with_their_own_values(run, layers, tmp_path):
    _, buildings = layers
    rows = [{"BUILDINGS": buildings, "FRACTION": fraction, "SEED": 7,
             "OUTPUT": str(tmp_path / f"row{i}.gpkg")} for i, fraction in enumerate((0.3, 0.7))]
    dropped = []
    for row in rows:
        run("bfe:drop_labels", row)
        src = ogr.Open(row["OUTPUT"])
        dropped.append(src.GetLayerByName("dropped").GetFeatureCount())
    total = buildings.featureCount()
    assert dropped[0] < dropped[1]
    assert dropped == [round(0.3 * total), round(0.7 * total)]


@pytest.mark.parametrize("name", ALGORITHMS)
def test_parameter_definitions_round_trip_through_variant_maps(plugin, name):
    algorithm = QgsApplication.processingRegistry().algorithmById(f"bfe:{name}")
    for param in algorithm.parameterDefinitions():
        copy = QgsProcessingParameters.parameterFromVariantMap(param.toVariantMap())
        assert copy is not None, param.name()
        assert type(copy) is type(param), param.name()
        assert copy.toVariantMap() == param.toVariantMap(), param.name()
        assert (copy.name(), copy.flags(), copy.defaultValue()) == (
            param.name(), param.flags(), param.defaultValue())
