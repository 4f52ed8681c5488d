"""Extract footprints: probability raster to polygons, with the buildings OSM lacks flagged."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterVectorLayer,
)

from ml_core.config import ExtractOptions
from ml_core.events import CancelToken, ProgressCallback

from .base import BfeAlgorithm, raster_input, vector_input_path


def add_footprint_parameters(alg: BfeAlgorithm) -> None:
    """The existing buildings, the step's options and the GeoPackage written, with its two
    layers as outputs: shared by every algorithm that extracts footprints."""
    alg.addParameter(QgsProcessingParameterVectorLayer(
        "EXISTING", "Existing buildings (e.g. OSM)", [QgsProcessing.TypeVectorPolygon],
        optional=True))
    alg.add_options()
    alg.addParameter(QgsProcessingParameterFileDestination(
        "OUTPUT", "Footprints GeoPackage", "GeoPackage (*.gpkg)"))
    alg.addOutput(QgsProcessingOutputVectorLayer("FOOTPRINTS", "Footprints"))
    alg.addOutput(QgsProcessingOutputVectorLayer("NEW_BUILDINGS", "New buildings"))


def extract_to_output(alg: BfeAlgorithm, probability: str, parameters: dict,
                      context: QgsProcessingContext, progress: ProgressCallback,
                      cancel: CancelToken) -> dict:
    """Extract footprints from ``probability`` into the ``OUTPUT`` GeoPackage; the outputs."""
    from ml_core.infer.extract import extract_footprints

    out = alg.parameterAsFileOutput(parameters, "OUTPUT", context)
    extract_footprints(probability, out, alg.read_job(parameters, context).extract,
                       existing=vector_input_path(alg, "EXISTING", parameters, context),
                       progress=progress, cancel=cancel)
    return {"OUTPUT": out, "FOOTPRINTS": f"{out}|layername=footprints",
            "NEW_BUILDINGS": f"{out}|layername=new_buildings"}


class ExtractFootprints(BfeAlgorithm):
    NAME = "extract_footprints"
    LABEL = "Extract footprints"
    HELP = ("Thresholds a probability raster into footprint polygons (layer 'footprints') and "
            "lists those not in the existing buildings (layer 'new_buildings').")
    OPTIONS = (ExtractOptions,)
    PRIMARY = ("threshold", "min_area")

    CORE = ("ml_core.infer.extract",)

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        self.addParameter(raster_input("INPUT", "Building probability raster"))
        add_footprint_parameters(self)

    def run_step(self, parameters, context, feedback, progress, cancel) -> dict:
        return extract_to_output(self, self.raster_parameter("INPUT", parameters, context),
                                 parameters, context, progress, cancel)
