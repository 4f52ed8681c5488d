"""Drop labels: remove a seeded share of the buildings, to simulate incomplete OSM."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorLayer,
)

from .base import BfeAlgorithm, vector_input_path


class DropLabels(BfeAlgorithm):
    NAME = "drop_labels"
    LABEL = "Drop labels (simulate incomplete OSM)"
    HELP = ("Removes a seeded random share of the buildings. The GeoPackage holds the kept "
            "'buildings' and the 'dropped' ones, which measure how many missing buildings bfe "
            "finds.")

    CORE = ("ml_core.labels.rasterize",)

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterVectorLayer(
            "BUILDINGS", "Building polygons", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterNumber(
            "FRACTION", "Share of buildings to drop", QgsProcessingParameterNumber.Double, 0.5,
            minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(
            "SEED", "Random seed", QgsProcessingParameterNumber.Integer, 0, minValue=0))
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT", "Output GeoPackage", "GeoPackage (*.gpkg)"))
        self.addOutput(QgsProcessingOutputVectorLayer("KEPT", "Kept buildings"))
        self.addOutput(QgsProcessingOutputVectorLayer("DROPPED", "Dropped buildings"))

    def run_step(self, parameters, context, feedback, progress, cancel) -> dict:
        from ml_core.labels.rasterize import drop_buildings

        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        result = drop_buildings(vector_input_path(self, "BUILDINGS", parameters, context),
                                self.parameterAsDouble(parameters, "FRACTION", context),
                                self.parameterAsInt(parameters, "SEED", context), out)
        feedback.pushInfo(str(result))
        return {"OUTPUT": out, "KEPT": f"{out}|layername=buildings",
                "DROPPED": f"{out}|layername=dropped"}
