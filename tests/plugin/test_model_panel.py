"""The dock's Model section: Save and Load through its buttons, and a corrupt file refused.

The file dialogs are modal, so their static getters are answered with a path; the rest (the
panel, ml_core's model files, the message bar) is real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from qgis.core import Qgis
from qgis.PyQt.QtWidgets import QFileDialog

from bfe_plugin.widgets.model import FILTER


@pytest.fixture
def model_file(tmp_path) -> Path:
    """A tiny real model: safetensors weights and its JSON card."""
    from ml_core.learn.model import UNet
    from ml_core.learn.modelfile import ModelCard, save_model

    net = UNet(3, 2, width=4, depth=2)
    card = ModelCard(architecture=net.architecture(), bands=[1, 2, 3], mean=[100.0] * 3,
                     std=[50.0] * 3, gsd_m=0.3, metrics={"val_dice": 0.7})
    return save_model(tmp_path / "models" / "tiny.safetensors", net, card)


def _answer(monkeypatch, getter: str, path: Path) -> None:
    """Make ``QFileDialog.<getter>`` return ``path`` as if the user had chosen it."""
    monkeypatch.setattr(QFileDialog, getter, staticmethod(lambda *_args: (str(path), FILTER)))


def _load(dock, monkeypatch, path: Path) -> None:
    _answer(monkeypatch, "getOpenFileName", path)
    dock.model.load_button.click()


def test_load_shows_the_card_and_save_writes_weights_and_card(dock, model_file, tmp_path,
                                                               monkeypatch):
    _load(dock, monkeypatch, model_file)
    assert dock.model.path == model_file
    text = dock.model.card.toPlainText()
    assert "tiny.safetensors" in text and "val_dice 0.700" in text and "0.300 m" in text

    (tmp_path / "saved").mkdir()
    _answer(monkeypatch, "getSaveFileName", tmp_path / "saved" / "copy")  # no suffix typed
    dock.model.save_button.click()
    weights, card = tmp_path / "saved" / "copy.safetensors", tmp_path / "saved" / "copy.json"
    assert weights.read_bytes() == model_file.read_bytes()
    assert json.loads(card.read_text()) == json.loads(model_file.with_suffix(".json").read_text())

    _load(dock, monkeypatch, weights)
    assert dock.model.path == weights
    assert "copy.safetensors" in dock.model.card.toPlainText()
    assert not dock.iface.messageBar().get_messages(Qgis.Warning)


def _break(model: Path, bad: Path, part: str) -> None:
    """``bad``: a copy of ``model`` with garbage weights, a garbage card, or a card that does
    not match the weights."""
    shutil.copyfile(model, bad)
    shutil.copyfile(model.with_suffix(".json"), bad.with_suffix(".json"))
    if part == "weights":
        bad.write_bytes(b"not a safetensors file")
    elif part == "card":
        bad.with_suffix(".json").write_text("{not json")
    else:
        card = json.loads(bad.with_suffix(".json").read_text())
        card["architecture"]["width"] = 8
        bad.with_suffix(".json").write_text(json.dumps(card))


@pytest.mark.parametrize("part", ["weights", "card", "mismatch"])
def test_corrupt_model_shows_a_message_and_keeps_the_current_model(dock, model_file, tmp_path,
                                                                   monkeypatch, part):
    _load(dock, monkeypatch, model_file)
    shown = dock.model.card.toHtml()
    bar = dock.iface.messageBar()
    bar.clear_messages()
    _break(model_file, tmp_path / "bad.safetensors", part)
    _load(dock, monkeypatch, tmp_path / "bad.safetensors")
    warnings = bar.get_messages(Qgis.Warning)
    assert len(warnings) == 1 and "bad." in warnings[0], warnings
    assert dock.model.path == model_file
    assert dock.model.card.toHtml() == shown


def test_a_model_error_leaves_a_running_task_alone(dock, layers, model_file, tmp_path,
                                                   monkeypatch):
    """A failed Load during fine-tuning only reports; the task stays running and cancellable."""
    from .conftest import engine_ready, wait_for

    engine_ready("ml_core.learn.train")
    dock.inputs.raster_combo.setLayer(layers[0])
    dock.inputs.buildings_combo.setLayer(layers[1])
    dock.train_form.set_options(dock.train_form.options_cls(epochs=1000, crop_size=64, width=8,
                                                            depth=2, device="cpu"))
    dock.finetune_button.click()
    assert dock.task is not None
    _break(model_file, tmp_path / "bad.safetensors", "weights")
    _load(dock, monkeypatch, tmp_path / "bad.safetensors")
    assert dock.task is not None and dock.cancel_button.isEnabled()
    assert not dock.finetune_button.isEnabled()
    dock.cancel_button.click()
    wait_for(lambda: dock.task is None, timeout=60)
