"""Extract footprints on a Dask cluster: "Predict building probability on a Dask cluster" and
"Extract footprints" in one run, as ``bfe extract --workers N`` / ``--scheduler ADDRESS``.

The probability raster is a temporary file; only the footprints GeoPackage (layers footprints
and new_buildings) is written where the user asks. Progress: the share of finished cluster
tasks (85 %), then the extraction; Cancel leaves no output.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingUtils

from ml_core.config import ExtractOptions, PredictOptions

from ..tasks import PREDICT_SHARE, stage_progress
from .extract_footprints import add_footprint_parameters, extract_to_output
from .predict_cluster import PredictCluster


class ExtractCluster(PredictCluster):
    NAME = "extract_cluster"
    LABEL = "Extract footprints on a Dask cluster"
    HELP = ("Predicts a large raster, a VRT or a folder of GeoTIFFs on a Dask cluster, as "
            "'Predict building probability on a Dask cluster' does, and extracts the footprints "
            "from the result, as 'Extract footprints' does (layer 'footprints', and the ones not "
            "in the existing buildings in layer 'new_buildings'). The footprints equal those of "
            "a run in one process. Needs Dask (pip install 'dask[distributed]').")
    OPTIONS = (PredictOptions, ExtractOptions)
    PRIMARY = ("device", "threshold", "min_area")
    CORE = (*PredictCluster.CORE, "ml_core.infer.extract")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        self.add_cluster_inputs()
        add_footprint_parameters(self)

    def run_step(self, parameters, context, feedback, progress, cancel) -> dict:
        probability = QgsProcessingUtils.generateTempFilename("probability.tif")
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        self.predict(parameters, context, feedback, probability,
                     stage_progress(progress, 0.0, PREDICT_SHARE), cancel,
                     beside=str(Path(out).resolve().parent))
        return extract_to_output(self, probability, parameters, context,
                                 stage_progress(progress, PREDICT_SHARE, 1.0 - PREDICT_SHARE),
                                 cancel)
