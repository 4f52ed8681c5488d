"""Cross-entropy and logit-adjusted cross-entropy (LACE)."""

from __future__ import annotations

from torch import Tensor

from ml_core.learn.losses import functional as LF
from ml_core.learn.losses.base import ClassValues, SegLoss


class CrossEntropyLoss(SegLoss):
    """Mean cross-entropy over labelled pixels."""

    def compute(self, batch: LF.Prepared) -> Tensor:
        return LF.cross_entropy(batch)


class LogitAdjustedCELoss(SegLoss):
    """LACE (Menon et al. 2021): ``cross_entropy(logits + tau * log(prior))``.

    ``prior`` is per class (background, building), at any scale; ``"auto"`` takes the class
    frequency of the training masks, passed by the trainer through ``set_class_frequency``.
    ``prior=(0.5, 0.5)`` (or ``tau=0``) is plain cross-entropy.
    """

    def __init__(
        self, tau: float = 1.0, prior: ClassValues = (0.9, 0.1), ignore_index: int = 255
    ) -> None:
        super().__init__(ignore_index)
        self.tau = tau
        self.class_buffer("log_prior", prior, Tensor.log)

    def compute(self, batch: LF.Prepared) -> Tensor:
        return LF.logit_adjusted_cross_entropy(batch, self.log_prior, self.tau)
