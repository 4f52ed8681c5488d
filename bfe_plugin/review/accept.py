"""Copy accepted proposals into a building layer the user owns.

The target is put into edit mode and the features are added inside one edit command, so the
user saves, discards or undoes them as any QGIS edit. bfe never commits the user's layer.
"""

from __future__ import annotations

from collections.abc import Iterable

from qgis.core import (
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsField,
    QgsGeometry,
    QgsProject,
    QgsVectorDataProvider,
    QgsVectorLayer,
    QgsVectorLayerUtils,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import NULL, QVariant

from ml_core.errors import InputError
from ml_core.review.loop import ACCEPTED, STATUS_FIELD

SOURCE_FIELD = "source"
SOURCE_VALUE = "bfe"


def accepted_ids(layer: QgsVectorLayer) -> list[int]:
    """Feature ids of the accepted proposals of a new-buildings layer."""
    request = QgsFeatureRequest().setFilterExpression(f"\"{STATUS_FIELD}\" = '{ACCEPTED}'")
    request.setFlags(QgsFeatureRequest.NoGeometry)
    return [f.id() for f in layer.getFeatures(request)]


def _source_index(target: QgsVectorLayer, add_field: bool) -> int:
    """Index of the ``source`` field; added (in the edit buffer) when asked and possible."""
    index = target.fields().indexOf(SOURCE_FIELD)
    can_add = target.dataProvider().capabilities() & QgsVectorDataProvider.AddAttributes
    if index < 0 and add_field and can_add:
        target.addAttribute(QgsField(SOURCE_FIELD, QVariant.String))
        index = target.fields().indexOf(SOURCE_FIELD)
    return index


def copy_features(source: QgsVectorLayer, target: QgsVectorLayer, ids: Iterable[int],
                  add_source_field: bool = False) -> int:
    """Add the polygons ``ids`` of ``source`` to ``target`` (reprojected) as one undoable edit.

    ``source`` = 'bfe' is set when ``target`` has that field (or gets it: ``add_source_field``
    and a provider that can add fields); otherwise only geometry is copied. Returns the count.
    """
    ids = list(ids)
    if target.geometryType() != QgsWkbTypes.PolygonGeometry:
        raise InputError(f"Layer '{target.name()}' is not a polygon layer; choose a building "
                         "(polygon) layer to copy the accepted buildings into.")
    if not ids:
        return 0
    if not target.isEditable() and not target.startEditing():
        raise InputError(f"Layer '{target.name()}' cannot be edited (read-only). Choose another "
                         "layer, or a new scratch layer, for the accepted buildings.")
    transform = QgsCoordinateTransform(source.crs(), target.crs(), QgsProject.instance())
    target.beginEditCommand(f"bfe: add {len(ids)} accepted building(s)")
    index = _source_index(target, add_source_field)
    attributes = {index: SOURCE_VALUE} if index >= 0 else {}
    features = []
    for feature in source.getFeatures(QgsFeatureRequest().setFilterFids(ids)):
        geometry = QgsGeometry(feature.geometry())
        geometry.transform(transform)
        new = QgsVectorLayerUtils.createFeature(target, geometry, attributes)
        for key in target.primaryKeyAttributes():  # NULL, not the "Autogenerate" clause
            new.setAttribute(key, NULL)
        features += QgsVectorLayerUtils.makeFeatureCompatible(new, target)
    if not target.addFeatures(features):
        target.destroyEditCommand()
        raise InputError(f"QGIS refused to add features to '{target.name()}'.")
    target.endEditCommand()
    target.triggerRepaint()
    return len(features)
