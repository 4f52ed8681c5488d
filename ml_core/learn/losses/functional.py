"""Pure tensor math behind every loss; the modules only hold parameters and compose these.

Notation: logits ``z`` [N, C, H, W]; ``log p = log_softmax(z)`` and ``p = exp(log p)``, computed
once per call by :func:`prepare`; ``y`` is the one-hot target and ``v`` the labelled-pixel mask
(``target != ignore_index``), both 0 on unknown pixels, so an unknown pixel contributes to no
term. ``sum_i`` runs over batch and pixels; ``n = max(sum_i v, 1)``, so that an all-unknown
batch gives 0. Every constant is a parameter of the module (defaults in ``LOSSES``).

- CE: ``-(1/n) sum_i log p_{y_i}(i)``.
- LACE, logit-adjusted CE (Menon et al. 2021, "Long-tail learning via logit adjustment",
  ICLR; the IEEE GRSL letter on building extraction with missing annotations uses it):
  ``CE(z + tau log pi)``, pi the class prior. As ``log_softmax(z + a) = log p + a -
  log sum_c p_c e^{a_c}``, it equals ``CE + (1/n) sum_i v [log sum_c p_c pi_c^tau - tau log
  pi_{y_i}]``: no second softmax, and the log argument is at least ``min_c pi_c^tau > 0``.
- Dice, per class over the whole batch: ``d_c = (2 sum_i p_c y_c + smooth) / (sum_i p_c v +
  sum_i y_c + smooth)``; loss ``1 - sum_c w_c d_c / sum_c w_c`` (``dice``: equal weights).
- NR-Dice, noise-robust Dice (Wang et al. 2020, "A noise-robust framework for automatic
  segmentation of COVID-19 pneumonia lesions from CT images", IEEE TMI):
  ``mean_c sum_i v |p_c - y_c|^gamma / (sum_i p_c v + sum_i y_c + eps)``.
- ELL, exponential logarithmic loss (Wong et al. 2018, "3D segmentation with exponential
  logarithmic loss for highly unbalanced object sizes", MICCAI):
  ``w_dice mean_c (-ln d_c)^gamma_dice + w_ce (1/n) sum_i v w_{y_i} (-ln p_{y_i})^gamma_ce``,
  class weights ``w_c = (sum_k f_k / f_c)^0.5`` from class frequencies ``f``; ``x^g`` is
  evaluated as ``max(x, tiny)^g - tiny^g``, finite in gradient (g < 1) at a perfect prediction.
- Boundary loss (Bokhovkin & Burnaev 2019, "Boundary loss for remote sensing imagery semantic
  segmentation", ISNN): for the one-hot target and for ``p`` (maps ``M``),
  ``B = maxpool_theta0(1 - M) - (1 - M)`` and ``E = maxpool_theta(B)`` (stride 1, same size,
  nothing beyond the border); per image and class ``P = sum B_pred E_gt / (sum B_pred + eps)``,
  ``R = sum E_pred B_gt / (sum B_gt + eps)``, ``BF1 = 2PR / (P + R + eps)``; the loss is the
  mean of ``1 - BF1`` over the (image, class) pairs whose target has a boundary, and 0 (still on
  the graph) when none has. Unknown pixels: see :func:`boundary_f1_loss`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class Prepared(NamedTuple):
    """What every term needs, computed once per call by :func:`prepare`."""

    log_probs: Tensor  # [N, C, H, W]
    probs: Tensor  # [N, C, H, W], exp(log_probs)
    onehot: Tensor  # [N, C, H, W], 0 on unknown pixels
    valid: Tensor  # [N, 1, H, W], 1 on labelled pixels
    class_count: Tensor  # [C], labelled pixels per class

    @property
    def n_valid(self) -> Tensor:
        """Number of labelled pixels, at least 1."""
        return self.class_count.sum().clamp_min(1)


def prepare(logits: Tensor, target: Tensor, ignore_index: int = 255) -> Prepared:
    """One log-softmax in (at least) float32; one-hot target and valid mask as float tensors.

    ``target`` holds 0..C-1 or ``ignore_index``; half-precision logits are promoted to float32.
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    log_probs = torch.log_softmax(logits, dim=1)
    classes = torch.arange(logits.shape[1], device=target.device).view(1, -1, 1, 1)
    onehot = (target.unsqueeze(1) == classes).to(logits.dtype)
    valid = (target != ignore_index).unsqueeze(1).to(logits.dtype)
    return Prepared(log_probs, log_probs.exp(), onehot, valid, onehot.sum((0, 2, 3)))


def pixel_nll(batch: Prepared) -> Tensor:
    """``-log p_y`` per pixel [N, H, W]; 0 on unknown pixels."""
    return -(batch.onehot * batch.log_probs).sum(1)


def cross_entropy(batch: Prepared) -> Tensor:
    """Mean cross-entropy over labelled pixels."""
    return -(batch.onehot * batch.log_probs).sum() / batch.n_valid


def logit_adjustment(batch: Prepared, log_prior: Tensor, tau: float) -> Tensor:
    """``CE(z + tau log pi) - CE(z)``, from the shared probabilities (see the module docstring)."""
    shift = tau * log_prior.to(batch.probs.dtype)
    scaled = batch.probs * shift.exp().view(1, -1, 1, 1)
    log_norm = (batch.valid * scaled.sum(1, keepdim=True).log()).sum()
    return (log_norm - (batch.class_count * shift).sum()) / batch.n_valid


def logit_adjusted_cross_entropy(batch: Prepared, log_prior: Tensor, tau: float) -> Tensor:
    """LACE: cross-entropy of ``logits + tau * log_prior``."""
    return cross_entropy(batch) + logit_adjustment(batch, log_prior, tau)


def probability_mass(batch: Prepared) -> Tensor:
    """``sum p_c`` over labelled pixels, per class [C]."""
    return (batch.probs * batch.valid).sum((0, 2, 3))


def soft_dice(batch: Prepared, smooth: float) -> Tensor:
    """Soft Dice per class [C], sums over the whole batch."""
    intersection = (batch.probs * batch.onehot).sum((0, 2, 3))
    return (2 * intersection + smooth) / (probability_mass(batch) + batch.class_count + smooth)


def weighted_dice_loss(batch: Prepared, class_weights: Tensor, smooth: float) -> Tensor:
    """``1 - sum_c w_c d_c / sum_c w_c``."""
    weights = class_weights.to(batch.probs.dtype)
    return 1 - (weights * soft_dice(batch, smooth)).sum() / weights.sum()


def noise_robust_dice_loss(batch: Prepared, gamma: float, eps: float) -> Tensor:
    """NR-Dice, mean over classes."""
    error = ((batch.probs - batch.onehot).abs() * batch.valid).pow(gamma).sum((0, 2, 3))
    return (error / (probability_mass(batch) + batch.class_count + eps)).mean()


def _pow0(x: Tensor, gamma: float, tiny: float) -> Tensor:
    """``x^gamma`` for ``x >= 0``, 0 at 0, with a finite gradient there even for gamma < 1."""
    return x.clamp_min(tiny).pow(gamma) - tiny**gamma


def exp_log_loss(
    batch: Prepared,
    class_weights: Tensor,
    smooth: float,
    gamma_dice: float,
    gamma_ce: float,
    w_dice: float,
    w_ce: float,
    tiny: float,
) -> Tensor:
    """ELL: ``w_dice E_c[(-ln d_c)^gamma_dice] + w_ce E_i[w_y (-ln p_y)^gamma_ce]``."""
    dice_term = _pow0(-soft_dice(batch, smooth).log(), gamma_dice, tiny).mean()
    pixel_weight = (batch.onehot * class_weights.to(batch.probs.dtype).view(1, -1, 1, 1)).sum(1)
    ce_sum = (pixel_weight * _pow0(pixel_nll(batch), gamma_ce, tiny)).sum()
    return w_dice * dice_term + w_ce * ce_sum / batch.n_valid


def _max_filter_(x: Tensor, size: int) -> Tensor:
    """Max filter of ``x`` in place, without autograd: ``max_pool1d`` along W, shifts along H."""
    n, c, h, w = x.shape
    rows = F.max_pool1d(x.reshape(-1, w), size, 1, size // 2).view(n, c, h, w)
    x.copy_(rows)
    for shift in range(1, size // 2 + 1):
        torch.maximum(x[:, :, shift:], rows[:, :, :-shift], out=x[:, :, shift:])
        torch.maximum(x[:, :, :-shift], rows[:, :, shift:], out=x[:, :, :-shift])
    return x


def max_filter(x: Tensor, size: int) -> Tensor:
    """``size`` x ``size`` max filter of maps [N, C, H, W]; odd size, stride 1, same size,
    nothing beyond the border counts.

    With gradients this is ``F.max_pool2d``. A keyed forward (arg-max packed into float64
    mantissas, max_pool2d's backward) made the filter 3-4x faster on CPU but a whole training
    step no faster (docs/benchmarks/max_filter.json), so it was removed. Without gradients, on
    CPU, the in-place separable filter below spares the copies.
    """
    if x.device.type == "cpu" and not (x.requires_grad and torch.is_grad_enabled()):
        return _max_filter_(x.clone(), size)
    return F.max_pool2d(x, size, 1, size // 2)


def boundary_f1_loss(batch: Prepared, theta0: int, theta: int, eps: float) -> Tensor:
    """Boundary loss (mean ``1 - BF1``) with unknown pixels treated as follows.

    - Target boundaries are the certain ones: ``1 - M`` is set to 0 on unknown pixels, so an
      unknown neighbour never makes a boundary (the edge of an unknown region is no boundary),
      and ``B_gt`` is kept on labelled pixels only. A labelled pixel next to a labelled pixel of
      another class is a boundary as usual, even when unknown pixels are also nearby.
    - Precision only judges predicted boundary pixels whose whole
      ``(theta0 + theta - 1)``-square window is labelled (7x7 by default): elsewhere an unknown
      target boundary could lie within the tolerance, so ``B_pred`` is zeroed there.
    - Recall uses ``E_pred`` at target boundary pixels as it is: the prediction exists
      everywhere, so a predicted boundary within tolerance counts even over unknown pixels.

    Without unknown pixels this is exactly the published definition.
    """
    C = batch.probs.shape[1]
    if C == 2:  # 1 - M_c = M_(1-c): take M, so both maps list the classes swapped (same mean)
        comp, gt_comp = batch.probs, batch.onehot
    else:
        comp, gt_comp = 1 - batch.probs, (1 - batch.onehot) * batch.valid
    with torch.no_grad():  # [B_gt | unknown dilated by theta0], then [E_gt | dilated again]
        maps = _max_filter_(torch.cat([gt_comp, 1 - batch.valid], 1), theta0)
        b_gt = maps[:, :C].sub_(gt_comp).mul_(batch.valid)
        extended = _max_filter_(maps.clone(), theta)
        e_gt, judged = extended[:, :C], 1 - extended[:, C:]
        gt_len = b_gt.sum((2, 3))
    b_pred = max_filter(comp, theta0) - comp
    e_pred = max_filter(b_pred, theta)
    b_judged = b_pred * judged
    precision = (b_judged * e_gt).sum((2, 3)) / (b_judged.sum((2, 3)) + eps)
    recall = (e_pred * b_gt).sum((2, 3)) / (gt_len + eps)
    bf1 = 2 * precision * recall / (precision + recall + eps)
    counted = (gt_len > 0).to(bf1.dtype)
    return ((1 - bf1) * counted).sum() / counted.sum().clamp_min(1)
