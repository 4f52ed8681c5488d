"""The base class of every loss: shared input handling, one softmax per call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, Union

import torch
from torch import Tensor, nn

from ml_core.learn.losses.functional import Prepared, prepare

# Per-class numbers, or "auto": the class frequency of the training masks (set_class_frequency).
ClassValues = Union[Sequence[float], str]


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
        self._from_frequency: dict[str, Callable[[Tensor], Tensor]] = {}
        self._frequency_known = False

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.dim() != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(
                f"expected logits [N, C, H, W] and target [N, H, W], got {tuple(logits.shape)} "
                f"and {tuple(target.shape)}"
            )
        if 0 <= self.ignore_index < logits.shape[1]:
            raise ValueError(f"ignore_index {self.ignore_index} is a class index")
        if self.waits_for_frequency:
            raise RuntimeError("a term is set to 'auto': call set_class_frequency((f0, f1)) first")
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self.compute(prepare(logits, target, self.ignore_index))

    def compute(self, batch: Prepared) -> Tensor:
        """The loss from the prepared tensors."""
        raise NotImplementedError

    def class_buffer(
        self, name: str, values: ClassValues, transform: Callable[[Tensor], Tensor]
    ) -> None:
        """Register buffer ``name = transform(values)``; ``"auto"`` defers to the frequency."""
        if isinstance(values, str):
            if values != "auto":
                raise ValueError(f"{name} must be per-class numbers or 'auto', not {values!r}")
            self._from_frequency[name] = transform
            values = (1.0, 1.0)  # placeholder until set_class_frequency
        self.register_buffer(name, transform(class_vector(values, name)), persistent=False)

    @property
    def waits_for_frequency(self) -> bool:
        """True while a term set to ``"auto"`` has not been given the class frequency."""
        return bool(self._from_frequency) and not self._frequency_known

    def set_class_frequency(self, frequency: Sequence[float]) -> None:
        """Give the class frequency (f0, f1) of the training masks, as counts or fractions.

        Used by terms set to ``"auto"`` (LACE ``prior``, ELL ``frequency``) and a no-op for the
        others, so a trainer may call it on any loss; call it again for new training data.
        """
        vector = class_vector(frequency, "class frequency")
        for name, transform in self._from_frequency.items():
            setattr(self, name, transform(vector).to(getattr(self, name).device))
        self._frequency_known = True
