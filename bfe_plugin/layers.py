"""Add bfe results to the project as styled layers inside one group per input raster.

Each name says what the layer holds, then the run: ``new buildings · 2026-12-01 10:02, model
base_unet`` (:func:`run_label`), so results of several runs stay apart in the layer tree.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional, Union

from qgis.core import QgsLayerTreeGroup, QgsMapLayer, QgsProject, QgsRasterLayer, QgsVectorLayer

from ml_core.errors import OutputError

STYLES = Path(__file__).resolve().parent / "styles"
GROUP_PREFIX = "bfe: "
SEPARATOR = " · "  # between what a layer holds and the run that made it


def model_label(model: Union[str, Path]) -> str:
    """A model's short name: the file's stem, or the run folder of a fine-tuned ``model``."""
    path = Path(model)
    return f"fine-tuned in {path.parent.name}" if path.stem == "model" else path.stem


def run_label(model: Union[str, Path, None], when: Optional[datetime] = None) -> str:
    """When a result was made and by which model, e.g. ``2026-12-01 10:02, model base_unet``
    (the date alone without a model)."""
    date = f"{(when or datetime.now()):%Y-%m-%d %H:%M}"
    return f"{date}, model {model_label(model)}" if model else date


def layer_name(what: str, run: str = "") -> str:
    """``what`` (what the layer holds), followed by the run when given."""
    return f"{what}{SEPARATOR}{run}" if run else what


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


def add_mask(path: Path, group: QgsLayerTreeGroup, name: str = "labels (partial mask)",
             run: str = "") -> QgsRasterLayer:
    """The label mask; 255 (unknown) is drawn, not treated as nodata."""
    layer = QgsRasterLayer(str(path), layer_name(name, run))
    if layer.isValid():
        layer.dataProvider().setUseSourceNoDataValue(1, False)
    return _add(layer, "mask", group)


def add_probability(path: Path, group: QgsLayerTreeGroup, run: str = "") -> QgsRasterLayer:
    """The building probability raster (0..1), semi-transparent over the imagery."""
    return _add(QgsRasterLayer(str(path), layer_name("building probability", run)),
                "probability", group)


def add_footprints(gpkg: Path, group: QgsLayerTreeGroup,
                   run: str = "") -> tuple[QgsVectorLayer, QgsVectorLayer]:
    """The ``footprints`` and ``new_buildings`` layers of an extraction GeoPackage."""
    footprints = QgsVectorLayer(f"{gpkg}|layername=footprints",
                                layer_name("footprints", run), "ogr")
    new = QgsVectorLayer(f"{gpkg}|layername=new_buildings", layer_name("new buildings", run),
                         "ogr")
    return _add(footprints, "footprints", group), _add(new, "new_buildings", group)


def add_hints(gpkg: Path, group: QgsLayerTreeGroup, run: str = "") -> QgsVectorLayer:
    """The ``hints`` layer ("look here first"), styled by ``reason``."""
    return _add(QgsVectorLayer(f"{gpkg}|layername=hints",
                               layer_name("hints (look here first)", run), "ogr"), "hints", group)


def add_imagery(path: Path, group: QgsLayerTreeGroup, name: str, resolution: str,
                run: str = "") -> QgsRasterLayer:
    """Imagery fetched from a map layer, at the bottom of the group (under the results)."""
    layer = QgsRasterLayer(str(path), layer_name(f"imagery: {name} ({resolution})", run))
    if not layer.isValid():
        raise OutputError(f"QGIS cannot open the fetched imagery {path}.")
    QgsProject.instance().addMapLayer(layer, False)
    group.addLayer(layer)
    return layer
