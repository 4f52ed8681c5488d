"""The review panel: step through proposals by score, accept / reject / skip, bulk actions,
copy the accepted ones into a building layer, complete areas, and "fine-tune again".

Keys (while the panel has focus): A accept, R reject, S or Space skip. Decisions go to the
``status`` field of the new-buildings layer, which is bfe's own output, so they are committed
at once. The fine-tune itself is the dock's job: the panel emits ``refine_requested``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
from qgis.core import (
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsGeometry,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsMapCanvas, QgsMapLayerComboBox, QgsRubberBand
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeySequence
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QLabel,
    QPushButton,
    QShortcut,
    QVBoxLayout,
    QWidget,
)

from ml_core.errors import BfeError, InputError
from ml_core.review.loop import ACCEPTED, PROPOSED, REJECTED, STATUS_FIELD, review_order

from ..sources import vector_path
from .accept import accepted_ids, copy_features
from .complete_area import CompleteAreaTool, complete_area_layer

STYLE = Path(__file__).resolve().parent / "styles" / "new_buildings_review.qml"
ZOOM_MARGIN = 2.0  # canvas extent = proposal box grown by this factor


class ReviewPanel(QWidget):
    """Review the proposals of one new-buildings layer (``set_layer``)."""

    refine_requested = pyqtSignal()
    message = pyqtSignal(str)
    error = pyqtSignal(object)  # a BfeError for the message bar (never raised out of a slot)

    def __init__(self, canvas: QgsMapCanvas, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.layer: Optional[QgsVectorLayer] = None
        self.order: list[int] = []
        self.position = 0
        self.copied: set[int] = set()
        self.highlight = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self.highlight.setColor(QColor(255, 200, 0, 200))
        self.highlight.setWidth(3)
        self.highlight.setFillColor(QColor(0, 0, 0, 0))
        self.tool: Optional[CompleteAreaTool] = None
        self.setFocusPolicy(Qt.StrongFocus)
        self._build()
        self.shortcuts = {key: QShortcut(QKeySequence(key), self, self._guard(slot),
                                         context=Qt.WidgetWithChildrenShortcut)
                          for key, slot in (("A", self.accept), ("R", self.reject),
                                            ("S", self.skip), ("Space", self.skip))}
        self._show_current()

    # -- layout -----------------------------------------------------------------------------
    def _guard(self, slot: Callable[[], object]) -> Callable[[], None]:
        """``slot`` for a Qt signal: a user-facing error goes to ``error``, not out of Qt."""

        def run(*_signal_args) -> None:
            try:
                slot()
            except BfeError as exc:
                self.error.emit(exc)

        return run

    def _button(self, text: str, slot, tip: str = "") -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(self._guard(slot))
        button.setToolTip(tip)
        return button

    def _build(self) -> None:
        self.where = QLabel()
        self.where.setWordWrap(True)
        self.order_by = QComboBox()
        for text, order in (("Highest score first", "score"),
                            ("Most uncertain first (score near 0.5)", "uncertainty")):
            self.order_by.addItem(text, order)
        self.order_by.setToolTip("The order in which proposals are stepped through")
        self.order_by.currentIndexChanged.connect(self._guard(self._reorder))
        self.min_score = QDoubleSpinBox()
        self.min_score.setRange(0.0, 1.0)
        self.min_score.setSingleStep(0.05)
        self.min_score.setValue(0.8)
        self.target = QgsMapLayerComboBox()
        self.target.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.add_source = QCheckBox("Add a 'source' field when the layer lacks one")
        self.complete = QgsMapLayerComboBox()
        self.complete.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.complete.setAllowEmptyLayer(True)
        self.complete.setLayer(None)  # complete nowhere unless the user says so
        grid = QGridLayout()
        for col, (text, slot, tip) in enumerate((
                ("◀", self.previous, "Previous proposal"),
                ("Accept (A)", self.accept, "Accept the current proposal"),
                ("Reject (R)", self.reject, "Reject the current proposal"),
                ("Skip (S)", self.skip, "Next proposal, no decision"))):
            grid.addWidget(self._button(text, slot, tip), 0, col)
        grid.addWidget(self._button("Accept all with score ≥", self.accept_above), 1, 0, 1, 3)
        grid.addWidget(self.min_score, 1, 3)
        grid.addWidget(self._button("Reject all in selection", self.reject_selected), 2, 0, 1, 4)
        layout = QVBoxLayout(self)
        layout.addWidget(self.order_by)
        layout.addWidget(self.where)
        layout.addLayout(grid)
        layout.addWidget(QLabel("Copy accepted buildings into"))
        layout.addWidget(self.target)
        layout.addWidget(self.add_source)
        layout.addWidget(self._button("Copy accepted", self.copy_accepted,
                                      "Adds them in edit mode; save or discard as usual"))
        layout.addWidget(QLabel("Complete areas (fully mapped)"))
        layout.addWidget(self.complete)
        layout.addWidget(self._button("Draw complete areas", self.draw_complete_areas,
                                      "Left click: vertex, right click: close, Esc: restart"))
        layout.addWidget(self._button("Fine-tune again", self.refine_requested.emit,
                                      "Next round: OSM + accepted as buildings, rejected as "
                                      "background, from the current model"))

    # -- the layer and the order ------------------------------------------------------------
    def set_layer(self, layer: QgsVectorLayer) -> None:
        """Review ``layer`` (a bfe new-buildings layer): styled, sorted by score, highest first."""
        if layer.fields().indexOf(STATUS_FIELD) < 0:
            raise InputError(f"Layer '{layer.name()}' has no '{STATUS_FIELD}' field; review the "
                             "new buildings layer of a bfe extraction.")
        self.layer = layer
        self.target.setExceptedLayerList([layer])
        layer.loadNamedStyle(str(STYLE))
        layer.triggerRepaint()
        self.copied.clear()
        self._reorder()
        self.setFocus()

    def _reorder(self) -> None:
        """Order the proposals as chosen and go to the first one still to review."""
        if self.layer is None:
            return
        request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry)
        features = sorted((f.id(), f["score"] or 0.0) for f in self.layer.getFeatures(request))
        order = review_order(np.array([score for _, score in features], dtype=float),
                             self.order_by.currentData())
        self.order = [features[i][0] for i in order]
        self.position = 0
        self._go_to_proposed(0)

    @property
    def current(self) -> Optional[int]:
        """Feature id of the proposal under review, or None when there is none."""
        return self.order[self.position] if 0 <= self.position < len(self.order) else None

    def status_of(self, fid: int) -> str:
        return self.layer.getFeature(fid)[STATUS_FIELD] or PROPOSED

    def _go_to_proposed(self, start: int) -> None:
        """Move to the first still-proposed proposal from ``start`` on (wrapping around)."""
        n = len(self.order)
        for step in range(n):
            i = (start + step) % n
            if self.status_of(self.order[i]) == PROPOSED:
                self.position = i
                break
        else:
            self.position = min(start, n - 1) if n else 0
        self._show_current()

    def _show_current(self) -> None:
        fid = self.current
        self.highlight.reset(QgsWkbTypes.PolygonGeometry)
        if fid is None:
            self.where.setText("No proposals to review: extract buildings first.")
            return
        feature = self.layer.getFeature(fid)
        left = sum(self.status_of(f) == PROPOSED for f in self.order)
        self.where.setText(f"{self.position + 1}/{len(self.order)} · score "
                           f"{feature['score']:.2f} · {feature[STATUS_FIELD]} · {left} to review")
        self._zoom(feature.geometry())

    def _zoom(self, geometry: QgsGeometry) -> None:
        transform = QgsCoordinateTransform(self.layer.crs(),
                                           self.canvas.mapSettings().destinationCrs(),
                                           QgsProject.instance())
        shown = QgsGeometry(geometry)
        shown.transform(transform)
        self.highlight.setToGeometry(shown, None)
        self.canvas.setExtent(shown.boundingBox().buffered(
            max(shown.boundingBox().width(), shown.boundingBox().height()) * ZOOM_MARGIN / 2))
        self.canvas.refresh()

    # -- decisions --------------------------------------------------------------------------
    def set_status(self, fids: list[int], status: str) -> int:
        """Write ``status`` for ``fids`` and commit (bfe's own layer); returns the count."""
        if self.layer is None or not fids:
            return 0
        index = self.layer.fields().indexOf(STATUS_FIELD)
        started = not self.layer.isEditable() and self.layer.startEditing()
        for fid in fids:
            self.layer.changeAttributeValue(fid, index, status)
        if started and not self.layer.commitChanges():
            raise InputError(f"Cannot save the review in '{self.layer.name()}': "
                             f"{'; '.join(self.layer.commitErrors())}")
        self.layer.triggerRepaint()
        return len(fids)

    def _decide(self, status: str) -> None:
        if self.current is not None:
            self.set_status([self.current], status)
            self._go_to_proposed(self.position + 1)

    def accept(self) -> None:
        self._decide(ACCEPTED)

    def reject(self) -> None:
        self._decide(REJECTED)

    def skip(self) -> None:
        if self.order:
            self.position = (self.position + 1) % len(self.order)
            self._show_current()

    def previous(self) -> None:
        if self.order:
            self.position = (self.position - 1) % len(self.order)
            self._show_current()

    def accept_above(self) -> int:
        """Accept every still-proposed proposal with score ≥ the spin box value."""
        expression = (f"\"{STATUS_FIELD}\" = '{PROPOSED}' AND "
                      f"\"score\" >= {self.min_score.value()}")
        request = QgsFeatureRequest().setFilterExpression(expression)
        n = self.set_status([f.id() for f in self.layer.getFeatures(request)], ACCEPTED)
        self._show_current()
        self.message.emit(f"Accepted {n} proposal(s) with score ≥ {self.min_score.value():.2f}.")
        return n

    def reject_selected(self) -> int:
        """Reject the selected proposals (selection in the new-buildings layer)."""
        n = self.set_status(list(self.layer.selectedFeatureIds()), REJECTED)
        self._show_current()
        self.message.emit(f"Rejected {n} selected proposal(s).")
        return n

    # -- accepted buildings and complete areas ---------------------------------------------
    def copy_accepted(self) -> int:
        """Copy the accepted proposals not copied yet into the chosen layer (edit mode)."""
        target = self.target.currentLayer()
        if target is None or self.layer is None:
            raise InputError("Choose the building layer to copy the accepted buildings into.")
        ids = [fid for fid in accepted_ids(self.layer) if fid not in self.copied]
        n = copy_features(self.layer, target, ids, self.add_source.isChecked())
        self.copied.update(ids)
        self.message.emit(f"Added {n} building(s) to '{target.name()}' in edit mode: save or "
                          "discard them there.")
        return n

    def draw_complete_areas(self) -> None:
        """Activate the drawing tool on bfe's complete-area layer and select that layer."""
        layer = complete_area_layer(self.canvas.mapSettings().destinationCrs())
        self.complete.setLayer(layer)
        self.tool = CompleteAreaTool(self.canvas, layer)
        self.canvas.setMapTool(self.tool)

    def answers_file(self, folder: Path) -> Optional[str]:
        """The proposals reviewed so far as a file, if any was accepted or rejected, so that the
        next extraction carries the answers over (``ml_core.review.loop.carry_decisions``)."""
        if self.layer is None or sip.isdeleted(self.layer):
            return None
        answered = QgsFeatureRequest().setFilterExpression(
            f"\"{STATUS_FIELD}\" IN ('{ACCEPTED}', '{REJECTED}')").setLimit(1)
        if next(self.layer.getFeatures(answered), None) is None:
            return None
        return vector_path(self.layer, folder / "previous_review.gpkg")

    def complete_layer(self) -> Optional[QgsVectorLayer]:
        """The layer of complete areas chosen (None: labels are complete nowhere)."""
        return self.complete.currentLayer()
