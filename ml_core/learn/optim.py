"""The optimiser and learning-rate schedule of a training run, from ``TrainOptions``."""

from __future__ import annotations

import torch

from ml_core.config import TrainOptions
from ml_core.errors import InputError

DEFAULT_LR = {"sgd": 0.002, "adamw": 3e-4}  # the paper's SGD rate; AdamW's usual one


def make_optimizer(net: torch.nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    """AdamW, or the paper's SGD (momentum 0.9, Nesterov); lr defaults depend on the choice."""
    if options.optimizer not in DEFAULT_LR:
        raise InputError(f"Unknown optimizer {options.optimizer!r}; choose adamw or sgd.")
    lr = DEFAULT_LR[options.optimizer] if options.lr is None else options.lr
    if options.optimizer == "sgd":
        return torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True,
                               weight_decay=options.weight_decay)
    return torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=options.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, options: TrainOptions,
                   epochs_done: int = 0) -> torch.optim.lr_scheduler.StepLR:
    """Halve the learning rate every ``options.lr_halve_every`` epochs (the paper's schedule);
    ``epochs_done`` > 0 continues a resumed run where it stopped.

    The optimiser of a resumed run already holds the rate it stopped with, so the schedule only
    takes over its epoch count. (Built with ``last_epoch=epochs_done - 1`` instead, StepLR's
    first step would halve that rate once more when a run stopped on a multiple of
    ``lr_halve_every``.)"""
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, options.lr_halve_every, 0.5)
    scheduler.last_epoch = epochs_done
    return scheduler


__all__ = ["DEFAULT_LR", "make_optimizer", "make_scheduler"]
