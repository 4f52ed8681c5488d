"""Export for OSM: where the new buildings go (.osm for JOSM, or GeoJSON), the ``source=``
tag, what flagged geometry does, and the result of the last export.

What is exported follows the review: the accepted proposals once any is accepted, else every
new building but the rejected ones (``ml_core.osm.export.export_buildings``, as ``bfe
export`` without and with ``--accepted-only``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from qgis.core import QgsProviderRegistry, QgsVectorLayer
from qgis.gui import QgsFileWidget
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QLabel, QLineEdit, QPushButton, QWidget

from ml_core.errors import InputError
from ml_core.io.atomic import check_not_input
from ml_core.osm.export import ON_FLAGGED, ExportResult

from ..review.accept import accepted_ids

FLAGGED_TEXT = {"warn": "Warn per building, write them", "refuse": "Refuse: write nothing"}
SHOWN_WARNINGS = 10  # warnings listed under the button; all go to the "bfe" log tab


@dataclass
class ExportRequest:
    """One export as the panel describes it: the arguments of ``export_buildings``."""

    footprints: str
    layer: str
    out: str
    source: Optional[str]
    accepted_only: bool
    on_flagged: str


class ExportPanel(QWidget):
    """Output file, ``source=`` text, flagged geometry choice, the button and the result."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.output = QgsFileWidget()
        self.output.setStorageMode(QgsFileWidget.SaveFile)
        self.output.setFilter("OSM XML for JOSM (*.osm);;GeoJSON (*.geojson)")
        self.output.setToolTip(".osm: new objects for JOSM, nodes shared where buildings meet; "
                               ".geojson: EPSG:4326.")
        self.source = QLineEdit()
        self.source.setPlaceholderText("e.g. the imagery's name")
        self.source.setToolTip("Value of the source= tag of every exported building "
                               "(empty: no tag).")
        self.on_flagged = QComboBox()
        for choice in ON_FLAGGED:
            self.on_flagged.addItem(FLAGGED_TEXT[choice], choice)
        self.on_flagged.setToolTip("Crossing, unsquare, tiny or sliver buildings. Proposals "
                                   "overlapping mapped buildings are never written.")
        self.button = QPushButton("Export for OSM")
        self.button.setToolTip("The accepted proposals once you accepted any, else all new "
                               "buildings but the rejected ones; moved back into OSM's frame.")
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextSelectableByMouse)
        form = QFormLayout(self)
        form.addRow("Export to", self.output)
        form.addRow("source=", self.source)
        form.addRow("Flagged", self.on_flagged)
        form.addRow(self.button)
        form.addRow(self.result)

    def request(self, layer: Optional[QgsVectorLayer],
                protected: Sequence[str] = ()) -> ExportRequest:
        """The export of ``layer`` (a bfe new-buildings layer) to the chosen file; InputError
        when there is nothing to export or no output file, OutputError when the file is one of
        ``protected`` (the user's building files, e.g. the OSM extract) or the footprints."""
        if layer is None or sip.isdeleted(layer):
            raise InputError("Extract buildings first: there are no new buildings to export.")
        if layer.isEditable() and layer.isModified():
            raise InputError(f"Save or discard the edits of '{layer.name()}' first: the export "
                             "reads the saved layer.")
        uri = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
        if layer.providerType() != "ogr" or not uri.get("layerName"):
            raise InputError(f"Layer '{layer.name()}' is not a bfe new-buildings layer (a layer "
                             "of a footprints GeoPackage); export the one an extraction added.")
        out = self.output.filePath().strip()
        if not out:
            raise InputError("Choose where to export: an .osm file (for JOSM) or a .geojson "
                             "file.")
        check_not_input(out, uri["path"], *protected)  # the export would replace it whole
        return ExportRequest(uri["path"], uri["layerName"], out,
                             self.source.text().strip() or None, bool(accepted_ids(layer)),
                             self.on_flagged.currentData())

    def show_result(self, text: str) -> None:
        """The last export's outcome (or why it failed), under the button."""
        self.result.setText(text)


def describe_export(result: ExportResult, accepted_only: bool) -> str:
    """What an export wrote (``ExportResult.summary``), which proposals, and its warnings."""
    which = ("the accepted proposals" if accepted_only
             else "all new buildings but the rejected ones (none accepted yet)")
    lines = [f"Exported {which}: {result.summary()}"]
    if result.warnings:
        lines.append(f"{len(result.warnings)} flagged building(s) written with a warning:")
        lines += result.warnings[:SHOWN_WARNINGS]
        if len(result.warnings) > SHOWN_WARNINGS:
            lines.append(f"and {len(result.warnings) - SHOWN_WARNINGS} more (the 'bfe' log tab "
                         "lists them all).")
    return "\n".join(lines)
