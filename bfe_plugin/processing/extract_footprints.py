"""Extract footprints: probability raster to polygons, with the buildings OSM lacks flagged."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterVectorLayer,
)

from ml_core.config import ExtractOptions

from .base import BfeAlgorithm, raster_input, vector_input_path


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
        self.addParameter(QgsProcessingParameterVectorLayer(
            "EXISTING", "Existing buildings (e.g. OSM)", [QgsProcessing.TypeVectorPolygon],
            optional=True))
        self.add_options()
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT", "Footprints GeoPackage", "GeoPackage (*.gpkg)"))
        self.addOutput(QgsProcessingOutputVectorLayer("FOOTPRINTS", "Footprints"))
        self.addOutput(QgsProcessingOutputVectorLayer("NEW_BUILDINGS", "New buildings"))

    def run_step(self, parameters, context, feedback, progress, cancel) -> dict:
        from ml_core.infer.extract import extract_footprints

        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        extract_footprints(self.raster_parameter("INPUT", parameters, context), out,
                           self.read_job(parameters, context).extract,
                           existing=vector_input_path(self, "EXISTING", parameters, context),
                           progress=progress, cancel=cancel)
        return {"OUTPUT": out, "FOOTPRINTS": f"{out}|layername=footprints",
                "NEW_BUILDINGS": f"{out}|layername=new_buildings"}
