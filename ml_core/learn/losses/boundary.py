"""Boundary loss: 1 - boundary F1 (Bokhovkin & Burnaev 2019)."""

from __future__ import annotations

from torch import Tensor

from ml_core.learn.losses import functional as LF
from ml_core.learn.losses.base import SegLoss


class BoundaryLoss(SegLoss):
    """Mean ``1 - BF1`` over the (image, class) pairs whose target has a boundary.

    ``theta0`` is the boundary width and ``theta`` the tolerance window (odd, in pixels);
    unknown pixels are handled as described in :func:`functional.boundary_f1_loss`.
    """

    def __init__(self, *, theta0: int, theta: int, eps: float, ignore_index: int = 255) -> None:
        super().__init__(ignore_index)
        for name, size in (("theta0", theta0), ("theta", theta)):
            if size < 1 or size % 2 == 0:
                raise ValueError(f"{name} must be a positive odd number of pixels, not {size}")
        self.theta0, self.theta, self.eps = theta0, theta, eps

    def compute(self, batch: LF.Prepared) -> Tensor:
        return LF.boundary_f1_loss(batch, self.theta0, self.theta, self.eps)
