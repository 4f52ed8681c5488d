"""Rasterise labels: building polygons to a partial mask (1 building, 0 background, 255 unknown)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterVectorLayer,
)

from ml_core.config import RasterizeOptions

from .base import BfeAlgorithm, raster_input, vector_input_path


class RasterizeLabels(BfeAlgorithm):
    NAME = "rasterise_labels"  # the algorithm id in saved models and scripts: kept as it was
    LABEL = "Rasterise labels"
    HELP = ("Burns building polygons onto the raster grid: 1 building, 0 background, 255 unknown. "
            "Inside the optional complete areas unlabelled pixels are background.")
    OPTIONS = (RasterizeOptions,)
    PRIMARY = ("unknown_margin",)

    CORE = ("ml_core.labels.rasterize",)

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        self.addParameter(raster_input())
        self.addParameter(QgsProcessingParameterVectorLayer(
            "BUILDINGS", "Building polygons", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterVectorLayer(
            "COMPLETE_AREA", "Areas where the buildings are completely mapped",
            [QgsProcessing.TypeVectorPolygon], optional=True))
        self.add_options()
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Label mask"))

    def run_step(self, parameters, context, feedback, progress, cancel) -> dict:
        from ml_core.labels.rasterize import rasterize_labels

        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        complete = vector_input_path(self, "COMPLETE_AREA", parameters, context,
                                     osm_buildings=False)  # areas, not buildings
        rasterize_labels(self.raster_parameter("INPUT", parameters, context),
                         vector_input_path(self, "BUILDINGS", parameters, context),
                         out, self.read_job(parameters, context).rasterize,
                         complete_area=complete,
                         progress=progress, cancel=cancel)
        return {"OUTPUT": out}
