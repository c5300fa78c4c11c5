"""Per-block real/fake heads: a discriminator that decides after every block.

SIV-GAN (Eq. 5.1, thesis L1430), OSMIS (Eq. 6.1, L1701) and SSR's L_all (Eq. 7.3, L2007) all put a
real/fake decision after every block of the discriminator and average the per-block losses:

    L_{D_*} = 1/N_* sum_{l=1}^{N_*} L_{D_*^l},   L_{D_*^l} = BCE of the logits of block l.

``MultiHeadD`` wraps any list of blocks with a 1x1 (spectral-norm) head after each block and returns
all logit maps; ``per_block_bce`` turns them into Eq. 5.1 (each map's BCE is averaged over its pixels,
so spatial heads are PatchGAN-like). Blocks may be anything that maps a tensor to a tensor; a
``before_block(i, h)`` hook lets a caller inject extra inputs (e.g. MSG-GAN image pyramids).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def sn(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Spectral normalisation [Miyato et al. 2018] if ``enabled``."""
    return nn.utils.spectral_norm(module) if enabled else module


class DecisionHead(nn.Module):
    """A 1x1 convolution from features to one real/fake logit per position."""

    def __init__(self, in_channels: int, spectral: bool = True):
        super().__init__()
        self.conv = sn(nn.Conv2d(in_channels, 1, kernel_size=1), spectral)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(h)


class MultiHeadD(nn.Module):
    """A stack of ``blocks`` with a :class:`DecisionHead` after each one.

    ``forward(x, before_block=None)`` returns ``(logits, features)``: one logit map and one feature map
    per block. ``out_channels[i]`` is the channel count block ``i`` produces.
    """

    def __init__(self, blocks: Sequence[nn.Module], out_channels: Sequence[int], spectral: bool = True):
        super().__init__()
        if len(blocks) != len(out_channels):
            raise ValueError(f"{len(blocks)} blocks but {len(out_channels)} channel counts")
        self.blocks = nn.ModuleList(blocks)
        self.heads = nn.ModuleList(DecisionHead(c, spectral) for c in out_channels)

    def __len__(self) -> int:
        return len(self.blocks)

    def forward(self, x: torch.Tensor,
                before_block: Callable[[int, torch.Tensor], torch.Tensor] | None = None):
        logits, features = [], []
        h = x
        for i, (block, head) in enumerate(zip(self.blocks, self.heads)):
            if before_block is not None:
                h = before_block(i, h)
            h = block(h)
            features.append(h)
            logits.append(head(h))
        return logits, features


def bce_logits(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy of one logit map against "real" (1) or "fake" (0), mean over all entries.

    -log D(x) for real, -log(1 - D(x)) for fake, with D = sigmoid(logit) (NS-GAN, thesis Eq. 3.5).
    """
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def per_block_bce(logits: Sequence[torch.Tensor], real: bool, reduction: str = "mean") -> torch.Tensor:
    """Eq. 5.1: the BCE of every block's head, averaged (``mean``) or summed (``sum``) over blocks."""
    if len(logits) == 0:
        raise ValueError("per_block_bce needs at least one logit map")
    losses = torch.stack([bce_logits(l, real) for l in logits])
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
