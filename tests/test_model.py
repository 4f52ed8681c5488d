"""U-Net shapes and sizes."""

import pytest
import torch

from ml_core.learn.model import UNet


@pytest.mark.parametrize(("width", "depth", "size"), [(4, 2, 16), (8, 3, 40), (4, 4, 64)])
def test_output_shape(width, depth, size):
    net = UNet(in_channels=5, num_classes=2, width=width, depth=depth)
    out = net(torch.randn(2, 5, size, size))
    assert out.shape == (2, 2, size, size)
    assert net.multiple == 2**depth


def test_width32_parameter_count_matches_reference():
    # The classic U-Net of width 32 (channels 32-512 over four down-sampling steps): 7.8M.
    count = sum(p.numel() for p in UNet(3, 2, width=32, depth=4).parameters())
    assert 7.7e6 < count < 7.9e6


def test_architecture_round_trips():
    net = UNet(4, 2, width=8, depth=3)
    rebuilt = UNet(**{k: v for k, v in net.architecture().items() if k != "name"})
    assert rebuilt.architecture() == net.architecture()
