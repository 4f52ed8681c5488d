"""Complete areas: polygons where the building layer is known to be fully mapped.

Drawn with :class:`CompleteAreaTool` (left click adds a vertex, right click closes the
polygon, Esc starts over) into bfe's own memory layer "bfe complete areas", or taken from any
polygon layer the user picks. A complete area only adds certainty: inside it, whatever is
neither mapped nor accepted counts as background; outside it the labels do not change
(``ml_core.review.loop.round_labels``).
"""

from __future__ import annotations

from typing import Optional

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsLayerTreeGroup,
    QgsPointXY,
    QgsProject,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeyEvent

LAYER_NAME = "bfe complete areas"


def complete_area_layer(crs: QgsCoordinateReferenceSystem,
                        project: Optional[QgsProject] = None,
                        group: Optional[QgsLayerTreeGroup] = None) -> QgsVectorLayer:
    """bfe's memory layer of complete areas in ``project`` (created on first use, on top of
    ``group``, bfe's group of the raster, when given)."""
    project = project or QgsProject.instance()
    for layer in project.mapLayersByName(LAYER_NAME):
        if layer.providerType() == "memory":
            return layer
    layer = QgsVectorLayer(f"Polygon?crs={crs.authid()}", LAYER_NAME, "memory")
    layer.renderer().symbol().setColor(QColor(0, 120, 255, 50))
    project.addMapLayer(layer, group is None)
    if group is not None:
        group.insertLayer(0, layer)
    return layer


def add_area(layer: QgsVectorLayer, geometry: QgsGeometry,
             crs: QgsCoordinateReferenceSystem) -> None:
    """Store a polygon given in ``crs`` in the complete-area layer (bfe's own: committed)."""
    geometry = QgsGeometry(geometry)
    geometry.transform(QgsCoordinateTransform(crs, layer.crs(), QgsProject.instance()))
    feature = QgsFeature(layer.fields())
    feature.setGeometry(geometry)
    layer.dataProvider().addFeatures([feature])
    layer.updateExtents()
    layer.triggerRepaint()


class CompleteAreaTool(QgsMapTool):
    """Digitise complete-area polygons on the canvas; each finished one is emitted and stored."""

    drawn = pyqtSignal(QgsGeometry)

    def __init__(self, canvas: QgsMapCanvas, layer: QgsVectorLayer) -> None:
        super().__init__(canvas)
        self.layer = layer
        self.points: list[QgsPointXY] = []
        self.band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self.band.setColor(QColor(0, 120, 255, 120))

    def canvasMoveEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 (Qt API)
        if self.points:
            self._show([*self.points, event.mapPoint()])

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 (Qt API)
        if event.button() == Qt.LeftButton:
            self.points.append(event.mapPoint())
            self._show(self.points)
        elif event.button() == Qt.RightButton:
            self.finish()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt API)
        if event.key() == Qt.Key_Escape:
            self.reset()

    def finish(self) -> Optional[QgsGeometry]:
        """Close the polygon (at least three vertices), store and emit it; None otherwise."""
        points, geometry = self.points, None
        self.reset()
        if len(points) >= 3:
            geometry = QgsGeometry.fromPolygonXY([points])
            add_area(self.layer, geometry, self.canvas().mapSettings().destinationCrs())
            self.drawn.emit(geometry)
        return geometry

    def reset(self) -> None:
        self.points = []
        self.band.reset(QgsWkbTypes.PolygonGeometry)

    def deactivate(self) -> None:
        self.reset()
        super().deactivate()

    def _show(self, points: list) -> None:
        self.band.setToGeometry(QgsGeometry.fromPolygonXY([points]), None)
