"""QGIS layers to the file paths ml_core reads (ml_core never sees a QGIS object)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.core import (
    QgsCoordinateTransformContext,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)

from ml_core.errors import InputError, OutputError
from ml_core.osm.read import is_osm


def raster_path(layer: QgsRasterLayer | None) -> str:
    """The GDAL file behind ``layer``; other providers (WMS, XYZ) cannot be read tile by tile."""
    if layer is None or not layer.isValid():
        raise InputError("Choose a raster layer.")
    if layer.providerType() != "gdal":
        raise InputError(f"Raster layer '{layer.name()}' is a {layer.providerType()} layer (a "
                         "tile or map service); bfe reads files. Choose an Area and press Fetch "
                         "(Inputs) to copy its imagery into a GeoTIFF layer, or use Find missing "
                         "buildings, which fetches it itself.")
    return layer.source().split("|")[0]


def osm_extract(layer: QgsVectorLayer) -> Optional[str]:
    """The OSM extract (``.osm``, ``.osm.pbf``) behind ``layer``, or None.

    QGIS shows all of the OSM driver's ``multipolygons`` (landuse, parks...); ml_core reads the
    file itself with its building filter (``ml_core.osm.read``), as the CLI does. Only the
    polygon layer, or the file without a layer name, counts; with a subset filter the user's
    filter decides what a building is, so such a layer is copied as any other.
    """
    if layer.providerType() != "ogr" or layer.subsetString():
        return None
    uri = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
    path = uri.get("path") or ""
    whole_file = not uri.get("layerName") and uri.get("layerId") is None
    polygons = layer.geometryType() == QgsWkbTypes.PolygonGeometry
    return path if is_osm(path) and (whole_file or polygons) else None


def vector_path(layer: QgsVectorLayer | None, out_path: Path, selected_only: bool = False,
                osm_buildings: bool = True) -> str:
    """Write ``layer`` (any provider: memory, PostGIS, a GPKG layer) to a one-layer GeoPackage;
    with ``osm_buildings`` (buildings are asked for) an OSM extract's layer gives the extract
    itself (:func:`osm_extract`), so only its buildings reach ml_core. Pass False for other
    polygons (an area of interest): ml_core would read an extract's buildings instead of them.

    Call on the main thread before a task starts; ml_core then reads a plain file.
    """
    if layer is None or not layer.isValid():
        raise InputError("Choose a polygon layer.")
    extract = osm_extract(layer) if osm_buildings and not selected_only else None
    if extract is not None:
        return extract
    if selected_only and layer.selectedFeatureCount() == 0:
        raise InputError(f"No feature of '{layer.name()}' is selected. "
                         "Select the area polygons first.")
    if layer.featureCount() == 0:
        raise InputError(f"Layer '{layer.name()}' has no features.")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "buildings"
    options.onlySelectedFeatures = selected_only
    # New, unsaved features have no fid yet; writing the key column would collide.
    keys = set(layer.primaryKeyAttributes())
    options.attributes = [i for i in range(layer.fields().count()) if i not in keys]
    error, message, _path, _layer = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, str(out_path), QgsCoordinateTransformContext(), options)
    if error != QgsVectorFileWriter.NoError:
        raise OutputError(f"Cannot write {out_path} from layer '{layer.name()}': {message}.")
    return str(out_path)



def base_model(path: str | None) -> str | None:
    """The chosen base model, else ml_core's bundled one, else None (train from scratch)."""
    if path:
        return path
    from ml_core.learn.train import DEFAULT_BASE  # imports torch: call from a task or an algorithm

    return str(DEFAULT_BASE) if DEFAULT_BASE.exists() else None
