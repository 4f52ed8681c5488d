"""Label cleaning before fine-tuning: background the base model confidently calls building is
most likely an unmapped building, so it is made unknown rather than taught as background."""

from __future__ import annotations

import torch

from ml_core.infer.in_memory import predict_region
from ml_core.labels.classes import UNKNOWN
from ml_core.learn.dataset import Split


def ignore_confident(net: torch.nn.Module, split: Split, threshold: float,
                     device: torch.device, *, validation: bool) -> int:
    """Mark unknown the background pixels, in training blocks and (``validation``, which is
    ``TrainOptions.clean_validation``) held-out blocks, that the base model calls building with
    probability above ``threshold`` (likely unmapped buildings); returns how many training
    pixels changed."""
    changed = 0
    net.to(device)
    for train, val in zip(split.train, split.val):
        hit = predict_region(net, train.image, device)[0] > threshold
        changed += int((hit & (train.mask == 0)).sum())
        for reg in (train, val) if validation else (train,):
            reg.mask[hit & (reg.mask == 0)] = UNKNOWN
    return changed
