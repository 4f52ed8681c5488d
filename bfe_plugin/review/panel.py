"""The review panel: step through proposals by score, accept / reject / skip, flag a blob as
"several buildings" or split it, bulk actions, copy the accepted ones into a building layer,
complete areas, and "fine-tune again".

Keys, over the panel and over the map canvas: A accept, R reject, M several buildings, S or
Space skip. Decisions go to the ``status`` field of the new-buildings layer, which is bfe's own
output, so they are committed at once (unless the layer is being edited, e.g. to split a blob:
then they are saved with those edits). The fine-tune itself is the dock's job: the panel emits
``refine_requested``, and ``set_busy`` locks the decisions while a round runs.
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
    QProgressBar,
    QPushButton,
    QShortcut,
    QVBoxLayout,
    QWidget,
)

from ml_core.config import DEFAULT_THRESHOLD
from ml_core.errors import BfeError, InputError
from ml_core.osm.checks import FLAGS_FIELD, describe_flags
from ml_core.review.loop import (
    ACCEPTED,
    PROPOSED,
    REJECTED,
    SEVERAL,
    STATUS_FIELD,
    review_order,
)
from ml_core.review.yardstick import calibrate, score_cut

from ..sources import vector_path
from .accept import accepted_ids, copy_features
from .complete_area import CompleteAreaTool, complete_area_layer

STYLE = Path(__file__).resolve().parent / "styles" / "new_buildings_review.qml"
ZOOM_FACTOR = 3.0  # the canvas shows the proposal's box grown to this many times its size
MIN_SCALE = 500.0  # never closer than 1:500 (the imagery would be pixelated)
MIN_ANSWERS = 5  # bulk acceptance needs at least this many answers at the scores it takes
KEYS = (("A", "accept"), ("R", "reject"), ("M", "several"), ("S", "skip"))
PANEL_KEYS = (*KEYS, ("Space", "skip"))  # over the map, Space stays QGIS's pan key
COMPLETE_TEXT = ("Complete areas: where your building layer is fully mapped. Inside them, "
                 "anything neither mapped nor accepted is trained as 'not a building'; outside "
                 "them nothing changes.")


class ReviewPanel(QWidget):
    """Review the proposals of one new-buildings layer (``set_layer``)."""

    refine_requested = pyqtSignal()
    split_requested = pyqtSignal(object)  # the new-buildings layer: start QGIS's split tool on it
    layer_set = pyqtSignal()  # a layer is under review: the dock shows this section
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
        self.threshold = DEFAULT_THRESHOLD
        self.calibration: Optional[list] = None  # held-out table of the last round, if any
        self.busy = False
        self.saving = False  # the panel is committing its own decision
        self.setFocusPolicy(Qt.StrongFocus)
        self._build()
        self.shortcuts = self._shortcuts(self, PANEL_KEYS)
        self.map_shortcuts = self._shortcuts(canvas, KEYS)  # the keys work over the map too
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

    def _shortcuts(self, parent: QWidget, keys: tuple) -> dict:
        """The review ``keys`` on ``parent`` (the panel, the map canvas), on while reviewing."""
        out = {}
        for key, name in keys:
            out[key] = QShortcut(QKeySequence(key), parent, self._guard(getattr(self, name)),
                                 context=Qt.WidgetWithChildrenShortcut)
            out[key].setEnabled(False)
        return out

    def _button(self, text: str, slot, tip: str = "", decides: bool = True) -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(self._guard(slot))
        button.setToolTip(tip)
        if decides:
            self.deciding.append(button)
        return button

    def _build(self) -> None:
        self.deciding: list[QPushButton] = []  # locked while a round runs
        self.where = QLabel()
        self.where.setWordWrap(True)
        self.flags = QLabel()  # the mapper-style checks' flags of the current proposal
        self.flags.setWordWrap(True)
        self.flags.setToolTip("Checks as JOSM and Rapid run them (ml_core.osm.checks); export "
                              "warns about or refuses flagged buildings")
        self.order_by = QComboBox()
        for text, order in (("Highest score first", "score"),
                            ("Most uncertain first (score near the threshold)", "uncertainty")):
            self.order_by.addItem(text, order)
        self.order_by.setToolTip("The order in which proposals are stepped through")
        self.order_by.currentIndexChanged.connect(self._guard(self._reorder))
        self.min_score = QDoubleSpinBox()
        self.min_score.setRange(0.5, 1.0)
        self.min_score.setSingleStep(0.05)
        self.min_score.setValue(0.9)
        self.min_score.setToolTip("Share of buildings the answers so far show at the scores "
                                  "bulk acceptance takes")
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.target = QgsMapLayerComboBox()
        self.target.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.add_source = QCheckBox("Add a 'source' field when the layer lacks one")
        self.complete = QgsMapLayerComboBox()
        self.complete.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.complete.setAllowEmptyLayer(True)
        self.complete.setLayer(None)  # complete nowhere unless the user says so
        grid = QGridLayout()
        for col, (text, slot, tip, decides) in enumerate((
                ("◀", self.previous, "Previous proposal", False),
                ("Accept (A)", self.accept, "Accept the current proposal", True),
                ("Reject (R)", self.reject, "Reject the current proposal", True),
                ("Skip (S)", self.skip, "Next proposal, no decision", False))):
            grid.addWidget(self._button(text, slot, tip, decides), 0, col)
        grid.addWidget(self._button("Several buildings (M)", self.several,
                                    "One proposal over several buildings: neither accepted nor "
                                    "rejected, and not trained on"), 1, 0, 1, 2)
        grid.addWidget(self._button("Split…", self.split,
                                    "Split the proposal with QGIS's Split Features tool; save "
                                    "the layer's edits to review the parts"), 1, 2, 1, 2)
        grid.addWidget(self._button(
            "Accept all where the answers show ≥", self.accept_above,
            "Accepts the proposals at scores where at least this share of the answers so far "
            "(held-out answers of the last round, else yours here) were buildings"), 2, 0, 1, 3)
        grid.addWidget(self.min_score, 2, 3)
        grid.addWidget(self._button("Reject all in selection", self.reject_selected), 3, 0, 1, 4)
        complete_text = QLabel(COMPLETE_TEXT)
        complete_text.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.order_by)
        layout.addWidget(self.where)
        layout.addWidget(self.flags)
        layout.addLayout(grid)
        layout.addWidget(QLabel("Copy accepted buildings into"))
        layout.addWidget(self.target)
        layout.addWidget(self.add_source)
        layout.addWidget(self._button("Copy accepted", self.copy_accepted,
                                      "Adds them in edit mode; save or discard as usual", False))
        layout.addWidget(complete_text)
        layout.addWidget(self.complete)
        layout.addWidget(self._button("Draw a complete area", self.draw_complete_areas,
                                      "Left click: vertex, right click: close (the tool is then "
                                      "released), Esc: restart", False))
        layout.addWidget(self._button("Fine-tune again", self.refine_requested.emit,
                                      "Next round: OSM + accepted as buildings, rejected as "
                                      "background, from the current model; one answer in "
                                      "three (by place) is kept aside to measure the round"))
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

    def set_busy(self, busy: bool) -> None:
        """Lock (or unlock) every decision and "Fine-tune again" while a round runs."""
        self.busy = busy
        for button in self.deciding:
            button.setEnabled(not busy)
        self._enable_keys()
        self.progress.setVisible(busy)
        if busy:
            self.progress.setValue(0)

    def show_status(self, text: str) -> None:
        """A line under the review section (the running round, its result)."""
        self.status.setText(text)

    def _enable_keys(self) -> None:
        on = self.layer is not None and not self.busy
        for shortcut in (*self.shortcuts.values(), *self.map_shortcuts.values()):
            shortcut.setEnabled(on)

    # -- the layer and the order ------------------------------------------------------------
    def set_layer(self, layer: QgsVectorLayer, threshold: Optional[float] = None,
                  calibration: Optional[list] = None) -> None:
        """Review ``layer`` (a bfe new-buildings layer): styled, sorted by score, highest first.

        ``threshold``: the model's (the probability raster's ``BFE_THRESHOLD``), the centre of
        the "most uncertain first" order; ``calibration``: the held-out table of the round
        that made the model (``yardstick.calibrate``), for bulk acceptance.
        """
        if layer.fields().indexOf(STATUS_FIELD) < 0:
            raise InputError(f"Layer '{layer.name()}' has no '{STATUS_FIELD}' field; review the "
                             "new buildings layer of a bfe extraction.")
        self.layer = layer
        self.threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        self.calibration = calibration
        self.order_by.setItemText(1, f"Most uncertain first (score near {self.threshold:.2f})")
        self.target.setExceptedLayerList([layer])
        layer.loadNamedStyle(str(STYLE))
        layer.triggerRepaint()
        layer.afterCommitChanges.connect(self._guard(self._committed))
        self.copied.clear()
        self._reorder()
        self._enable_keys()
        self.setFocus()
        self.layer_set.emit()

    def _committed(self) -> None:
        """The user saved edits of the layer (e.g. a split): review the parts too."""
        if not self.saving:
            self._reorder()

    def _reorder(self) -> None:
        """Order the proposals as chosen and go to the first one still to review."""
        if self.layer is None:
            return
        request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry)
        features = sorted((f.id(), f["score"] or 0.0) for f in self.layer.getFeatures(request))
        order = review_order(np.array([score for _, score in features], dtype=float),
                             self.order_by.currentData(), self.threshold)
        self.order = [features[i][0] for i in order]
        self.position = 0
        self._go_to_proposed(0)

    @property
    def current(self) -> Optional[int]:
        """Feature id of the proposal under review, or None when there is none."""
        return self.order[self.position] if 0 <= self.position < len(self.order) else None

    def _statuses(self) -> dict[int, str]:
        """Every proposal's status in one request (one ``getFeature`` per proposal froze the
        UI for seconds on layers of a few hundred proposals)."""
        request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry)
        request.setSubsetOfAttributes([STATUS_FIELD], self.layer.fields())
        return {f.id(): f[STATUS_FIELD] or PROPOSED for f in self.layer.getFeatures(request)}

    def _go_to_proposed(self, start: int) -> None:
        """Move to the first still-proposed proposal from ``start`` on (wrapping around)."""
        n = len(self.order)
        statuses = self._statuses()
        for step in range(n):
            i = (start + step) % n
            if statuses.get(self.order[i], PROPOSED) == PROPOSED:
                self.position = i
                break
        else:
            self.position = min(start, n - 1) if n else 0
        self._show_current(statuses)

    def _show_current(self, statuses: Optional[dict[int, str]] = None) -> None:
        """Show and zoom to the current proposal; ``statuses``: :meth:`_statuses` when the
        caller has just read them."""
        fid = self.current
        self.highlight.reset(QgsWkbTypes.PolygonGeometry)
        self.flags.clear()
        if fid is None:
            self.where.setText("No proposals to review: extract buildings first.")
            return
        feature = self.layer.getFeature(fid)
        if self.layer.fields().indexOf(FLAGS_FIELD) >= 0:  # layers of older extractions lack it
            text = describe_flags(feature[FLAGS_FIELD] or None)
            self.flags.setText(f"Flags: {text}" if text else "No flags")
        statuses = self._statuses() if statuses is None else statuses
        left = sum(statuses.get(f, PROPOSED) == PROPOSED for f in self.order)
        self.where.setText(f"{self.position + 1}/{len(self.order)} · score "
                           f"{feature['score']:.2f} · {feature[STATUS_FIELD]} · {left} to review")
        self._zoom(feature.geometry())

    def _zoom(self, geometry: QgsGeometry) -> None:
        """Centre the proposal with context: ``ZOOM_FACTOR`` times its box, at least 1:500."""
        transform = QgsCoordinateTransform(self.layer.crs(),
                                           self.canvas.mapSettings().destinationCrs(),
                                           QgsProject.instance())
        shown = QgsGeometry(geometry)
        shown.transform(transform)
        self.highlight.setToGeometry(shown, None)
        box = shown.boundingBox()
        box.scale(ZOOM_FACTOR)  # about its centre
        self.canvas.setExtent(box)
        if self.canvas.scale() < MIN_SCALE:
            self.canvas.zoomScale(MIN_SCALE)
        self.canvas.setCenter(shown.boundingBox().center())
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
        self.saving = started
        saved = not started or self.layer.commitChanges()
        self.saving = False
        if not saved:
            raise InputError(f"Cannot save the review in '{self.layer.name()}': "
                             f"{'; '.join(self.layer.commitErrors())}")
        self.layer.triggerRepaint()
        return len(fids)

    def _decide(self, status: str) -> None:
        if self.busy:  # a round is running on these answers: they stay as it read them
            return
        if self.current is not None:
            self.set_status([self.current], status)
            self._go_to_proposed(self.position + 1)

    def accept(self) -> None:
        self._decide(ACCEPTED)

    def reject(self) -> None:
        self._decide(REJECTED)

    def several(self) -> None:
        """Flag the current proposal as one blob over several buildings."""
        self._decide(SEVERAL)

    def split(self) -> None:
        """Ask for QGIS's Split Features tool on the new-buildings layer (the dock starts it)."""
        if self.layer is None:
            raise InputError("Extract buildings first: there is no proposal to split.")
        self.split_requested.emit(self.layer)

    def skip(self) -> None:
        if self.order:
            self.position = (self.position + 1) % len(self.order)
            self._show_current()

    def previous(self) -> None:
        if self.order:
            self.position = (self.position - 1) % len(self.order)
            self._show_current()

    def calibration_table(self) -> list:
        """Score bins with how many answers were buildings: the held-out table of the last
        round, else this layer's own accepted / rejected answers."""
        if self.calibration:
            return self.calibration
        request = QgsFeatureRequest().setFilterExpression(
            f"\"{STATUS_FIELD}\" IN ('{ACCEPTED}', '{REJECTED}')")
        answers = [(f["score"] or 0.0, f[STATUS_FIELD] == ACCEPTED)
                   for f in self.layer.getFeatures(request)]
        return calibrate(np.array([a[0] for a in answers], float),
                         np.array([a[1] for a in answers], bool))

    def accept_above(self) -> int:
        """Accept the still-proposed proposals at scores where the answers so far show at least
        the spin box's share of buildings (``yardstick.score_cut``); none when too few answers
        say so: a high raw score alone is not trusted."""
        if self.layer is None or self.busy:
            return 0
        share = self.min_score.value()
        cut = score_cut(self.calibration_table(), share, MIN_ANSWERS)
        if cut is None:
            self.message.emit(f"Nothing accepted: the answers so far do not show {share:.0%} "
                              f"buildings over {MIN_ANSWERS} or more proposals at any score. "
                              "Review more proposals one by one first.")
            return 0
        expression = f"\"{STATUS_FIELD}\" = '{PROPOSED}' AND \"score\" >= {cut}"
        request = QgsFeatureRequest().setFilterExpression(expression)
        n = self.set_status([f.id() for f in self.layer.getFeatures(request)], ACCEPTED)
        self._go_to_proposed(self.position)
        self.message.emit(f"Accepted {n} proposal(s) with score ≥ {cut:.2f}, where at least "
                          f"{share:.0%} of the answers were buildings.")
        return n

    def reject_selected(self) -> int:
        """Reject the selected proposals (selection in the new-buildings layer)."""
        if self.layer is None or self.busy:
            return 0
        n = self.set_status(list(self.layer.selectedFeatureIds()), REJECTED)
        self._go_to_proposed(self.position)
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
        """Activate the drawing tool on bfe's complete-area layer (in the bfe group of the
        layer under review) and select that layer; the tool is released once the polygon
        closes, and the previous map tool comes back."""
        group = None
        if self.layer is not None:
            node = QgsProject.instance().layerTreeRoot().findLayer(self.layer.id())
            group = node.parent() if node is not None else None
        layer = complete_area_layer(self.canvas.mapSettings().destinationCrs(), group=group)
        self.complete.setLayer(layer)
        previous = self.canvas.mapTool()
        self.tool = CompleteAreaTool(self.canvas, layer)
        self.tool.drawn.connect(lambda _geometry: self._release_tool(previous))
        self.canvas.setMapTool(self.tool)

    def _release_tool(self, previous) -> None:
        if self.tool is not None and self.canvas.mapTool() is self.tool:
            if previous is not None and not sip.isdeleted(previous):
                self.canvas.setMapTool(previous)
            else:
                self.canvas.unsetMapTool(self.tool)
        self.message.emit("Complete area added. Fine-tune again to use it.")

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
