"""A small U-Net (Ronneberger et al. 2015) used as the evaluation segmenter of the notebooks."""

from __future__ import annotations

import torch
from torch import nn


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 conv + BatchNorm + ReLU layers."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder of ``depth`` down-steps (channels width * 2^k), decoder with skip concatenation.

    Input (N, in_channels, H, W) with H, W divisible by 2^depth; output (N, num_classes, H, W) logits.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, depth: int = 3):
        super().__init__()
        chans = [width * 2**k for k in range(depth + 1)]
        self.depth = depth
        self.inc = conv_block(in_channels, chans[0])
        self.down = nn.ModuleList(conv_block(chans[k], chans[k + 1]) for k in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(chans[k + 1], chans[k], 2, stride=2) for k in reversed(range(depth)))
        self.dec = nn.ModuleList(conv_block(2 * chans[k], chans[k]) for k in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2**self.depth or x.shape[-2] % 2**self.depth:
            raise ValueError(f"U-Net of depth {self.depth} needs H, W divisible by {2**self.depth}, got {tuple(x.shape[-2:])}")
        skips = [self.inc(x)]
        for block in self.down:
            skips.append(block(nn.functional.max_pool2d(skips[-1], 2)))
        h = skips.pop()
        for up, dec in zip(self.up, self.dec):
            h = dec(torch.cat([up(h), skips.pop()], 1))
        return self.head(h)
