"""Add bfe results to the project as styled layers inside one group per input raster."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.core import QgsLayerTreeGroup, QgsMapLayer, QgsProject, QgsRasterLayer, QgsVectorLayer

from ml_core.errors import OutputError

STYLES = Path(__file__).resolve().parent / "styles"
GROUP_PREFIX = "bfe: "


def result_group(raster_name: str, project: Optional[QgsProject] = None) -> QgsLayerTreeGroup:
    """The top-level group ``bfe: <raster>`` (created on first use)."""
    root = (project or QgsProject.instance()).layerTreeRoot()
    name = GROUP_PREFIX + raster_name
    return root.findGroup(name) or root.insertGroup(0, name)


def _add(layer: QgsMapLayer, style: str, group: QgsLayerTreeGroup) -> QgsMapLayer:
    if not layer.isValid():
        raise OutputError(f"QGIS cannot open the result {layer.source()}.")
    layer.loadNamedStyle(str(STYLES / f"{style}.qml"))
    QgsProject.instance().addMapLayer(layer, False)
    group.insertLayer(0, layer)
    return layer


def add_mask(path: Path, group: QgsLayerTreeGroup,
             name: str = "labels (partial mask)") -> QgsRasterLayer:
    """The label mask; 255 (unknown) is drawn, not treated as nodata."""
    layer = QgsRasterLayer(str(path), name)
    if layer.isValid():
        layer.dataProvider().setUseSourceNoDataValue(1, False)
    return _add(layer, "mask", group)


def add_probability(path: Path, group: QgsLayerTreeGroup) -> QgsRasterLayer:
    """The building probability raster (0..1)."""
    return _add(QgsRasterLayer(str(path), "building probability"), "probability", group)


def add_footprints(gpkg: Path, group: QgsLayerTreeGroup) -> tuple[QgsVectorLayer, QgsVectorLayer]:
    """The ``footprints`` and ``new_buildings`` layers of an extraction GeoPackage."""
    footprints = QgsVectorLayer(f"{gpkg}|layername=footprints", "footprints", "ogr")
    new = QgsVectorLayer(f"{gpkg}|layername=new_buildings", "new buildings", "ogr")
    return _add(footprints, "footprints", group), _add(new, "new_buildings", group)


def add_hints(gpkg: Path, group: QgsLayerTreeGroup) -> QgsVectorLayer:
    """The ``hints`` layer ("look here first"), styled by ``reason``."""
    return _add(QgsVectorLayer(f"{gpkg}|layername=hints", "hints (look here first)", "ogr"),
                "hints", group)
