"""Cross-entropy and logit-adjusted cross-entropy (LACE)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ml_core.learn.losses import functional as LF
from ml_core.learn.losses.base import SegLoss, class_vector


class CrossEntropyLoss(SegLoss):
    """Mean cross-entropy over labelled pixels."""

    def compute(self, batch: LF.Prepared) -> Tensor:
        return LF.cross_entropy(batch)


class LogitAdjustedCELoss(SegLoss):
    """LACE (Menon et al. 2021): ``cross_entropy(logits + tau * log(prior))``.

    ``prior`` is per class (background, building, ...), at any scale; equal priors (or
    ``tau=0``) give plain cross-entropy. Defaults: ``ml_core.config.LossOptions``.
    """

    def __init__(self, *, tau: float, prior: Sequence[float], ignore_index: int = 255) -> None:
        super().__init__(ignore_index)
        self.tau = tau
        self.register_buffer("log_prior", class_vector(prior, "prior").log(), persistent=False)

    def compute(self, batch: LF.Prepared) -> Tensor:
        return LF.logit_adjusted_cross_entropy(batch, self.log_prior, self.tau)
