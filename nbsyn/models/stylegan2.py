"""A small StyleGAN2 (Karras et al., CVPR 2020), written from the paper in plain PyTorch.

The thesis uses StyleGAN2 as the backbone of its few-shot adaptation (ch. 7, [L2013-2019]; the
architecture is described in ch. 3.3, Fig. 3.3 [L880-884]). Everything is ordinary PyTorch ops
(no custom CUDA kernels), so it runs on CPU, CUDA and MPS, and every op supports double backward
(needed by R1, path-length and the smoothness-similarity regulariser of ch. 7).

Pieces (each one small and documented where it is defined):

* ``MappingNetwork``: z -> w, pixel-norm of z, an MLP of ``n_mlp`` equalised-lr layers with a 0.01
  learning-rate multiplier, and a running average ``w_avg`` used for the truncation trick.
* ``ModulatedConv2d``: weight demodulation, Eqs. 1-3 of StyleGAN2:
  ``w'_ijk = s_i w_ijk``, ``w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps)``, computed as one grouped
  convolution over the batch ("fused"). ``modulated_conv2d_reference`` is the slow per-sample
  version the tests compare against.
* noise inputs (per-layer learned strength, initialised to 0), the learned constant 4x4 input,
  a bias + leaky ReLU(0.2) * sqrt(2) activation, [1,3,3,1] FIR blur around every resampling.
* ``Generator``: the *skip* architecture (the StyleGAN2 default for G): every resolution adds its
  ToRGB output to the upsampled image of the previous one. Style mixing and truncation included.
* ``Discriminator``: the *residual* architecture (the StyleGAN2 default for D), minibatch standard
  deviation, and per-block feature access (``return_features=True``) used by the per-block heads of
  the thesis' Eq. 7.3.
* ``r1_penalty``: R1 on real images (lazy regularisation is a schedule in the training step:
  every ``r1_every`` steps with the penalty multiplied by ``r1_every``).

Intermediate feature maps by resolution (notebooks 04, 05 and 07 use them)::

    img, feats = G(z, return_features=True)      # feats = {4: (B,C,4,4), 8: ..., 32: (B,C,32,32), ...}
    f32 = G.features(z, 32)                      # only what is needed: stops after the 32x32 block
    ws = G.mapping(z); img, feats = G.synthesis(ws, return_features=True)

The feature at resolution r is the output of the r x r synthesis block (after its second modulated
convolution, noise and activation), i.e. "the intermediate features after the l-th block" [L1980].

Configurations: ``CONFIGS["paper"]`` is StyleGAN2 config-f at 256x256 as used by CDC (Ojha et al.
2021) and hence by the thesis [L2019]: z = w = 512, 8 mapping layers, channels
min(32768 / res, 512). Its parameter count is checked against the published per-layer table of the
official implementation in ``tests/test_stylegan2.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StyleGAN2Config:
    """Sizes of one StyleGAN2. ``channels(res) = min(channel_base // res, channel_max)``."""

    image_size: int = 256
    z_dim: int = 512
    w_dim: int = 512
    n_mlp: int = 8  # StyleGAN2: 8 mapping layers
    channel_base: int = 32768  # config-f: 32 << 10
    channel_max: int = 512
    mapping_lr_mul: float = 0.01  # StyleGAN: 100x lower learning rate in the mapping network
    w_avg_beta: float = 0.995  # running average of w for truncation
    mbstd_group: int = 4  # minibatch-stddev group size
    mbstd_channels: int = 1
    img_channels: int = 3

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.image_size)) + 1)]

    @property
    def num_ws(self) -> int:
        # one w per modulated conv, ToRGB shares the index of the next block's first conv
        return 2 * int(math.log2(self.image_size)) - 2


CONFIGS: dict[str, StyleGAN2Config] = {
    # StyleGAN2 config-f at 256x256, the backbone of CDC and of thesis ch. 7 [L2019]
    "paper": StyleGAN2Config(),
    # small networks for CPU notebooks; same architecture, fewer channels and mapping layers
    "gpu": StyleGAN2Config(image_size=64, z_dim=256, w_dim=256, n_mlp=8, channel_base=8192, channel_max=256),
    "cpu": StyleGAN2Config(image_size=32, z_dim=64, w_dim=64, n_mlp=4, channel_base=512, channel_max=64),
    "smoke": StyleGAN2Config(image_size=16, z_dim=16, w_dim=16, n_mlp=2, channel_base=256, channel_max=16),
}


def make_config(name: str = "cpu", **overrides) -> StyleGAN2Config:
    """A named configuration with overrides (e.g. ``image_size=64``); clear error on bad input."""
    if name not in CONFIGS:
        raise ValueError(f"unknown StyleGAN2 config {name!r}; choose one of {', '.join(CONFIGS)}")
    cfg = replace(CONFIGS[name], **overrides)
    if cfg.image_size < 4 or cfg.image_size & (cfg.image_size - 1):
        raise ValueError(f"image_size must be a power of two >= 4, got {cfg.image_size}")
    return cfg


# --------------------------------------------------------------------------------------------
# low-level ops: FIR blur / resampling (all plain conv2d, hence double-backward safe)
# --------------------------------------------------------------------------------------------
def make_blur_kernel(taps=(1.0, 3.0, 3.0, 1.0)) -> torch.Tensor:
    """Separable binomial FIR filter [1,3,3,1] (outer product), normalised to sum 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[:, None] * k[None, :]
    return k / k.sum()


def blur(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int], gain: float = 1.0) -> torch.Tensor:
    """Depthwise FIR filter with asymmetric zero padding (pad_before, pad_after) on both axes."""
    c = x.shape[1]
    w = (kernel * gain).to(x.dtype).flip([0, 1])[None, None].expand(c, 1, *kernel.shape)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, w, groups=c)


def upsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """2x upsampling: zero insertion then the FIR filter with gain 4 (StyleGAN2's upfirdn, up=2)."""
    c = x.shape[1]
    w = (kernel * 4).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    # conv_transpose with stride 2 = zero insertion + full convolution; padding=1 crops to 2H
    return F.conv_transpose2d(x, w, stride=2, padding=1, groups=c)


def downsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """2x downsampling: FIR filter then keep every second pixel."""
    return blur(x, kernel, (1, 1))[:, :, ::2, ::2]


# --------------------------------------------------------------------------------------------
# equalised learning-rate layers
# --------------------------------------------------------------------------------------------
class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weights ~ N(0, 1) / lr_mul, scaled at run time
    by lr_mul / sqrt(fan_in); optional bias + leaky ReLU(0.2) * sqrt(2) ("fused lrelu")."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return bias_leaky_relu(out, bias)
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate; ``down=True`` blurs then strides by 2."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, bias: bool = True,
                 activation: bool = False, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        self.activation = activation
        self.down = down
        self.kernel_size = kernel_size
        if down:
            self.register_buffer("blur_kernel", make_blur_kernel(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.scale
        if self.down:
            p = 4 - 2 + (self.kernel_size - 1)  # FIR taps - factor + (k - 1)
            x = blur(x, self.blur_kernel, ((p + 1) // 2, p // 2))
            out = F.conv2d(x, w, stride=2)
        else:
            out = F.conv2d(x, w, padding=self.kernel_size // 2)
        if self.activation:
            return bias_leaky_relu(out, self.bias)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


def bias_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, slope: float = 0.2) -> torch.Tensor:
    """StyleGAN's "fused" activation: add bias, leaky ReLU(0.2), multiply by sqrt(2) (gain)."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.dim() - 2)))
    return F.leaky_relu(x, slope) * SQRT2


# --------------------------------------------------------------------------------------------
# modulated convolution (StyleGAN2 Sec. 2.2, Eqs. 1-3)
# --------------------------------------------------------------------------------------------
def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: bool = False, blur_kernel: torch.Tensor | None = None, eps: float = 1e-8,
                     fused: bool = True) -> torch.Tensor:
    """Modulated convolution, x (B, I, H, W), weight (O, I, k, k) already scaled, styles (B, I).

    Eq. 1: w'_bijk = s_bi * w_ijk;  Eq. 3: w''_bijk = w'_bijk / sqrt(sum_{i,k} w'_bijk^2 + eps).
    ``up=True``: transposed conv with stride 2 followed by the [1,3,3,1] blur (gain 4).

    ``fused=True`` builds the per-sample weights and runs one grouped convolution over the batch.
    ``fused=False`` uses the identity conv(x, s * w) * d = conv(s * x, w) * d: scale the input
    activations, convolve with the shared weight, scale the outputs (StyleGAN2 Sec. 2.2 notes the
    equivalence; the official code uses it during training). Both give the same numbers; the
    unfused form is several times faster on CPU, where grouped convolutions are slow.
    """
    b, in_ch, h, wd = x.shape
    out_ch, _, k, _ = weight.shape
    if not fused:
        x = x * styles[:, :, None, None]  # modulation applied to the activations
        if up:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        else:
            x = F.conv2d(x, weight, padding=k // 2)
        if demodulate:  # Eq. 3: d_bj = 1 / sqrt(sum_{i,k} (s_bi w_ijk)^2 + eps)
            d = torch.rsqrt(styles.pow(2) @ weight.pow(2).sum(dim=(2, 3)).t() + eps)  # (B, O)
            x = x * d[:, :, None, None]
        if up:
            p = 4 - 2 - (k - 1)
            x = blur(x, blur_kernel, ((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
        return x
    w = weight[None] * styles[:, None, :, None, None]  # (B, O, I, k, k)   Eq. 1
    if demodulate:
        d = torch.rsqrt(w.pow(2).sum(dim=(2, 3, 4)) + eps)  # (B, O)       Eq. 3
        w = w * d[:, :, None, None, None]
    x = x.reshape(1, b * in_ch, h, wd)
    if up:
        # conv_transpose2d wants (in, out/groups, k, k) per group
        w = w.transpose(1, 2).reshape(b * in_ch, out_ch, k, k)
        out = F.conv_transpose2d(x, w, stride=2, padding=0, groups=b)
        out = out.reshape(b, out_ch, *out.shape[2:])
        p = 4 - 2 - (k - 1)  # FIR taps - factor - (k - 1)
        return blur(out, blur_kernel, ((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
    w = w.reshape(b * out_ch, in_ch, k, k)
    out = F.conv2d(x, w, padding=k // 2, groups=b)
    return out.reshape(b, out_ch, *out.shape[2:])


def modulated_conv2d_reference(x, weight, styles, demodulate=True, up=False, blur_kernel=None, eps=1e-8):
    """The same computation written directly, one sample at a time (no grouping): the test oracle."""
    outs = []
    k = weight.shape[-1]
    for b in range(x.shape[0]):
        w = weight * styles[b].view(1, -1, 1, 1)  # scale input channels
        if demodulate:
            w = w / torch.sqrt((w**2).sum(dim=(1, 2, 3), keepdim=True) + eps)
        xb = x[b : b + 1]
        if up:
            y = F.conv_transpose2d(xb, w.transpose(0, 1), stride=2)
            y = blur(y, blur_kernel, (1, 1), gain=4.0)
        else:
            y = F.conv2d(xb, w, padding=k // 2)
        outs.append(y)
    return torch.cat(outs)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution: an affine map A turns w into per-input-channel scales s (bias
    initialised to 1, so s starts at 1), then :func:`modulated_conv2d`."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, w_dim: int, demodulate: bool = True,
                 up: bool = False):
        super().__init__()
        self.fused = False  # see modulated_conv2d; set True for the grouped-convolution form
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.demodulate = demodulate
        self.up = up
        self.register_buffer("blur_kernel", make_blur_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)
        return modulated_conv2d(x, self.weight * self.scale, styles, self.demodulate, self.up, self.blur_kernel,
                                fused=self.fused)


class StyledLayer(nn.Module):
    """Modulated conv -> + noise * strength -> bias + leaky ReLU (one "Conv" row of StyleGAN2)."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))  # StyleGAN2 initialises it to 0
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.resolution = resolution

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = self.conv(x, w)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        elif noise_mode != "none":
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        return bias_leaky_relu(x, self.bias)


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation, plus bias: features -> RGB contribution."""

    def __init__(self, in_ch: int, w_dim: int, img_channels: int = 3):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, img_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias.view(1, -1, 1, 1)


# --------------------------------------------------------------------------------------------
# generator
# --------------------------------------------------------------------------------------------
class MappingNetwork(nn.Module):
    """z -> w: normalise z to unit second moment, then ``n_mlp`` FC + lrelu layers (lr x 0.01)."""

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.n_mlp
        self.layers = nn.ModuleList(
            EqualLinear(dims[i], dims[i + 1], lr_mul=cfg.mapping_lr_mul, activation=True) for i in range(cfg.n_mlp)
        )
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        self.w_avg_beta = cfg.w_avg_beta

    def forward(self, z: torch.Tensor, update_w_avg: bool = False) -> torch.Tensor:
        x = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)  # pixel norm of z
        for layer in self.layers:
            x = layer(x)
        if update_w_avg:  # training only: track E[w] for the truncation trick
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        return x


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: [up-conv, conv] (or [conv] on the 4x4 constant), ToRGB."""

    def __init__(self, in_ch: int, out_ch: int, resolution: int, cfg: StyleGAN2Config):
        super().__init__()
        self.resolution = resolution
        if resolution == 4:
            self.const = nn.Parameter(torch.randn(1, out_ch, 4, 4))  # learned constant input
            self.convs = nn.ModuleList([StyledLayer(out_ch, out_ch, cfg.w_dim, 4)])
        else:
            self.convs = nn.ModuleList([
                StyledLayer(in_ch, out_ch, cfg.w_dim, resolution, up=True),
                StyledLayer(out_ch, out_ch, cfg.w_dim, resolution),
            ])
        self.torgb = ToRGB(out_ch, cfg.w_dim, cfg.img_channels)
        self.register_buffer("blur_kernel", make_blur_kernel(), persistent=False)

    @property
    def num_conv(self) -> int:
        return len(self.convs)

    def forward(self, x, img, ws, noise_mode="random", with_rgb=True):
        """ws: (B, num_conv + 1, w_dim). Returns (features, image so far)."""
        if self.resolution == 4:
            x = self.const.expand(ws.shape[0], -1, -1, -1)
        for i, layer in enumerate(self.convs):
            x = layer(x, ws[:, i], noise_mode)
        if with_rgb:
            y = self.torgb(x, ws[:, self.num_conv])
            img = y if img is None else upsample2d(img, self.blur_kernel) + y  # skip architecture
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) -> image (B, 3, R, R), optionally with every block's feature map."""

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.cfg = cfg
        blocks, in_ch = [], 0
        for res in cfg.resolutions:
            out_ch = cfg.channels(res)
            blocks.append(SynthesisBlock(in_ch, out_ch, res, cfg))
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", return_features: bool = False,
                stop_at: int | None = None):
        """``stop_at=r`` stops after the r x r block (no image, returns only the features dict)."""
        if ws.dim() != 3 or ws.shape[1] != self.cfg.num_ws:
            raise ValueError(f"ws must have shape (B, {self.cfg.num_ws}, {self.cfg.w_dim}), got {tuple(ws.shape)}")
        if stop_at is not None and stop_at not in self.cfg.resolutions:
            raise ValueError(f"stop_at must be one of {self.cfg.resolutions}, got {stop_at}")
        x = img = None
        feats: dict[int, torch.Tensor] = {}
        w_idx = 0
        for block in self.blocks:
            last = stop_at == block.resolution
            x, img = block(x, img, ws[:, w_idx : w_idx + block.num_conv + 1], noise_mode, with_rgb=not last)
            w_idx += block.num_conv
            feats[block.resolution] = x
            if last:
                return feats
        return (img, feats) if return_features else img

    def features(self, ws: torch.Tensor, resolution: int, noise_mode: str = "const") -> torch.Tensor:
        """The output feature map of the ``resolution`` block, computing nothing beyond it."""
        return self.forward(ws, noise_mode=noise_mode, stop_at=resolution)[resolution]


class Generator(nn.Module):
    """StyleGAN2 generator: ``G(z) -> image in about [-1, 1]``.

    Keyword options of :meth:`forward`: ``truncation_psi`` (1 = off), ``mixing_prob`` (style mixing
    regularisation: with this probability a second z takes over from a random layer on),
    ``noise_mode`` ('random' | 'const' | 'none'), ``return_features`` (also a dict res -> features).
    """

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    @property
    def num_ws(self) -> int:
        return self.cfg.num_ws

    def map(self, z: torch.Tensor, truncation_psi: float = 1.0, mixing_prob: float = 0.0,
            update_w_avg: bool = False) -> torch.Tensor:
        """z (B, z_dim) -> ws (B, num_ws, w_dim), with style mixing and truncation."""
        if z.dim() != 2 or z.shape[1] != self.cfg.z_dim:
            raise ValueError(f"z must have shape (B, {self.cfg.z_dim}), got {tuple(z.shape)}")
        w = self.mapping(z, update_w_avg=update_w_avg)
        ws = w[:, None].repeat(1, self.num_ws, 1)
        if mixing_prob > 0 and torch.rand(()).item() < mixing_prob:  # torch RNG: seeded with everything else
            w2 = self.mapping(torch.randn_like(z))
            cutoff = int(torch.randint(1, self.num_ws, ()))
            ws = torch.cat([ws[:, :cutoff], w2[:, None].expand(-1, self.num_ws - cutoff, -1)], dim=1)
        if truncation_psi != 1.0:
            ws = self.mapping.w_avg.lerp(ws, truncation_psi)  # w_avg + psi (w - w_avg)
        return ws

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, mixing_prob: float = 0.0,
                noise_mode: str = "random", return_features: bool = False, update_w_avg: bool = False):
        ws = self.map(z, truncation_psi, mixing_prob, update_w_avg)
        return self.synthesis(ws, noise_mode=noise_mode, return_features=return_features)

    def features(self, z: torch.Tensor, resolution: int, noise_mode: str = "const",
                 truncation_psi: float = 1.0) -> torch.Tensor:
        """Feature map after the ``resolution`` block for latents z, differentiable w.r.t. z."""
        return self.synthesis.features(self.map(z, truncation_psi), resolution, noise_mode)


# --------------------------------------------------------------------------------------------
# discriminator
# --------------------------------------------------------------------------------------------
class DiscriminatorBlock(nn.Module):
    """Residual D block: conv3x3, conv3x3 with 2x down; skip = 1x1 down without bias; sum / sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3, activation=True)
        self.conv1 = EqualConv2d(in_ch, out_ch, 3, activation=True, down=True)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) / SQRT2


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_channels: int = 1) -> torch.Tensor:
    """Append the average standard deviation over groups of samples as extra feature map(s)."""
    b, c, h, w = x.shape
    g = min(group_size, b)
    if b % g:
        g = 1  # fall back to per-sample (std 0) rather than fail on odd batch sizes
    y = x.reshape(g, -1, num_channels, c // num_channels, h, w)
    y = y - y.mean(dim=0)
    y = (y.pow(2).mean(dim=0) + 1e-8).sqrt()  # eps keeps the gradient finite at zero variance
    y = y.mean(dim=(2, 3, 4))  # (B/g, F)
    y = y.reshape(-1, num_channels, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator.

    ``D(x)`` -> logits (B,). ``D(x, return_features=True)`` -> (logits, [f_1, ..., f_N]) where
    f_i is the output of the i-th block (highest resolution first) and f_N the epilogue's input
    (4x4). These are the D^i of thesis Eq. 7.3; ``nbsyn.models.ssr.MultiHeadD`` attaches heads s^i.
    """

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.cfg = cfg
        res = cfg.image_size
        self.fromrgb = EqualConv2d(cfg.img_channels, cfg.channels(res), 1, activation=True)
        blocks = []
        while res > 4:
            blocks.append(DiscriminatorBlock(cfg.channels(res), cfg.channels(res // 2)))
            res //= 2
        self.blocks = nn.ModuleList(blocks)
        c4 = cfg.channels(4)
        self.epilogue_conv = EqualConv2d(c4 + cfg.mbstd_channels, c4, 3, activation=True)
        self.epilogue_fc = EqualLinear(c4 * 16, c4, activation=True)
        self.out = EqualLinear(c4, 1)

    @property
    def block_channels(self) -> list[int]:
        """Channels of each block's output (what a per-block head receives)."""
        return [b.conv1.weight.shape[0] for b in self.blocks]

    def epilogue(self, x: torch.Tensor) -> torch.Tensor:
        x = minibatch_stddev(x, self.cfg.mbstd_group, self.cfg.mbstd_channels)
        x = self.epilogue_conv(x)
        return self.out(self.epilogue_fc(x.flatten(1))).squeeze(1)

    def forward(self, img: torch.Tensor, return_features: bool = False):
        if img.dim() != 4 or img.shape[1] != self.cfg.img_channels or img.shape[-1] != self.cfg.image_size:
            raise ValueError(
                f"D expects images (B, {self.cfg.img_channels}, {self.cfg.image_size}, {self.cfg.image_size}),"
                f" got {tuple(img.shape)}"
            )
        x = self.fromrgb(img)
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        logits = self.epilogue(x)
        return (logits, feats) if return_features else logits


# --------------------------------------------------------------------------------------------
# losses and regularisers used to train it
# --------------------------------------------------------------------------------------------
def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """NS-GAN discriminator loss, thesis Eq. 3.5: -log D(x) - log(1 - D(G(z))) with D = sigmoid."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -log D(G(z))."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(d_out_fn, real: torch.Tensor) -> torch.Tensor:
    """R1 = E ||grad_x D(x)||^2 on real images (multiply by gamma / 2 outside).

    ``d_out_fn(x) -> logits`` (any shape; summed). Uses ``create_graph=True`` so the penalty
    trains D (double backward through D).
    """
    real = real.detach().requires_grad_(True)
    out = d_out_fn(real)
    (grad,) = torch.autograd.grad(out.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build(cfg: StyleGAN2Config | str = "cpu", **overrides) -> tuple[Generator, Discriminator]:
    """Generator and discriminator for a config (name or :class:`StyleGAN2Config`)."""
    if isinstance(cfg, str):
        cfg = make_config(cfg, **overrides)
    elif overrides:
        cfg = replace(cfg, **overrides)
    return Generator(cfg), Discriminator(cfg)


# --------------------------------------------------------------------------------------------
# training: optimisers with lazy regularisation and one GAN step
# --------------------------------------------------------------------------------------------
def make_optimizers(G: nn.Module, D: nn.Module, lr: float = 0.002, betas=(0.0, 0.99), r1_every: int = 16):
    """Adam for G and D as in StyleGAN2 (lr 0.002, betas (0, 0.99)). With lazy R1 every ``r1_every``
    steps, D's lr and betas are rescaled by c = r / (r + 1) (StyleGAN2 App. B, "lazy regularization")."""
    c = r1_every / (r1_every + 1) if r1_every > 0 else 1.0
    d_params = [p for p in D.parameters() if p.requires_grad]
    opt_g = torch.optim.Adam([p for p in G.parameters() if p.requires_grad], lr=lr, betas=betas)
    opt_d = torch.optim.Adam(d_params, lr=lr * c, betas=(betas[0] ** c, betas[1] ** c))
    return opt_g, opt_d


def make_train_step(G: Generator, D: Discriminator, opt_g, opt_d, real_images: torch.Tensor, *,
                    batch_size: int, r1_gamma: float, r1_every: int = 16, mixing_prob: float = 0.9,
                    ema=None, augment=None, generator: torch.Generator | None = None):
    """One StyleGAN2 training step for ``nbsyn.train.fit``: a D step (logistic loss, lazy R1) and a G
    step (non-saturating loss, style mixing), then the EMA update.

    ``augment(x) -> x`` is applied to real and fake images alike before D (differentiable
    augmentation); R1 is taken on the augmented real images. ``real_images`` (N, 3, R, R) in [-1, 1].
    """
    device = next(G.parameters()).device
    n = real_images.shape[0]
    aug = augment or (lambda x: x)
    g_params = [p for p in G.parameters() if p.requires_grad]  # frozen layers stay frozen
    d_params = [p for p in D.parameters() if p.requires_grad]

    def set_grad(params, flag):
        for p in params:
            p.requires_grad_(flag)

    def step(i: int) -> dict[str, float]:
        idx = torch.randint(n, (batch_size,), generator=generator)
        real = real_images[idx].to(device)
        # --- D: -log D(x) - log(1 - D(G(z))) ---
        set_grad(g_params, False)
        set_grad(d_params, True)
        with torch.no_grad():
            fake = G(torch.randn(batch_size, G.cfg.z_dim, device=device), mixing_prob=mixing_prob)
        loss_d = d_logistic_loss(D(aug(real)), D(aug(fake)))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        out = {"loss_d": loss_d.item()}
        # --- lazy R1: gamma/2 * E||grad D(x)||^2, every r1_every steps, scaled by r1_every ---
        if r1_gamma > 0 and r1_every > 0 and i % r1_every == 0:
            r1 = r1_penalty(D, aug(real).detach())
            opt_d.zero_grad(set_to_none=True)
            (r1_gamma / 2 * r1 * r1_every).backward()
            opt_d.step()
            out["r1"] = r1.item()
        # --- G: -log D(G(z)) ---
        set_grad(g_params, True)
        set_grad(d_params, False)
        fake = G(torch.randn(batch_size, G.cfg.z_dim, device=device), mixing_prob=mixing_prob, update_w_avg=True)
        loss_g = g_nonsaturating_loss(D(aug(fake)))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        set_grad(d_params, True)
        if ema is not None:
            ema.update(G)
        out["loss_g"] = loss_g.item()
        return out

    return step


@torch.no_grad()
def sample(G: Generator, n: int, seed: int = 0, truncation_psi: float = 1.0, batch_size: int = 64,
           noise_mode: str = "const") -> torch.Tensor:
    """``n`` images from fixed latents (seeded), on the CPU, clamped to [-1, 1]."""
    device = next(G.parameters()).device
    z = torch.randn(n, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed))
    out = [G(z[i : i + batch_size].to(device), truncation_psi=truncation_psi, noise_mode=noise_mode).cpu()
           for i in range(0, n, batch_size)]
    return torch.cat(out).clamp(-1, 1)
