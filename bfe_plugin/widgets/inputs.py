"""Input choices: raster with its bands, building layer, and the area to work on."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.core import (
    QgsCoordinateTransform,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.gui import QgsCheckableComboBox, QgsMapCanvas, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QWidget

from ..sources import raster_path, vector_path

AREAS = ("Whole raster", "Current canvas extent", "Selected features", "Polygon layer")


class InputsPanel(QWidget):
    """Raster (raster layers only), bands, buildings (polygon layers only) and area."""

    def __init__(self, canvas: QgsMapCanvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.raster_combo = QgsMapLayerComboBox()
        self.raster_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.bands = QgsCheckableComboBox()
        self.bands.setDefaultText("default (RGB or the model's bands)")
        self.bands.setToolTip("Bands fed to the model, in order. None checked: the model card's "
                              "bands, or RGB for a new model.")
        self.buildings_combo = QgsMapLayerComboBox()
        self.buildings_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.buildings_combo.setToolTip("Existing buildings, e.g. from OSM (QuickOSM, an OSM file, "
                                        "a GeoPackage or a shapefile). They may be incomplete.")
        self.area = QComboBox()
        self.area.addItems(AREAS)
        self.area_layer = QgsMapLayerComboBox()
        self.area_layer.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.area_layer.setToolTip("Polygons limiting the extraction (all, or the selected ones).")
        form = QFormLayout(self)
        form.addRow("Raster", self.raster_combo)
        form.addRow("Bands", self.bands)
        form.addRow("Buildings", self.buildings_combo)
        form.addRow("Area", self.area)
        form.addRow("Area polygons", self.area_layer)
        self.area.currentIndexChanged.connect(self._area_changed)
        self.raster_combo.layerChanged.connect(self._raster_changed)
        self._area_changed()
        self._raster_changed()

    def _area_changed(self) -> None:
        self.area_layer.setEnabled(self.area.currentIndex() >= 2)

    def _raster_changed(self) -> None:
        self.bands.clear()
        layer = self.raster_layer()
        if layer is not None:
            for band in range(1, layer.bandCount() + 1):
                self.bands.addItemWithCheckState(layer.bandName(band), 0, band)

    def raster_layer(self) -> Optional[QgsRasterLayer]:
        return self.raster_combo.currentLayer()

    def buildings_layer(self) -> Optional[QgsVectorLayer]:
        return self.buildings_combo.currentLayer()

    def raster(self) -> str:
        """The raster's file path (InputError when there is none or it is not a GDAL file)."""
        return raster_path(self.raster_layer())

    def band_list(self) -> Optional[list[int]]:
        """Checked bands, or None for ml_core's default choice."""
        return [int(b) for b in self.bands.checkedItemsData()] or None

    def buildings(self, folder: Path) -> str:
        """The building layer written to a GeoPackage in ``folder``."""
        return vector_path(self.buildings_layer(), folder / "buildings.gpkg")

    def area_limits(self, folder: Path) -> tuple[Optional[tuple], Optional[str]]:
        """(extent in the raster's CRS, AOI polygon file) for the chosen area; None = unlimited."""
        mode = self.area.currentIndex()
        if mode == 1:
            transform = QgsCoordinateTransform(self.canvas.mapSettings().destinationCrs(),
                                               self.raster_layer().crs(), QgsProject.instance())
            rect = transform.transformBoundingBox(self.canvas.extent())
            return (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()), None
        if mode >= 2:
            return None, vector_path(self.area_layer.currentLayer(), folder / "area.gpkg",
                                     selected_only=mode == 2)
        return None, None
