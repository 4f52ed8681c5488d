"""Loss names, their defaults and one-line descriptions; ``get_loss`` builds them."""

from __future__ import annotations

import inspect
from typing import Any

from ml_core.learn.losses.base import SegLoss
from ml_core.learn.losses.boundary import BoundaryLoss
from ml_core.learn.losses.ce import CrossEntropyLoss, LogitAdjustedCELoss
from ml_core.learn.losses.combined import CombinedLoss
from ml_core.learn.losses.dice import DiceLoss, NoiseRobustDiceLoss
from ml_core.learn.losses.ell import ExpLogLoss

_WDICE = (DiceLoss, {"class_weights": (0.1, 0.9)})

# name -> (terms as (key, class, default overrides), description). A term's parameters are its
# constructor's; a sum of several terms adds "<key>_weight" (default 1) for each.
_SPECS: dict[str, tuple[tuple[tuple[str, type[SegLoss], dict], ...], str]] = {
    "ce": ((("ce", CrossEntropyLoss, {}),), "Cross-entropy over labelled pixels."),
    "dice": ((("dice", DiceLoss, {}),), "Soft Dice, background and building weighted equally."),
    "nr_dice": (
        (("nr_dice", NoiseRobustDiceLoss, {}),),
        "Noise-robust Dice (Wang et al. 2020): |p - y|^1.5 errors, tolerant to label noise.",
    ),
    "ce_dice": (
        (("ce", CrossEntropyLoss, {}), ("dice", DiceLoss, {})),
        "Cross-entropy + soft Dice.",
    ),
    "ell": (
        (("ell", ExpLogLoss, {}),),
        "Exponential logarithmic loss (Wong et al. 2018): 0.8 log-Dice + 0.2 weighted log-CE.",
    ),
    "wdice": (
        (("dice", *_WDICE),),
        "Weighted soft Dice: building 0.9, background 0.1.",
    ),
    "bd_dice": (
        (("dice", DiceLoss, {}), ("boundary", BoundaryLoss, {})),
        "Soft Dice + boundary F1 loss (Bokhovkin & Burnaev 2019).",
    ),
    "bd_wdice": (
        (("dice", *_WDICE), ("boundary", BoundaryLoss, {})),
        "Weighted soft Dice + boundary F1 loss.",
    ),
    "lace": (
        (("lace", LogitAdjustedCELoss, {}),),
        "Logit-adjusted cross-entropy (Menon et al. 2021): tolerates unlabelled buildings.",
    ),
    "lace_wdice": (
        (("lace", LogitAdjustedCELoss, {}), ("dice", *_WDICE)),
        "Logit-adjusted cross-entropy + weighted soft Dice.",
    ),
    "bd_lace_wdice": (
        (("lace", LogitAdjustedCELoss, {}), ("dice", *_WDICE), ("boundary", BoundaryLoss, {})),
        "The paper's joint loss: logit-adjusted CE + weighted Dice + boundary F1 (recommended).",
    ),
}


def _term_defaults(cls: type[SegLoss], overrides: dict) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters.values()
    defaults = {p.name: p.default for p in params if p.name not in ("self", "ignore_index")}
    return {**defaults, **overrides}


def _defaults(name: str) -> dict[str, Any]:
    terms = _SPECS[name][0]
    defaults: dict[str, Any] = {"ignore_index": 255}
    for key, cls, overrides in terms:
        defaults.update(_term_defaults(cls, overrides))
        if len(terms) > 1:
            defaults[f"{key}_weight"] = 1.0
    return defaults


LOSSES: dict[str, dict[str, Any]] = {name: _defaults(name) for name in _SPECS}
"""Each loss name and its default parameters (what ``get_loss(name)`` uses)."""

LOSS_DESCRIPTIONS: dict[str, str] = {name: spec[1] for name, spec in _SPECS.items()}


def describe_loss(name: str) -> str:
    """One-line human description of a loss (the dock's tooltip)."""
    return LOSS_DESCRIPTIONS[_check_name(name)]


def _check_name(name: str) -> str:
    if name not in _SPECS:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(_SPECS)}")
    return name


def get_loss(name: str, **params: Any) -> SegLoss:
    """The loss module ``name`` with ``params`` overriding its defaults (see ``LOSSES``).

    Every module is called as ``loss(logits, target)``; give the class frequency of the training
    masks with ``loss.set_class_frequency((f0, f1))`` when a parameter is ``"auto"``.
    """
    unknown = set(params) - set(LOSSES[_check_name(name)])
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(sorted(unknown))} for loss {name!r}; "
            f"it takes {', '.join(LOSSES[name])}"
        )
    values = {**LOSSES[name], **params}
    ignore_index = values["ignore_index"]
    terms = {
        key: cls(ignore_index=ignore_index, **{p: values[p] for p in _term_defaults(cls, extra)})
        for key, cls, extra in _SPECS[name][0]
    }
    if len(terms) == 1:
        return next(iter(terms.values()))
    weighted = {key: (values[f"{key}_weight"], term) for key, term in terms.items()}
    return CombinedLoss(weighted, ignore_index=ignore_index)
