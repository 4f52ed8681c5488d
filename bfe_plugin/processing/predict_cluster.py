"""Predict probability on a Dask cluster: a city or region, on local worker processes or on a
running scheduler, as the same probability GeoTIFF as "Predict building probability".

Processing runs the algorithm in a background task (QGIS stays responsive); progress is the
share of finished cluster tasks and Cancel stops the job within about 0.25 s, leaving no output.
Dask is optional: without it the algorithm stops with the command that installs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
)

from ml_core.config import ClusterOptions, PredictOptions
from ml_core.errors import BfeError

from ..cluster import default_workers, prepare_cluster
from ..optionspec import option_specs
from .base import BfeAlgorithm, option_parameter, parse_bands, raster_input, vector_input_path


class PredictCluster(BfeAlgorithm):
    NAME = "predict_cluster"
    LABEL = "Predict building probability on a Dask cluster"
    HELP = ("Predicts a large raster, a VRT or a folder of GeoTIFFs (reprojected to the first "
            "file's CRS where CRSs differ) on a Dask cluster: a local one of N worker processes "
            "(by default every core but one; 0: none, in this process), or the running "
            "scheduler at the address given (instead of local workers), whose "
            "workers must have bfe installed and read the raster at the same path. Each worker "
            "reads its own tiles; the result equals 'Predict building probability'. An area of "
            "interest limits the work. Needs Dask (pip install 'dask[distributed]').")
    OPTIONS = (PredictOptions,)
    PRIMARY = ("device",)
    CORE = ("ml_core.infer.predict", "ml_core.infer.cluster.predict")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        self.add_cluster_inputs()
        self.add_options()
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Probability"))

    def add_cluster_inputs(self) -> None:
        """The inputs and cluster parameters of every cluster algorithm: a raster or folder,
        the model, an area of interest, bands, and where to run."""
        raster = raster_input()
        raster.setFlags(raster.flags() | QgsProcessingParameterDefinition.FlagOptional)
        self.addParameter(raster)
        self.addParameter(QgsProcessingParameterFile(
            "FOLDER", "Or a folder of GeoTIFFs", behavior=QgsProcessingParameterFile.Folder,
            optional=True))
        self.addParameter(QgsProcessingParameterFile("MODEL", "Model (.safetensors)",
                                                     extension="safetensors"))
        self.addParameter(QgsProcessingParameterVectorLayer("AOI", "Area of interest",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterString(
            "BANDS", "Bands, e.g. 1,2,3 (empty: the model card's bands)", optional=True))
        for spec in option_specs(ClusterOptions):
            param = option_parameter(spec, advanced=spec.name not in ("workers", "scheduler"))
            if spec.name == "workers":  # the help (from ClusterOptions) says what 0 means
                param.setDefaultValue(default_workers())
            if spec.name == "scheduler":
                param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagOptional)
            self.addParameter(param)

    def prepareAlgorithm(self, parameters, context, feedback) -> bool:  # noqa: N802 (QGIS API)
        from ml_core.infer.cluster import require_dask

        try:
            require_dask()  # here, on the UI thread, like torch: not inside the worker thread
        except BfeError as exc:
            raise QgsProcessingException(str(exc)) from exc
        return super().prepareAlgorithm(parameters, context, feedback)

    def cluster_options(self, parameters, context) -> ClusterOptions:
        """The cluster parameters, ready to start from QGIS (as ``--workers``/``--scheduler``:
        0 workers and no address predict in this process)."""
        cluster = self._read_options(ClusterOptions, parameters, context)
        prepare_cluster(cluster)
        return cluster

    def predict(self, parameters, context, feedback, out: str, progress, cancel,
                beside: Optional[str] = None) -> str:
        """Predict the chosen raster or folder into the probability GeoTIFF ``out`` on the
        chosen cluster; a folder's mosaic VRT lives meanwhile in ``beside`` (default: ``out``'s
        folder), which a scheduler's workers must see too."""
        from ml_core.infer.cluster.predict import predict_anywhere
        from ml_core.infer.cluster.sources import raster_source

        folder = self.parameterAsFile(parameters, "FOLDER", context)
        if not folder and self.parameterAsRasterLayer(parameters, "INPUT", context) is None:
            raise QgsProcessingException("Choose a raster layer or a folder of GeoTIFFs.")
        source = folder or self.raster_parameter("INPUT", parameters, context)
        cluster = self.cluster_options(parameters, context)
        feedback.pushInfo(f"Cluster: {cluster.scheduler or f'{cluster.workers} local workers'}"
                          if cluster.enabled else "In this process (0 workers, no scheduler)")
        with raster_source(source, beside or Path(out).resolve().parent) as raster:
            predict_anywhere(raster, self.parameterAsFile(parameters, "MODEL", context), out,
                             self._read_options(PredictOptions, parameters, context), cluster,
                             bands=parse_bands(self.parameterAsString(parameters, "BANDS",
                                                                      context)),
                             aoi=vector_input_path(self, "AOI", parameters, context,
                                                   osm_buildings=False),
                             progress=progress, cancel=cancel)
        return out

    def run_step(self, parameters, context, feedback, progress, cancel) -> dict:
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        return {"OUTPUT": self.predict(parameters, context, feedback, out, progress, cancel)}
