"""Segmentation losses for training with missing labels: the paper's joint loss and baselines.

``get_loss(name, **params)`` returns a module called as ``loss(logits, target)`` with logits
[N, 2, H, W] and a target [N, H, W] of 0 (background), 1 (building) and ``ignore_index``
(unknown, default 255), which contributes to no term. ``LOSSES`` lists the names and defaults;
formulas and references are in :mod:`ml_core.losses.functional`.
"""

from .base import SegLoss
from .boundary import BoundaryLoss
from .ce import CrossEntropyLoss, LogitAdjustedCELoss
from .combined import CombinedLoss
from .dice import DiceLoss, NoiseRobustDiceLoss
from .ell import ExpLogLoss
from .registry import LOSS_DESCRIPTIONS, LOSSES, describe_loss, get_loss

__all__ = [
    "LOSSES",
    "LOSS_DESCRIPTIONS",
    "BoundaryLoss",
    "CombinedLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "ExpLogLoss",
    "LogitAdjustedCELoss",
    "NoiseRobustDiceLoss",
    "SegLoss",
    "describe_loss",
    "get_loss",
]
