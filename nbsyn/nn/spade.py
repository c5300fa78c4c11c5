"""Spatially-adaptive normalisation (SPADE) and the SPADE residual block.

SPADE (Park et al., 2019; thesis Eq. 3.13, L895-899) normalises a feature map with parameter-free
batch (or instance) normalisation and then modulates it per pixel with a scale and a shift that a
small conv net predicts from the semantic label map:

    out = norm(x) * (1 + gamma(seg)) + beta(seg)

The ``1 + gamma`` is what the SPADE and OASIS code compute (the thesis writes plain gamma); with
gamma initialised near zero the layer starts as a plain normalisation. ``seg`` is any conditioning
map (one-hot labels, or labels concatenated with OASIS's 3D noise); it is resized with
nearest-neighbour interpolation to the feature resolution.

Shared by the OASIS notebook (01) and the notebooks that build on an OASIS/SPADE generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

NORMS = ("batch", "instance")


def resize_nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize; exact integer downsampling is done by strided slicing.

    Identical to ``F.interpolate(x, size, mode="nearest")`` (which picks source index
    floor(i * in / out)), but much faster on CPU, where the label map is resized at every layer.
    """
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    if h % size[0] == 0 and w % size[1] == 0:
        return x[..., :: h // size[0], :: w // size[1]]
    return F.interpolate(x, size=tuple(size), mode="nearest")


class _Upsample2x(torch.autograd.Function):
    """Nearest x2 upsampling with a cheap backward.

    Forward: broadcast every pixel to a 2x2 block (same values as F.interpolate(scale_factor=2)).
    Backward: each input pixel's gradient is the sum of its 2x2 block, added as (g00 + g01) + (g10 + g11)
    with strided views. That is the order of the generic reduction autograd used for the broadcast
    version (``sum`` over the two size-2 axes), so gradients are bit-identical to it
    (tests/test_speed.py), at a fraction of the cost (the sum was ~13% of an OASIS step on CPU).
    The backward is built from differentiable ops, so double backward (R1 penalties) works.
    """

    @staticmethod
    def forward(ctx, x):
        b, c, h, w = x.shape
        return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)

    @staticmethod
    def backward(ctx, g):
        b, c, h2, w2 = g.shape
        v = g.reshape(b, c, h2 // 2, 2, w2 // 2, 2)
        rows = v[..., 0] + v[..., 1]  # (b, c, h, 2, w): g00 + g01 and g10 + g11
        return rows[:, :, :, 0] + rows[:, :, :, 1]


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling of (B, C, H, W): same values as F.interpolate(scale_factor=2)."""
    if x.dim() != 4:
        raise ValueError(f"upsample2x expects (B, C, H, W), got {tuple(x.shape)}")
    return _Upsample2x.apply(x)


def param_free_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation without a learned affine transform (SPADE supplies gamma and beta)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=False)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    raise ValueError(f"unknown param-free norm {kind!r}; choose one of {NORMS}")


class SPADE(nn.Module):
    """out = norm(x) * (1 + gamma(seg)) + beta(seg)   (thesis Eq. 3.13, L897; code: 1 + gamma).

    Args:
        channels: channels of the normalised feature map x.
        cond_channels: channels of the conditioning map seg.
        hidden: width of the shared conv that embeds seg (128 in SPADE and OASIS).
        kernel_size: kernel of the three convs (3 in SPADE and OASIS).
        norm: "batch" (OASIS: sync batch norm) or "instance".
    """

    def __init__(self, channels: int, cond_channels: int, hidden: int = 128, kernel_size: int = 3,
                 norm: str = "batch"):
        super().__init__()
        pad = kernel_size // 2
        self.norm = param_free_norm(norm, channels)
        self.shared = nn.Sequential(nn.Conv2d(cond_channels, hidden, kernel_size, padding=pad), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, kernel_size, padding=pad)
        self.beta = nn.Conv2d(hidden, channels, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        seg = resize_nearest(seg, x.shape[-2:])
        embedding = self.shared(seg)
        return self.norm(x) * (1 + self.gamma(embedding)) + self.beta(embedding)


def _conv(cin: int, cout: int, kernel_size: int, spectral: bool, bias: bool = True) -> nn.Module:
    conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=bias)
    return spectral_norm(conv) if spectral else conv


class SPADEResBlock(nn.Module):
    """The SPADE residual block (SPADE/OASIS generators).

        dx  = conv_1(lrelu(SPADE_1(conv_0(lrelu(SPADE_0(x))))))
        x_s = conv_s(SPADE_s(x))  if channels change, else x
        out = x_s + dx

    conv_0/conv_1 are 3x3, conv_s is 1x1 without bias; all three carry spectral normalisation
    (``spectral=True``), the SPADE convs do not. The middle width is min(fin, fout).
    """

    def __init__(self, fin: int, fout: int, cond_channels: int, hidden: int = 128, norm: str = "batch",
                 spectral: bool = True):
        super().__init__()
        fmiddle = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.norm_0 = SPADE(fin, cond_channels, hidden, norm=norm)
        self.conv_0 = _conv(fin, fmiddle, 3, spectral)
        self.norm_1 = SPADE(fmiddle, cond_channels, hidden, norm=norm)
        self.conv_1 = _conv(fmiddle, fout, 3, spectral)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, cond_channels, hidden, norm=norm)
            self.conv_s = _conv(fin, fout, 1, spectral, bias=False)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx
