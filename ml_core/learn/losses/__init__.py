"""Segmentation losses for training with missing labels: the paper's joint loss and baselines.

``get_loss(name, **params)`` returns a module called as ``loss(logits, target)`` with logits
[N, 2, H, W] and a target [N, H, W] of 0 (background), 1 (building) and ``ignore_index``
(unknown, default 255), which contributes to no term. ``LOSSES`` lists the names and defaults;
formulas and references are in :mod:`ml_core.learn.losses.functional`.
"""

from ml_core.learn.losses.base import SegLoss
from ml_core.learn.losses.boundary import BoundaryLoss
from ml_core.learn.losses.ce import CrossEntropyLoss, LogitAdjustedCELoss
from ml_core.learn.losses.combined import CombinedLoss
from ml_core.learn.losses.dice import DiceLoss, NoiseRobustDiceLoss
from ml_core.learn.losses.ell import ExpLogLoss
from ml_core.learn.losses.registry import LOSS_DESCRIPTIONS, LOSSES, describe_loss, get_loss

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
