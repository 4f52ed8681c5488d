"""Loss names, their parameters with defaults and one-line descriptions; ``get_loss`` builds them.

Each term's parameters are listed here, explicitly: the tunable ones take their defaults from
``ml_core.config.LossOptions`` (where front ends set them), the numerical constants are fixed
here. ``loss_params`` turns a ``LossOptions`` into the parameters of one loss.
"""

from __future__ import annotations

from typing import Any

from ml_core.config import LossOptions
from ml_core.learn.losses.base import SegLoss
from ml_core.learn.losses.boundary import BoundaryLoss
from ml_core.learn.losses.ce import CrossEntropyLoss, LogitAdjustedCELoss
from ml_core.learn.losses.combined import CombinedLoss
from ml_core.learn.losses.dice import DiceLoss, NoiseRobustDiceLoss
from ml_core.learn.losses.ell import ExpLogLoss

_OPT = LossOptions()
_CLASSES = 2  # LOSSES holds the defaults of a 2-class model; loss_params adapts to others
_PRIOR = _OPT.class_values("lace_prior", _CLASSES)

# term key -> (class, its parameters and their defaults). "dice" weighs classes equally,
# "wdice" (the weighted Dice) takes the dice_weights defaults.
_TERMS: dict[str, tuple[type[SegLoss], dict[str, Any]]] = {
    "ce": (CrossEntropyLoss, {}),
    "lace": (LogitAdjustedCELoss, {"tau": _OPT.lace_tau, "prior": _PRIOR}),
    "dice": (DiceLoss, {"class_weights": (1.0,) * _CLASSES, "smooth": 1e-5}),
    "wdice": (DiceLoss, {"class_weights": _OPT.class_values("dice_weights", _CLASSES),
                         "smooth": 1e-5}),
    "nr_dice": (NoiseRobustDiceLoss, {"gamma": 1.5, "eps": 1e-5}),
    "ell": (ExpLogLoss, {"frequency": _PRIOR, "weight_power": 0.5, "w_dice": 0.8, "w_ce": 0.2,
                         "gamma_dice": 0.3, "gamma_ce": 0.3, "smooth": 1.0, "tiny": 1e-30}),
    "boundary": (BoundaryLoss, {"theta0": _OPT.boundary_theta0, "theta": _OPT.boundary_theta,
                                "eps": 1e-7}),
}

# name -> (terms as (key in the sum, term of _TERMS), description). A sum of several terms
# adds "<key>_weight" (default 1) for each.
_SPECS: dict[str, tuple[tuple[tuple[str, str], ...], str]] = {
    "ce": ((("ce", "ce"),), "Cross-entropy over labelled pixels."),
    "dice": ((("dice", "dice"),), "Soft Dice, background and building weighted equally."),
    "nr_dice": (
        (("nr_dice", "nr_dice"),),
        "Noise-robust Dice (Wang et al. 2020): |p - y|^1.5 errors, tolerant to label noise.",
    ),
    "ce_dice": ((("ce", "ce"), ("dice", "dice")), "Cross-entropy + soft Dice."),
    "ell": (
        (("ell", "ell"),),
        "Exponential logarithmic loss (Wong et al. 2018): 0.8 log-Dice + 0.2 weighted log-CE.",
    ),
    "wdice": ((("dice", "wdice"),), "Weighted soft Dice: building 0.9, background 0.1."),
    "bd_dice": (
        (("dice", "dice"), ("boundary", "boundary")),
        "Soft Dice + boundary F1 loss (Bokhovkin & Burnaev 2019).",
    ),
    "bd_wdice": (
        (("dice", "wdice"), ("boundary", "boundary")),
        "Weighted soft Dice + boundary F1 loss.",
    ),
    "lace": (
        (("lace", "lace"),),
        "Logit-adjusted cross-entropy (Menon et al. 2021): tolerates unlabelled buildings.",
    ),
    "lace_wdice": (
        (("lace", "lace"), ("dice", "wdice")),
        "Logit-adjusted cross-entropy + weighted soft Dice.",
    ),
    "bd_lace_wdice": (
        (("lace", "lace"), ("dice", "wdice"), ("boundary", "boundary")),
        "The paper's joint loss: logit-adjusted CE + weighted Dice + boundary F1 (recommended).",
    ),
}


def _defaults(name: str) -> dict[str, Any]:
    terms = _SPECS[name][0]
    defaults: dict[str, Any] = {"ignore_index": 255}
    for key, term in terms:
        defaults.update(_TERMS[term][1])
        if len(terms) > 1:
            defaults[f"{key}_weight"] = getattr(_OPT, f"{key}_weight")
    return defaults


LOSSES: dict[str, dict[str, Any]] = {name: _defaults(name) for name in _SPECS}
"""Each loss name and its default parameters for a 2-class model (what ``get_loss(name)`` uses)."""

LOSS_DESCRIPTIONS: dict[str, str] = {name: spec[1] for name, spec in _SPECS.items()}


def describe_loss(name: str) -> str:
    """One-line human description of a loss (the dock's tooltip)."""
    return LOSS_DESCRIPTIONS[_check_name(name)]


def _check_name(name: str) -> str:
    if name not in _SPECS:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(_SPECS)}")
    return name


def loss_params(name: str, options: LossOptions, num_classes: int = _CLASSES) -> dict[str, Any]:
    """The parameters of loss ``name`` (those of ``LOSSES[name]``) set from ``options`` for a
    model with ``num_classes`` outputs: per-class values of that length, the numerical
    constants as in ``LOSSES``."""
    params = dict(LOSSES[_check_name(name)])
    terms = {term for _, term in _SPECS[name][0]}
    if terms & {"lace", "ell"}:
        prior = options.class_values("lace_prior", num_classes)
        params.update({"prior": prior} if "lace" in terms else {"frequency": prior})
    if "lace" in terms:
        params["tau"] = options.lace_tau
    if terms & {"dice", "wdice"}:
        equal = options.dice_weights is None and "dice" in terms
        params["class_weights"] = ((1.0,) * num_classes if equal
                                   else options.class_values("dice_weights", num_classes))
    if "boundary" in terms:
        params.update(theta0=options.boundary_theta0, theta=options.boundary_theta)
    params.update({k: getattr(options, k) for k in params if k.endswith("_weight")})
    return params


def class_defaults(name: str, num_classes: int) -> dict[str, Any]:
    """The per-class parameters of loss ``name`` by default for ``num_classes`` outputs."""
    params = loss_params(name, _OPT, num_classes)
    return {k: params[k] for k in ("prior", "frequency", "class_weights") if k in params}


def get_loss(name: str, num_classes: int = _CLASSES, **params: Any) -> SegLoss:
    """The loss module ``name`` for ``num_classes`` outputs, with ``params`` overriding its
    defaults (see ``LOSSES`` and :func:`loss_params`); every module is called as
    ``loss(logits, target)``."""
    unknown = set(params) - set(LOSSES[_check_name(name)])
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(sorted(unknown))} for loss {name!r}; "
            f"it takes {', '.join(LOSSES[name])}"
        )
    values = {**LOSSES[name], **class_defaults(name, num_classes), **params}
    ignore_index = values["ignore_index"]
    terms = {
        key: _TERMS[term][0](ignore_index=ignore_index, **{p: values[p] for p in _TERMS[term][1]})
        for key, term in _SPECS[name][0]
    }
    if len(terms) == 1:
        return next(iter(terms.values()))
    weighted = {key: (values[f"{key}_weight"], term) for key, term in terms.items()}
    return CombinedLoss(weighted, ignore_index=ignore_index)
