"""The current model: load a .safetensors model, save a copy, and show its model card."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ml_core.errors import InputError

if TYPE_CHECKING:
    from ml_core.learn.modelfile import ModelCard

FILTER = "bfe model (*.safetensors)"


def card_summary(name: str, card: ModelCard) -> str:
    """A short HTML summary of ``card`` for the model file ``name``."""
    metrics = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in card.metrics.items())
    rows = [("file", name), ("bands", card.bands), ("GSD", f"{card.gsd_m:.3f} m"),
            ("loss", card.loss), ("threshold", card.threshold), ("metrics", metrics or "-"),
            ("base model", card.base_model or "-"), ("created", card.created)]
    body = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


class ModelPanel(QWidget):
    """Holds the model used for extraction; emits ``error`` with user-facing exceptions."""

    error = pyqtSignal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path: Optional[Path] = None
        self.card = QTextBrowser()
        self.card.setMaximumHeight(130)
        self.card.setPlaceholderText("No model yet: fine-tune one or load a .safetensors file. "
                                     "Extraction then uses the bundled base model.")
        self.load_button = QPushButton("Load model…")
        self.save_button = QPushButton("Save model as…")
        self.load_button.clicked.connect(self._load_clicked)
        self.save_button.clicked.connect(self._save_clicked)
        buttons = QHBoxLayout()
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Model card"))
        layout.addWidget(self.card)
        layout.addLayout(buttons)

    def set_model(self, path: Path) -> None:
        """Use ``path``; raises InputError when its card or weights are missing, invalid or do
        not match. The weights are loaded once here, so a corrupt file fails now, not when
        extracting, and the current model stays."""
        from ml_core.learn.modelfile import load_model  # needs torch

        path = Path(path)
        summary = card_summary(path.name, load_model(path).card)
        self.path = path
        self.card.setHtml(summary)

    def save_copy(self, target: Path) -> Path:
        """Copy weights and card to ``target`` (a .safetensors path)."""
        if self.path is None:
            raise InputError("There is no model to save yet: fine-tune or load one first.")
        from ml_core.learn.modelfile import card_path

        target = Path(target).with_suffix(".safetensors")
        shutil.copyfile(self.path, target)
        shutil.copyfile(card_path(self.path), card_path(target))
        return target

    def _load_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load bfe model", "", FILTER)
        if path:
            self._guard(self.set_model, Path(path))

    def _save_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save bfe model", "", FILTER)
        if path:
            self._guard(self.save_copy, Path(path))

    def _guard(self, action, path: Path) -> None:
        try:
            action(path)
        except Exception as exc:  # an unexpected one too: never an exception out of a Qt slot
            self.error.emit(exc)
