"""The "Building footprints (bfe)" Processing provider."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .drop_labels import DropLabels
from .export_osm import ExportOsm
from .extract_cluster import ExtractCluster
from .extract_footprints import ExtractFootprints
from .finetune import Finetune
from .predict_cluster import PredictCluster
from .predict_probability import PredictProbability
from .rasterize_labels import RasterizeLabels

ALGORITHMS = (RasterizeLabels, DropLabels, Finetune, PredictProbability, ExtractFootprints,
              PredictCluster, ExtractCluster, ExportOsm)


class BfeProvider(QgsProcessingProvider):
    """Provider id ``bfe``: algorithms are ``bfe:rasterise_labels`` and so on."""

    def id(self) -> str:
        return "bfe"

    def name(self) -> str:
        return "Building footprints (bfe)"

    def icon(self) -> QIcon:
        return QIcon(str(Path(__file__).resolve().parent.parent / "icon.png"))

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS API)
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())
