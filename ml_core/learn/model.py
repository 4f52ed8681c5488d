"""U-Net (Ronneberger et al. 2015) with BatchNorm and a 2-channel (background, building) output."""

from __future__ import annotations

import torch
from torch import nn


class _DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by BatchNorm and ReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """Encoder-decoder with skip connections; channels double at each of ``depth`` levels.

    Input height and width must be multiples of ``2**depth`` (the tiler pads to that).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 2, width: int = 16, depth: int = 4):
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.width = width
        self.depth = depth
        chans = [width * 2**i for i in range(depth + 1)]
        self.stem = _DoubleConv(in_channels, chans[0])
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), _DoubleConv(chans[i], chans[i + 1]))
            for i in range(depth)
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.fuse = nn.ModuleList(
            _DoubleConv(2 * chans[i], chans[i]) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    @property
    def multiple(self) -> int:
        """Input sizes must be divisible by this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for level in self.down:
            skips.append(level(skips[-1]))
        y = skips.pop()
        for up, fuse in zip(self.up, self.fuse):
            y = fuse(torch.cat([skips.pop(), up(y)], dim=1))
        return self.head(y)

    def architecture(self) -> dict:
        """The constructor arguments, for the model card."""
        return {
            "name": "unet",
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "width": self.width,
            "depth": self.depth,
        }
