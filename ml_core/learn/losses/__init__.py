"""Segmentation losses for training with missing labels: the paper's joint loss and baselines.

``get_loss(name, num_classes, **params)`` returns a module called as ``loss(logits, target)``
with logits [N, C, H, W] and a target [N, H, W] of class indices and ``ignore_index`` (unknown,
default 255), which contributes to no term. ``LOSSES`` lists the names and their 2-class
defaults; ``loss_params(name, LossOptions, num_classes)`` sets them from the front ends' options
(``ml_core.config.LossOptions``). Formulas and references: :mod:`ml_core.learn.losses.functional`.
"""

from ml_core.learn.losses.base import SegLoss
from ml_core.learn.losses.boundary import BoundaryLoss
from ml_core.learn.losses.ce import CrossEntropyLoss, LogitAdjustedCELoss
from ml_core.learn.losses.combined import CombinedLoss
from ml_core.learn.losses.dice import DiceLoss, NoiseRobustDiceLoss
from ml_core.learn.losses.ell import ExpLogLoss
from ml_core.learn.losses.registry import (
    LOSS_DESCRIPTIONS,
    LOSSES,
    class_defaults,
    describe_loss,
    get_loss,
    loss_params,
)

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
    "class_defaults",
    "describe_loss",
    "get_loss",
    "loss_params",
]
