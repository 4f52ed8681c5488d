"""QGIS layers to the file paths ml_core reads (ml_core never sees a QGIS object)."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsCoordinateTransformContext,
    QgsRasterLayer,
    QgsVectorFileWriter,
    QgsVectorLayer,
)

from ml_core.errors import InputError, OutputError


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


def vector_path(layer: QgsVectorLayer | None, out_path: Path, selected_only: bool = False) -> str:
    """Write ``layer`` (any provider: memory, OSM, PostGIS, a GPKG layer) to a one-layer GeoPackage.

    Call on the main thread before a task starts; ml_core then reads a plain file.
    """
    if layer is None or not layer.isValid():
        raise InputError("Choose a polygon layer.")
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
