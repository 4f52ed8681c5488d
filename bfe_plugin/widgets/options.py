"""A form for one ml_core.config dataclass: one editor per field, tooltips from its help text.

Values persist under ``<group>/<field>`` twice: in the current project (scope ``bfe``, saved
with it) and in QgsSettings (``bfe/<group>/<field>``, the user's defaults for new projects).
On reading, the project's entry wins.
"""

from __future__ import annotations

from typing import Any, Optional

from qgis.core import QgsProject, QgsSettings
from qgis.gui import QgsCollapsibleGroupBox
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ml_core.errors import InputError

from ..optionspec import OptionSpec, option_specs

MAX_NUMBER = 1_000_000
SCOPE = "bfe"


def _read(key: str) -> Optional[str]:
    """The saved text of ``key``: the current project's entry, else the QgsSettings value."""
    text, found = QgsProject.instance().readEntry(SCOPE, key)
    return text if found else QgsSettings().value(f"{SCOPE}/{key}")


def _write(key: str, text: str, settings: QgsSettings) -> None:
    """Save ``key`` in the current project (marks it dirty when changed) and in ``settings``.

    One ``settings`` for a whole form: each QgsSettings writes its file when it goes, so one
    per value made the first save after a change take ~0.7 s on the UI thread (55 writes)."""
    QgsProject.instance().writeEntry(SCOPE, key, text)
    settings.setValue(f"{SCOPE}/{key}", text)


def _decimals(spec: OptionSpec) -> int:
    """Decimals a float field needs to show its default and bounds (2 to 6): "2.50", not
    "2.5000"; "0.0003" for a learning rate."""
    values = [v for v in (spec.default, spec.minimum, spec.maximum)
              if isinstance(v, float) and v not in (float("inf"), float("-inf"))]
    digits = [len(f"{v:.6f}".rstrip("0").split(".")[1]) for v in values]
    return min(6, max([2, *digits]))


def _bounds(spec: OptionSpec) -> tuple:
    """Spin-box range; an optional option keeps 0 as its "default" value."""
    low = 0 if spec.optional or spec.minimum is None else spec.minimum
    high = MAX_NUMBER if spec.maximum is None else spec.maximum
    return (spec.kind(low), spec.kind(high))


def _editor(spec: OptionSpec) -> QWidget:
    if spec.choices:
        editor = QComboBox()
        editor.addItems([str(c) for c in spec.choices])
    elif spec.kind is bool:
        editor = QCheckBox()
    elif spec.kind is int:
        editor = QSpinBox()
        editor.setRange(*_bounds(spec))
    elif spec.kind is float:
        editor = QDoubleSpinBox()
        editor.setDecimals(_decimals(spec))
        editor.setRange(*_bounds(spec))
        if spec.optional:
            editor.setSpecialValueText("default")  # 0 means None
    else:
        editor = QLineEdit()
    editor.setObjectName(spec.name)
    editor.setToolTip(spec.help)
    return editor


def _set(editor: QWidget, spec: OptionSpec, value: Any) -> None:
    if isinstance(editor, QComboBox):
        editor.setCurrentIndex(max(0, editor.findText(str(value))))
    elif isinstance(editor, QCheckBox):
        editor.setChecked(bool(value))
    elif isinstance(editor, (QSpinBox, QDoubleSpinBox)):
        editor.setValue(spec.kind(value or 0))
    else:
        editor.setText(spec.text(value))


def _get(editor: QWidget, spec: OptionSpec) -> Any:
    if isinstance(editor, QComboBox):
        return spec.choices[editor.currentIndex()]
    if isinstance(editor, QCheckBox):
        return editor.isChecked()
    if isinstance(editor, (QSpinBox, QDoubleSpinBox)):
        value = editor.value()
        return None if spec.optional and value == 0 else spec.kind(value)
    if spec.kind is tuple:
        try:
            return spec.parse(editor.text().strip())
        except ValueError as exc:
            raise InputError(f"{spec.label} takes comma-separated numbers, one per class, not "
                             f"{editor.text()!r}.") from exc
    return editor.text() or (None if spec.optional else spec.default)


class OptionsForm(QWidget):
    """Editors for ``options_cls``; fields in ``primary`` first, the rest under "Advanced".

    Values persist under ``<settings_group>/<field>`` (see the module docstring).
    """

    def __init__(self, options_cls: type, primary: tuple = (), settings_group: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.options_cls = options_cls
        self.settings_group = settings_group or options_cls.__name__
        self.specs = option_specs(options_cls)
        self.editors: dict[str, QWidget] = {}
        main, advanced = QFormLayout(), QFormLayout()
        for spec in self.specs:
            self.editors[spec.name] = _editor(spec)
            (main if spec.name in primary else advanced).addRow(spec.label, self.editors[spec.name])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(main)
        if advanced.rowCount():
            box = QgsCollapsibleGroupBox("Advanced")
            box.setLayout(advanced)
            box.setCollapsed(True)
            layout.addWidget(box)
        self.restore()

    def editor(self, name: str) -> QWidget:
        return self.editors[name]

    def set_options(self, options: Any) -> None:
        for spec in self.specs:
            _set(self.editors[spec.name], spec, getattr(options, spec.name))

    def options(self) -> Any:
        """The current values as an ``options_cls`` instance."""
        return self.options_cls(**{s.name: _get(self.editors[s.name], s) for s in self.specs})

    def _key(self, name: str) -> str:
        return f"{self.settings_group}/{name}"

    def save(self) -> None:
        """Write the current values to the project and to QgsSettings."""
        settings = QgsSettings()
        for spec in self.specs:
            editor = self.editors[spec.name]
            text = (editor.text() if isinstance(editor, QLineEdit)  # as typed: may not parse yet
                    else spec.text(_get(editor, spec)))
            _write(self._key(spec.name), text, settings)

    def restore(self) -> None:
        """Defaults from the dataclass, overridden by saved values that still parse."""
        self.set_options(self.options_cls())
        for spec in self.specs:
            saved = _read(self._key(spec.name))
            if saved is None:
                continue
            try:
                value = spec.parse(saved)
            except ValueError:
                continue
            _set(self.editors[spec.name], spec, value)
