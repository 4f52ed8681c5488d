"""A live chart of training loss (per step) and validation Dice (per epoch), drawn with QPainter."""

from __future__ import annotations

from qgis.PyQt.QtCore import QPointF, QSize, Qt
from qgis.PyQt.QtGui import QColor, QPainter, QPaintEvent, QPen, QPolygonF
from qgis.PyQt.QtWidgets import QWidget

LOSS_COLOUR = QColor(30, 110, 220)
DICE_COLOUR = QColor(230, 120, 0)


class TrainingChart(QWidget):
    """Feed it ProgressEvent dicts; ``train`` events add loss, ``validate`` events add Dice."""

    MARGIN = 6

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss: list[tuple[int, float]] = []  # (step, loss)
        self.dice: list[tuple[int, float]] = []  # (step at end of epoch, Dice)
        self.setMinimumHeight(90)
        self.setToolTip("Blue: training loss per step. Orange: validation Dice per epoch (0..1).")

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        return QSize(250, 110)

    def clear(self) -> None:
        self.loss.clear()
        self.dice.clear()
        self.update()

    def add_event(self, event: dict) -> None:
        if event.get("stage") == "train" and event.get("loss") is not None:
            self.loss.append((len(self.loss) + 1, float(event["loss"])))
        elif event.get("stage") == "validate" and event.get("val_dice") is not None:
            self.dice.append((len(self.loss), float(event["val_dice"])))
        else:
            return
        self.update()

    def _polygon(self, points: list[tuple[int, float]], top: float, x_max: int) -> QPolygonF:
        m = self.MARGIN
        w, h = self.width() - 2 * m, self.height() - 2 * m - 14
        return QPolygonF([QPointF(m + w * x / max(x_max, 1), m + 14 + h * (1 - y / top))
                          for x, y in points])

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802 (Qt API)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        painter.setPen(self.palette().mid().color())
        painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        x_max = max(len(self.loss), 1)
        if self.loss:
            top = max(y for _, y in self.loss) or 1.0
            painter.setPen(QPen(LOSS_COLOUR, 1.5))
            painter.drawPolyline(self._polygon(self.loss, top, x_max))
        if self.dice:
            painter.setPen(QPen(DICE_COLOUR, 2))
            polygon = self._polygon(self.dice, 1.0, x_max)
            painter.drawPolyline(polygon)
            for point in polygon:
                painter.drawEllipse(point, 2.5, 2.5)
        painter.setPen(self.palette().text().color())
        loss_text = f"loss {self.loss[-1][1]:.3f}" if self.loss else "loss -"
        dice_text = f"val Dice {self.dice[-1][1]:.3f}" if self.dice else "val Dice -"
        painter.drawText(self.rect().adjusted(self.MARGIN, 2, -self.MARGIN, 0),
                         Qt.AlignTop | Qt.AlignLeft, f"{loss_text}   {dice_text}")
        painter.end()
