"""Read the ml_core.config dataclasses once, for the dock widgets and the Processing parameters."""

from __future__ import annotations

import typing
from dataclasses import MISSING, dataclass, fields
from typing import Any, Callable


@dataclass(frozen=True)
class OptionSpec:
    """One option of an ml_core options dataclass."""

    name: str
    kind: type  # bool, int, float or str
    default: Any
    help: str
    choices: tuple = ()
    optional: bool = False  # None is allowed (e.g. "no time budget", "default learning rate")
    minimum: Any = None  # bounds from the field metadata (ml_core validates them too)
    maximum: Any = None

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").capitalize()


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
        return args[0], True
    return hint, False


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
