"""Weighted sums of losses sharing one softmax."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ml_core.learn.losses.base import SegLoss
from ml_core.learn.losses.functional import Prepared


class CombinedLoss(SegLoss):
    """``sum_k weight_k * term_k``: the terms share the prepared tensors (one log-softmax)."""

    def __init__(self, terms: Mapping[str, tuple[float, SegLoss]], ignore_index: int = 255) -> None:
        super().__init__(ignore_index)
        self.terms = nn.ModuleDict({key: term for key, (_, term) in terms.items()})
        self.weights = {key: weight for key, (weight, _) in terms.items()}

    def compute(self, batch: Prepared) -> Tensor:
        return sum(self.weights[key] * term.compute(batch) for key, term in self.terms.items())
