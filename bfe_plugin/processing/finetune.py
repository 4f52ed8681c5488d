"""Fine-tune: adapt the base U-Net to a raster with its (incomplete) OSM buildings."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
)

from ml_core.config import LossOptions, RasterizeOptions, TrainOptions

from ..sources import base_model
from .base import BfeAlgorithm, parse_bands, raster_input, vector_input_path


class Finetune(BfeAlgorithm):
    NAME = "finetune"
    LABEL = "Fine-tune model"
    HELP = ("Fine-tunes a U-Net on the raster and its building polygons. Unlabelled pixels count "
            "as uncertain, so incomplete OSM data is fine. Writes NAME.safetensors with its "
            "NAME.json model card; cancelling keeps the best checkpoint so far.")
    OPTIONS = (TrainOptions, RasterizeOptions, LossOptions)
    PRIMARY = ("loss", "epochs", "minutes", "device")

    CORE = ("ml_core.learn.train",)

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        self.addParameter(raster_input())
        self.addParameter(QgsProcessingParameterVectorLayer(
            "BUILDINGS", "Building polygons (e.g. OSM)", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterFile(
            "BASE", "Base model (.safetensors; empty: the bundled base model)",
            extension="safetensors", optional=True))
        self.addParameter(QgsProcessingParameterString(
            "BANDS", "Bands, e.g. 1,2,3 (empty: the base model's bands, else RGB)", optional=True))
        self.add_options()
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT", "Fine-tuned model", "Model (*.safetensors)"))
        self.addOutput(QgsProcessingOutputNumber("BEST_VAL_DICE", "Best validation Dice"))

    def run_step(self, parameters, context, feedback, progress, cancel) -> dict:
        from ml_core.learn.train import finetune

        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        base = base_model(self.parameterAsFile(parameters, "BASE", context))
        job = self.read_job(parameters, context)
        result = finetune(self.raster_parameter("INPUT", parameters, context),
                          vector_input_path(self, "BUILDINGS", parameters, context), out,
                          job.train, base=base,
                          bands=parse_bands(self.parameterAsString(parameters, "BANDS", context)),
                          progress=progress, cancel=cancel, rasterize=job.rasterize,
                          loss_options=job.loss)
        feedback.pushInfo(f"Model written: {result.describe()}.")
        return {"OUTPUT": str(result.model_path), "BEST_VAL_DICE": result.best_val_dice}
