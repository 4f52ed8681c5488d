"""Soft Dice (plain and class-weighted) and noise-robust Dice."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ml_core.learn.losses import functional as LF
from ml_core.learn.losses.base import SegLoss, class_vector


class DiceLoss(SegLoss):
    """``1 - sum_c w_c dice_c / sum_c w_c``, soft Dice per class summed over the batch.

    ``class_weights`` (background, building, ...): equal for ``dice``, (0.1, 0.9) for ``wdice``;
    ``smooth`` is added to numerator and denominator (an empty class has Dice 1).
    """

    def __init__(
        self, *, class_weights: Sequence[float], smooth: float, ignore_index: int = 255
    ) -> None:
        super().__init__(ignore_index)
        self.smooth = smooth
        weights = class_vector(class_weights, "class_weights")
        self.register_buffer("class_weights", weights, persistent=False)

    def compute(self, batch: LF.Prepared) -> Tensor:
        return LF.weighted_dice_loss(batch, self.class_weights, self.smooth)


class NoiseRobustDiceLoss(SegLoss):
    """NR-Dice (Wang et al. 2020): ``sum|p - y|^gamma / (sum p + sum y + eps)``, mean over classes.

    ``gamma`` in [1, 2]: 2 gives an MSE-like, 1 an MAE-like (most noise-robust) loss.
    """

    def __init__(self, *, gamma: float, eps: float, ignore_index: int = 255) -> None:
        super().__init__(ignore_index)
        if gamma < 1:
            raise ValueError(f"gamma must be >= 1 (finite gradient at p = y), not {gamma}")
        self.gamma = gamma
        self.eps = eps

    def compute(self, batch: LF.Prepared) -> Tensor:
        return LF.noise_robust_dice_loss(batch, self.gamma, self.eps)
