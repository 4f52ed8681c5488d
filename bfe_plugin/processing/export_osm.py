"""Export for OSM: the new buildings of a footprints GeoPackage as .osm (JOSM) or GeoJSON."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterString,
)

from ml_core.osm.export import NEW_LAYER, ON_FLAGGED

from .base import BfeAlgorithm


class ExportOsm(BfeAlgorithm):
    NAME = "export_osm"
    LABEL = "Export new buildings for OSM (JOSM .osm or GeoJSON)"
    HELP = ("Writes the new buildings of a footprints GeoPackage (all but the rejected ones, or "
            "only the accepted ones) for OSM editing: an .osm file for JOSM (new objects with "
            "negative ids, nodes shared where buildings meet, building=yes and your source= "
            "tag) or GeoJSON in EPSG:4326. Buildings are moved back into OSM's frame by the "
            "offset found at extraction. Flagged geometry (crossing, unsquare, tiny, sliver) "
            "is written with a warning per building, or refused; proposals overlapping mapped "
            "buildings are never written.")

    CORE = ("ml_core.osm.export",)

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterFile(
            "FOOTPRINTS", "Footprints GeoPackage (from Extract buildings)", extension="gpkg"))
        self.addParameter(QgsProcessingParameterString("LAYER", "Layer", NEW_LAYER))
        self.addParameter(QgsProcessingParameterString(
            "SOURCE", "source= tag (e.g. the imagery's name)", "", optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            "ACCEPTED_ONLY", "Only the proposals accepted in review", False))
        self.addParameter(QgsProcessingParameterEnum(
            "ON_FLAGGED", "Flagged geometry", options=list(ON_FLAGGED), defaultValue=0))
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT", "Output file", "OSM XML for JOSM (*.osm);;GeoJSON (*.geojson)"))

    def run_step(self, parameters, context, feedback, progress, cancel) -> dict:
        from ml_core.osm.export import export_buildings

        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        result = export_buildings(
            self.parameterAsFile(parameters, "FOOTPRINTS", context), out,
            source=self.parameterAsString(parameters, "SOURCE", context) or None,
            layer=self.parameterAsString(parameters, "LAYER", context),
            accepted_only=self.parameterAsBoolean(parameters, "ACCEPTED_ONLY", context),
            on_flagged=ON_FLAGGED[self.parameterAsEnum(parameters, "ON_FLAGGED", context)],
            progress=progress)
        for line in result.warnings:
            feedback.pushWarning(line)
        feedback.pushInfo(f"{result.buildings} buildings ({result.nodes} nodes, "
                          f"{result.shared_nodes} shared) written to {out}.")
        return {"OUTPUT": out, "BUILDINGS": result.buildings}
