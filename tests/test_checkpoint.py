"""Training state files and the optimiser factory (learn.checkpoint, learn.optim)."""

from dataclasses import replace

import pytest
import torch

from ml_core.config import TrainOptions
from ml_core.errors import InputError
from ml_core.learn.checkpoint import load_state, save_state, state_paths
from ml_core.learn.optim import make_optimizer, make_scheduler

OPTIONS = TrainOptions(optimizer="adamw", lr=0.01, lr_halve_every=1)


def _stepped(options: TrainOptions) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    net = torch.nn.Linear(3, 2)
    opt = make_optimizer(net, options)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    return net, opt


def test_resumed_adamw_keeps_tuple_betas_and_the_halved_rate(tmp_path):
    net, opt = _stepped(OPTIONS)
    make_scheduler(opt, OPTIONS).step()  # one epoch done: lr 0.01 -> 0.005
    save_state(tmp_path / "m.safetensors", opt, {"epoch": 1})
    fresh = make_optimizer(net, OPTIONS)
    assert load_state(tmp_path / "m.safetensors", fresh) == {"epoch": 1}
    group = fresh.param_groups[0]
    assert group["betas"] == (0.9, 0.999) and isinstance(group["betas"], tuple)
    assert group["lr"] == pytest.approx(0.005)
    resumed = make_scheduler(fresh, OPTIONS, 1)  # stopped on a multiple of lr_halve_every
    assert fresh.param_groups[0]["lr"] == pytest.approx(0.005)  # not halved twice
    fresh.step()
    resumed.step()  # the second epoch's end halves it, as in a run without a stop
    assert fresh.param_groups[0]["lr"] == pytest.approx(0.0025)


def test_state_of_another_optimiser_or_a_torn_file_is_a_clear_error(tmp_path):
    _, opt = _stepped(OPTIONS)
    save_state(tmp_path / "m.safetensors", opt, {"epoch": 1})
    two_groups = torch.optim.SGD([{"params": [torch.zeros(1)]}, {"params": [torch.ones(1)]}],
                                 lr=0.1)
    with pytest.raises(InputError, match="parameter groups"):
        load_state(tmp_path / "m.safetensors", two_groups)
    state_paths(tmp_path / "m.safetensors")[1].write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="corrupt"):
        load_state(tmp_path / "m.safetensors", opt)
    assert make_optimizer(torch.nn.Linear(1, 1), replace(OPTIONS, lr=None)).defaults["lr"] == 3e-4
