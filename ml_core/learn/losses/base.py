"""The base class of every loss: shared input handling, one softmax per call."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ml_core.learn.losses.functional import Prepared, prepare


def class_vector(values: Sequence[float], name: str) -> Tensor:
    """Validated positive per-class values as a float32 tensor."""
    vector = torch.as_tensor(values, dtype=torch.float32)
    if vector.dim() != 1 or len(vector) < 2 or not bool((vector > 0).all()):
        raise ValueError(f"{name} must be positive numbers, one per class, not {values!r}")
    return vector


class SegLoss(nn.Module):
    """``forward(logits [N, C, H, W], target [N, H, W]) -> scalar`` for any loss of the registry.

    Runs in float32 (float64 stays float64) with autocast disabled, whatever the caller's
    precision; subclasses implement :meth:`compute` on the :class:`Prepared` tensors, so a sum of
    losses prepares them (one log-softmax) only once.
    """

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.dim() != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(
                f"expected logits [N, C, H, W] and target [N, H, W], got {tuple(logits.shape)} "
                f"and {tuple(target.shape)}"
            )
        if 0 <= self.ignore_index < logits.shape[1]:
            raise ValueError(f"ignore_index {self.ignore_index} is a class index")
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self.compute(prepare(logits, target, self.ignore_index))

    def compute(self, batch: Prepared) -> Tensor:
        """The loss from the prepared tensors."""
        raise NotImplementedError
