"""Read the ml_core.config dataclasses once, for the dock widgets and the Processing parameters."""

from __future__ import annotations

import typing
from dataclasses import MISSING, dataclass, fields
from typing import Any, Callable

ACRONYMS = {"tta": "TTA", "lr": "LR", "gsd": "GSD", "m": "(m)", "m2": "(m²)"}  # in labels


@dataclass(frozen=True)
class OptionSpec:
    """One option of an ml_core options dataclass."""

    name: str
    kind: type  # bool, int, float, str or tuple (per-class numbers, e.g. "0.9, 0.1")
    default: Any
    help: str
    choices: tuple = ()
    optional: bool = False  # None is allowed (e.g. "no time budget", "default learning rate")
    minimum: Any = None  # bounds from the field metadata (ml_core validates them too)
    maximum: Any = None

    @property
    def label(self) -> str:
        """The field name as words, acronyms in capitals: ``tta`` -> "TTA"."""
        text = " ".join(ACRONYMS.get(w, w) for w in self.name.split("_"))
        return text[:1].upper() + text[1:]

    def parse(self, text: str) -> Any:
        """A value from its text (as saved or typed); "" is None. Raises ValueError."""
        if text == "":
            return None
        if self.kind is bool:
            return text in ("true", "True")
        if self.kind is tuple:
            return tuple(float(v) for v in text.replace(" ", ",").split(",") if v)
        return self.kind(text)

    def text(self, value: Any) -> str:
        """The text of a value, as :meth:`parse` reads it."""
        if value is None:
            return ""
        return ", ".join(str(v) for v in value) if self.kind is tuple else str(value)


def loss_choices() -> tuple:
    """Loss names from the ml_core registry (needs torch; empty when it is missing)."""
    try:
        from ml_core.learn.losses import LOSSES
    except ImportError:
        return ()
    return tuple(LOSSES)


# Options whose choices come from a registry rather than from field metadata.
REGISTRY_CHOICES: dict[str, Callable[[], tuple]] = {"loss": loss_choices}


def _base_type(hint: Any) -> tuple[type, bool]:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:
        return _base_type(args[0])[0], True
    return typing.get_origin(hint) or hint, False  # tuple[float, ...] -> tuple


def option_specs(options_cls: type) -> list[OptionSpec]:
    """The options of ``options_cls`` in declaration order."""
    hints = typing.get_type_hints(options_cls)
    specs = []
    for f in fields(options_cls):
        kind, optional = _base_type(hints[f.name])
        choices = tuple(f.metadata.get("choices", ()))
        if not choices and f.name in REGISTRY_CHOICES:
            choices = REGISTRY_CHOICES[f.name]()
        if choices and f.default not in choices:
            choices = (f.default, *choices)
        default = f.default if f.default is not MISSING else None
        specs.append(OptionSpec(f.name, kind, default, f.metadata.get("help", ""), choices,
                                optional, f.metadata.get("min"), f.metadata.get("max")))
    return specs
