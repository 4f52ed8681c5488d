"""Input choices: raster with its bands, building layer or OSM extract file, the area to work
on, and the resolution at which imagery is fetched from a tile or map service (XYZ, WMS,
WMTS)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.core import (
    QgsCoordinateTransform,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsCheckableComboBox, QgsFileWidget, QgsMapCanvas, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QPushButton, QWidget

from ml_core.errors import InputError
from ml_core.osm.read import is_osm

from ..imagery import ImageryRequest, imagery_request
from ..sources import raster_path, vector_path

OSM_FILTER = "OpenStreetMap extract (*.osm *.osm.pbf *.pbf)"
AREAS = ("Whole raster", "Current canvas extent", "Selected features", "Polygon layer")
ZOOMS = tuple(range(16, 22))  # web-map zoom levels offered for fetching (zoom 19: 0.30 m)


class InputsPanel(QWidget):
    """Raster (raster layers only), bands, buildings (polygon layers only, or an OSM extract
    file, which then replaces the layer) and area."""

    def __init__(self, canvas: QgsMapCanvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.raster_combo = QgsMapLayerComboBox()
        self.raster_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.bands = QgsCheckableComboBox()
        self.bands.setDefaultText("default")
        self.bands.setToolTip("Bands fed to the model, in order. None checked (default): the "
                              "model card's bands, or RGB for a new model.")
        self.buildings_combo = QgsMapLayerComboBox()
        self.buildings_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.buildings_combo.setToolTip("Existing buildings, e.g. from OSM (QuickOSM, an OSM file, "
                                        "a GeoPackage or a shapefile). They may be incomplete.")
        self.buildings_file = QgsFileWidget()
        self.buildings_file.setFilter(OSM_FILTER)
        self.buildings_file.setToolTip("An OSM extract (.osm or .osm.pbf, e.g. from Geofabrik "
                                       "or JOSM): its buildings (building=*) are used instead "
                                       "of the layer, with their OSM ids and tags.")
        self.area = QComboBox()
        self.area.addItems(AREAS)
        self.area_layer = QgsMapLayerComboBox()
        self.area_layer.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.area_layer.setToolTip("Polygons limiting the extraction (all, or the selected ones).")
        self.resolution = QComboBox()
        self.resolution.addItem("model's pixel size", None)
        for zoom in ZOOMS:
            self.resolution.addItem(f"zoom {zoom}", zoom)
        self.resolution.setToolTip("For a tile or map service layer (XYZ, WMS, WMTS): the area is "
                                   "fetched into a local GeoTIFF at this resolution first (zoom "
                                   "19 is about 0.3 m per pixel at the equator).")
        self.fetch_button = QPushButton("Fetch")
        self.fetch_button.setToolTip("Fetch the area's imagery from the service layer into a "
                                     "GeoTIFF layer (kept in a cache) and use that layer.")
        fetch_row = QHBoxLayout()
        fetch_row.addWidget(self.resolution, 1)
        fetch_row.addWidget(self.fetch_button)
        form = QFormLayout(self)
        form.addRow("Raster", self.raster_combo)
        form.addRow("Bands", self.bands)
        form.addRow("Buildings", self.buildings_combo)
        form.addRow("or OSM file", self.buildings_file)
        form.addRow("Area", self.area)
        form.addRow("Area polygons", self.area_layer)
        form.addRow("Imagery at", fetch_row)
        self.area.currentIndexChanged.connect(self._area_changed)
        self.raster_combo.layerChanged.connect(self._raster_changed)
        self.buildings_file.fileChanged.connect(
            lambda path: self.buildings_combo.setEnabled(not path.strip()))
        self._area_changed()
        self._raster_changed()

    def _area_changed(self) -> None:
        self.area_layer.setEnabled(self.area.currentIndex() >= 2)

    def _raster_changed(self) -> None:
        self.bands.clear()
        self.resolution.setEnabled(self.needs_fetch())
        self.fetch_button.setEnabled(self.needs_fetch())
        layer = self.raster_layer()
        if layer is not None:
            for band in range(1, layer.bandCount() + 1):
                self.bands.addItemWithCheckState(layer.bandName(band), 0, band)

    def raster_layer(self) -> Optional[QgsRasterLayer]:
        return self.raster_combo.currentLayer()

    def buildings_layer(self) -> Optional[QgsVectorLayer]:
        return self.buildings_combo.currentLayer()

    def needs_fetch(self) -> bool:
        """The raster is a service layer (XYZ, WMS, WMTS...): its imagery is fetched first."""
        layer = self.raster_layer()
        return layer is not None and layer.providerType() != "gdal"

    def area_box(self) -> Optional[QgsRectangle]:
        """The chosen area's bounding box in the raster's CRS; None for the whole raster.

        Canvas extent, the selected features' or the polygon layer's extent (in memory: no
        disk access on the UI thread).
        """
        mode = self.area.currentIndex()
        if mode == 0:
            return None
        if mode == 1:
            crs, rect = self.canvas.mapSettings().destinationCrs(), self.canvas.extent()
        else:
            layer = self.area_layer.currentLayer()
            if layer is None:
                raise InputError("Choose the layer of area polygons.")
            if mode == 2 and layer.selectedFeatureCount() == 0:
                raise InputError(f"No feature of '{layer.name()}' is selected. "
                                 "Select the area polygons first.")
            crs = layer.crs()
            rect = layer.boundingBoxOfSelected() if mode == 2 else layer.extent()
        transform = QgsCoordinateTransform(crs, self.raster_layer().crs(), QgsProject.instance())
        return transform.transformBoundingBox(rect)

    def imagery_request(self, model_pixel_m: float) -> ImageryRequest:
        """What to fetch from the service layer: the chosen area at the chosen resolution."""
        box = self.area_box()
        if box is None:
            raise InputError(f"'{self.raster_layer().name()}' is a service layer covering the "
                             "whole world: choose an Area (canvas extent or polygons) to fetch.")
        zoom = self.resolution.currentData()
        return imagery_request(self.raster_layer(), box, zoom=zoom,
                               metres=None if zoom is not None else model_pixel_m)

    def raster(self) -> str:
        """The raster's file path (InputError when there is none or it is not a GDAL file)."""
        return raster_path(self.raster_layer())

    def band_list(self) -> Optional[list[int]]:
        """Checked bands, or None for ml_core's default choice."""
        return [int(b) for b in self.bands.checkedItemsData()] or None

    def osm_file(self) -> Optional[str]:
        """The chosen OSM extract, None when no file is chosen (InputError: not an OSM file,
        or missing). What it holds is checked by ml_core when the task reads it."""
        path = self.buildings_file.filePath().strip()
        if not path:
            return None
        if not is_osm(path):
            raise InputError(f"Buildings file {path} is not an OSM extract: choose a .osm or "
                             ".osm.pbf file, or clear it to use the building layer.")
        if not Path(path).is_file():
            raise InputError(f"OSM file {path} not found. Check the path.")
        return path

    def has_buildings(self) -> bool:
        """An OSM file or a building layer is chosen."""
        return bool(self.buildings_file.filePath().strip()) or self.buildings_layer() is not None

    def buildings_name(self) -> str:
        """The chosen buildings as the user knows them: the file's name or the layer's."""
        path = self.buildings_file.filePath().strip()
        layer = self.buildings_layer()
        return Path(path).name if path else layer.name() if layer is not None else ""

    def building_files(self) -> list[str]:
        """The files behind the chosen buildings (the OSM file, the layer's file): the user's
        data, which no output may replace."""
        layer = self.buildings_layer()
        files = [self.buildings_file.filePath().strip(),
                 layer.source().split("|")[0] if layer is not None else ""]
        return [f for f in files if f]

    def buildings(self, folder: Path) -> str:
        """The OSM file as chosen (ml_core reads its buildings, as the CLI does), else the
        building layer written to a GeoPackage in ``folder``."""
        return self.osm_file() or vector_path(self.buildings_layer(), folder / "buildings.gpkg")

    def area_limits(self, folder: Path) -> tuple[Optional[tuple], Optional[str]]:
        """(extent in the raster's CRS, AOI polygon file) for the chosen area; None = unlimited."""
        mode = self.area.currentIndex()
        if mode == 1:
            rect = self.area_box()
            return (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()), None
        if mode >= 2:
            return None, vector_path(self.area_layer.currentLayer(), folder / "area.gpkg",
                                     selected_only=mode == 2, osm_buildings=False)
        return None, None
