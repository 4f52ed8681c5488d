"""Keep the dock's fields whole in a narrow dock: shrinkable combo boxes, wrapping form rows,
and a scroll area that scrolls only vertically and is never narrower than its content."""

from __future__ import annotations

from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QScrollArea, QWidget

MIN_CHARS = 10  # combo boxes shrink to this many characters instead of widening the dock


def shrinkable(combo: QComboBox) -> QComboBox:
    """Let ``combo`` be narrower than its longest item (elided) rather than widen the dock."""
    combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(MIN_CHARS)
    return combo


def fit_narrow(body: QWidget) -> None:
    """Every combo box of ``body`` shrinkable, every form's labels above their fields when
    the row does not fit beside them."""
    for combo in body.findChildren(QComboBox):
        shrinkable(combo)
    for form in body.findChildren(QFormLayout):
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)


class VerticalScroll(QScrollArea):
    """Scrolls vertically only; at least as wide as its content's minimum, so a field is never
    cut off at the dock's edge (the dock, and the window around it, make room instead)."""

    def __init__(self, body: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setWidget(body)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        hint = super().minimumSizeHint()
        width = (self.widget().minimumSizeHint().width()
                 + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth())
        return QSize(max(hint.width(), width), hint.height())
