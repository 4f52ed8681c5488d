"""Exponential logarithmic loss (ELL)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ml_core.learn.losses import functional as LF
from ml_core.learn.losses.base import SegLoss, class_vector


class ExpLogLoss(SegLoss):
    """ELL (Wong et al. 2018): ``w_dice E_c[(-ln d_c)^g_dice] + w_ce E_i[w_y (-ln p_y)^g_ce]``.

    ``d_c`` is the soft Dice of class c (smoothed by ``smooth``), ``g_*`` are ``gamma_*``. The
    class weights ``w_c = (sum_k f_k / f_c)^weight_power`` come from the class frequencies
    ``frequency`` (background, building); the default (0.9, 0.1) matches the LACE prior and gives
    w = (1.05, 3.16). ``smooth`` = 1 and the other defaults (in the registry) are Wong et al.'s.
    """

    def __init__(
        self,
        *,
        frequency: Sequence[float],
        weight_power: float,
        w_dice: float,
        w_ce: float,
        gamma_dice: float,
        gamma_ce: float,
        smooth: float,
        tiny: float,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(ignore_index)
        self.w_dice, self.w_ce = w_dice, w_ce
        self.gamma_dice, self.gamma_ce = gamma_dice, gamma_ce
        self.smooth, self.tiny = smooth, tiny
        f = class_vector(frequency, "frequency")
        self.register_buffer("class_weights", (f.sum() / f) ** weight_power, persistent=False)

    def compute(self, batch: LF.Prepared) -> Tensor:
        return LF.exp_log_loss(
            batch,
            self.class_weights,
            self.smooth,
            self.gamma_dice,
            self.gamma_ce,
            self.w_dice,
            self.w_ce,
            self.tiny,
        )
