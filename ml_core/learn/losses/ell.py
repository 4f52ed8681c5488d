"""Exponential logarithmic loss (ELL)."""

from __future__ import annotations

from torch import Tensor

from ml_core.learn.losses import functional as LF
from ml_core.learn.losses.base import ClassValues, SegLoss


class ExpLogLoss(SegLoss):
    """ELL (Wong et al. 2018): ``w_dice E_c[(-ln d_c)^g_dice] + w_ce E_i[w_y (-ln p_y)^g_ce]``.

    ``d_c`` is the soft Dice of class c (smoothed by ``smooth``), ``g_*`` are ``gamma_*``. The
    class weights ``w_c = (sum_k f_k / f_c)^weight_power`` come from the class frequencies
    ``frequency`` (background, building); the default (0.9, 0.1) matches the LACE prior and gives
    w = (1.05, 3.16). ``"auto"`` takes the frequency of the training masks, passed by the trainer
    through ``set_class_frequency``. ``smooth`` = 1 and the other defaults are Wong et al.'s.
    """

    def __init__(
        self,
        frequency: ClassValues = (0.9, 0.1),
        weight_power: float = 0.5,
        w_dice: float = 0.8,
        w_ce: float = 0.2,
        gamma_dice: float = 0.3,
        gamma_ce: float = 0.3,
        smooth: float = 1.0,
        tiny: float = 1e-30,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(ignore_index)
        self.w_dice, self.w_ce = w_dice, w_ce
        self.gamma_dice, self.gamma_ce = gamma_dice, gamma_ce
        self.smooth, self.tiny = smooth, tiny
        self.class_buffer("class_weights", frequency, lambda f: (f.sum() / f) ** weight_power)

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
