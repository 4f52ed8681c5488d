"""Predict probability: tiled, blended building probability over a raster (or part of it)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from ml_core.config import PredictOptions

from .base import BfeAlgorithm, parse_bands, raster_input


class PredictProbability(BfeAlgorithm):
    NAME = "predict_probability"
    LABEL = "Predict building probability"
    HELP = ("Runs a bfe model over the raster in overlapping, blended tiles and writes a "
            "building probability GeoTIFF (0..1).")
    OPTIONS = (PredictOptions,)
    PRIMARY = ("device", "tta")

    CORE = ("ml_core.infer.predict",)

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        self.addParameter(raster_input())
        self.addParameter(QgsProcessingParameterFile("MODEL", "Model (.safetensors)",
                                                     extension="safetensors"))
        self.addParameter(QgsProcessingParameterString(
            "BANDS", "Bands, e.g. 1,2,3 (empty: the model card's bands)", optional=True))
        self.addParameter(QgsProcessingParameterExtent("EXTENT", "Area (empty: whole raster)",
                                                       optional=True))
        self.add_options()
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Probability"))

    def run_step(self, parameters, context, feedback, progress, cancel) -> dict:
        from ml_core.infer.predict import predict_raster

        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        extent = None
        if parameters.get("EXTENT"):
            rect = self.parameterAsExtent(parameters, "EXTENT", context, layer.crs())
            extent = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        predict_raster(self.raster_parameter("INPUT", parameters, context),
                       self.parameterAsFile(parameters, "MODEL", context), out,
                       self.read_job(parameters, context).predict,
                       bands=parse_bands(self.parameterAsString(parameters, "BANDS", context)),
                       extent=extent, progress=progress, cancel=cancel)
        return {"OUTPUT": out}
