"""SIV-GAN / One-Shot GAN: an unconditional GAN learned from one image or one video (thesis ch. 5).

Line references [Lxxxx] point into ``papers/sushko2024_thesis_oasis_sivgan_osmis_ssr.txt``; [CODE]
marks details the text leaves open that we take from the authors' description of their code
(``specs/limited_data.md`` A.2-A.6), never from the code itself.

The pieces, in the order the notebook introduces them:

* :class:`Generator`: z in R^64 -> a small spatial map (3x5 by default, "a few pixels per side")
  -> residual blocks "similar to BigGAN, without BatchNorm or self-attention", each doubling the
  resolution, with an RGB output after every block (MSG-GAN) [L1456-1458]. It also returns tanh of
  every block's features, the input of the diversity regularisation [L1458].
* :class:`ContentLayoutDiscriminator`: a from-RGB conv and a shared low-level trunk (``num_low`` blocks,
  MSG image inputs) whose features F(x) feed a **content branch** (global average pooling, then 1x1
  blocks: blind to position) and a **layout branch** (squeezed to one channel: blind to appearance)
  [L1409-1438]. Every block of every part has its own real/fake head (``nbsyn.nn.heads``). Where the
  text is silent, widths and layers follow the description of the authors' code; where the text says
  otherwise (layout squeeze, MSG input conv) the text is the default and :data:`OFFICIAL_D` the option.
* :func:`feature_augmentation`: mixing / dropping real features in both branches [L1426, L1460].
* :func:`adversarial_loss` (Eq. 5.1-5.2) and :func:`diversity_regularisation` (Eq. 5.3), each with the
  paper's normalisation and, as an option, the official code's (about 12x stronger DR, see
  :func:`official_dr_strength`).
* :class:`SIVGAN`: puts them together with DA (``nbsyn.nn.diffaug``), Adam and an EMA generator.

Extending (OSMIS, notebook 03, builds on these classes; their constructor signatures are stable):

* ``Generator(..., out_channels=3)`` sets the channels of every MSG output head. The generator returns
  a :class:`GeneratorOutput` whose ``last_features`` are the final block's features before the RGB
  head: a subclass adds a mask head on them (``self.mask_head = conv(gen.channels[-1], n)``).
* ``ContentLayoutDiscriminator.low_level(images)`` runs only the shared trunk and returns
  ``(F, logits)``; ``content_branch(F)`` and ``layout_branch(F)`` run the branches separately, so a
  subclass can replace the content branch (e.g. masked content attention) and reuse the rest.
  ``in_channels`` sets the input channels of the trunk (e.g. RGB + mask channels).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from nbsyn.data.single import fit_frames  # noqa: F401  (re-exported for the notebook)
from nbsyn.nn.diffaug import DEFAULT_POLICY, diff_augment
from nbsyn.nn.heads import MultiHeadD, per_block_bce, sn
from nbsyn.train import GeneratorState

# [CODE] channel multipliers (x base_channels); G uses the last num_blocks+1 entries, D the first ones.
G_MULTIPLIERS = (8, 8, 8, 8, 8, 8, 8, 4, 2, 1)
D_MULTIPLIERS = (1, 2, 4, 8, 8, 8, 8, 8, 8)
BRANCHES = ("content_layout", "content", "layout", "none")
# The two places where the thesis and the authors' code differ in D; the defaults follow the thesis, these
# options give the code's layers (with them the parameter counts equal the official ones, tests/test_sivgan.py).
OFFICIAL_D = {"layout_squeeze": "block", "msg_kernel": 3}
NORMALISATIONS = ("paper", "official")

# ---------------------------------------------------------------------------------------------
# Presets. Paper values with their line numbers; smaller presets change sizes and steps only,
# except lambda_dr at cpu/smoke (see the comment there and the notebook).
# ---------------------------------------------------------------------------------------------

_PAPER = dict(
    seed=22,  # [CODE] seed
    iterations=100_000,  # single image; 300k for a single video [L1468]
    image_size=192,  # image height; the thesis gives none [A.12]; [CODE] sizes G so 3x5 -> 192x320
    batch_size=5,  # [L1462]
    dataset="places_single",  # 50 Places images [L1470]; prepare with data_scripts/prepare_places_single.py
    time_budget_s=None,
    noise_shape=(3, 5),  # "broadcasted to the spatial dimensions of 3x5" [L1458]
    z_dim=64,  # [L1458]
    g_base_channels=32,  # [CODE] 32 x G_MULTIPLIERS
    d_base_channels=32,  # [CODE] 32 x D_MULTIPLIERS
    d_blocks=7,  # total D depth 7 [L1583]
    num_low=3,  # N_low-level = 3, N_content = N_layout = 4 [L1460]
    branches="content_layout",
    layout_squeeze="conv1x1",  # "(1x1) convolution with only one output channel" [L1417]; [CODE] uses a block
    msg_kernel=1,  # MSG inputs by phi_lin_cat [L1460]: MSG-GAN's 1x1 conv; [CODE] uses 3x3 (OFFICIAL_D)
    lr_g=2e-4,  # [L1462]
    lr_d=2e-4,  # [L1462]
    betas=(0.5, 0.999),  # [L1462]
    lambda_dr=0.15,  # [L1462, L1581]
    normalisation="paper",  # Eq. 5.1-5.3 as written; "official" = the authors' code (about 12x stronger DR)
    p_da=0.7,  # DA probability [L1460] ([CODE] default 0.3)
    da_policy=DEFAULT_POLICY,  # translation, cropping, rotation, flipping [L1460]
    p_fa=0.4,  # FA probability [L1460]
    ema_decay=0.9999,  # [CODE] (OSMIS adds EMA [L1749]; SIV-GAN text states none)
    n_eval_samples=100,  # [CODE] 100 samples for the metrics
    video_frames=100,  # 60-100 frames per video [L1470]
    video_iterations=300_000,  # single video [L1468]
    video_time_budget_s=None,
    threads=None,  # CPU threads (None: nbsyn.runtime's default)
)

PRESETS = {
    "paper": _PAPER,
    "gpu": {**_PAPER, "iterations": 20_000, "image_size": 96, "dataset": "scene", "time_budget_s": None,
            "lambda_dr": 0.15, "n_eval_samples": 100, "video_iterations": 40_000, "video_time_budget_s": None},
    # cpu: about the A.13 pilot's scale: 32x48 from a 4x6 map, 4 G blocks (widths 128-16), D with 2+3+3
    # blocks (widths 32-128). Narrower nets (G widths 64-8) drew strokes instead of balloons in 1.5k steps.
    # lambda_dr: with ~1.5k steps instead of 100k the paper's 0.15 is too weak to keep the samples apart
    # (specs A.13); 1.75 in the paper's normalisation equals the strength the authors' code applies at its
    # lambda = 0.15 (official_dr_strength). da_policy: at 32x48, crops and rotations mostly blur the image;
    # the pilot used flips and translations, as we do here (gpu / paper: all four ops).
    # iterations: a fixed step count, equal for every arm of the ablation (issue 10); no wall-clock budget
    # (time_budget_s = None: a user may set one as a guard, and a run it cuts is recorded as incomplete).
    "cpu": {**_PAPER, "seed": 0, "iterations": 800, "image_size": 32, "dataset": "scene", "time_budget_s": None,
            "noise_shape": (4, 6), "g_base_channels": 16, "d_base_channels": 32, "d_blocks": 5, "num_low": 2,
            "lambda_dr": 1.75, "da_policy": "translation,flip", "ema_decay": 0.99, "n_eval_samples": 50,
            "video_frames": 60, "video_iterations": 400, "video_time_budget_s": None,
            # one thread: these nets are too small to gain from two, and on a shared 2-core machine two
            # threads ran 10-20x slower (5 s vs 0.3 s per iteration, measured)
            "threads": 1},
    "smoke": {**_PAPER, "seed": 0, "iterations": 4, "image_size": 16, "dataset": "scene", "time_budget_s": None,
              "noise_shape": (2, 3), "g_base_channels": 4, "d_base_channels": 4, "d_blocks": 4, "num_low": 2,
              "lambda_dr": 1.75, "ema_decay": 0.9, "n_eval_samples": 8, "video_frames": 12,
              "video_iterations": 2, "video_time_budget_s": None, "threads": 1},
}


def generator_blocks_for(image_size: int, noise_height: int) -> int:
    """Number of G blocks so that ``noise_height * 2**(blocks-1) == image_size`` (clear error otherwise)."""
    ratio = image_size / noise_height
    blocks = round(math.log2(ratio)) + 1 if ratio >= 1 else 0
    if blocks < 1 or noise_height * 2 ** (blocks - 1) != image_size:
        valid = [noise_height * 2 ** k for k in range(0, 8)]
        raise ValueError(f"image_size {image_size} is not the noise height {noise_height} times a power of two; "
                         f"valid sizes: {valid}")
    return blocks


def image_shape(cfg) -> tuple[int, int]:
    """(H, W) of the images a configuration trains on: the noise map scaled by 2**(blocks-1)."""
    nh, nw = cfg["noise_shape"]
    blocks = generator_blocks_for(cfg["image_size"], nh)
    return nh * 2 ** (blocks - 1), nw * 2 ** (blocks - 1)


# ---------------------------------------------------------------------------------------------
# Generator [L1456-1458]
# ---------------------------------------------------------------------------------------------


def _init_weights(module: nn.Module) -> None:
    """[CODE] N(0, 0.02) initialisation of every conv weight, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class GBlock(nn.Module):
    """Residual G block: LReLU -> (x2 nearest) -> conv3x3 -> LReLU -> conv3x3, plus a 1x1 shortcut.

    "ResNet blocks similar to BigGAN ... we do not use BatchNorm or self-attention" [L1456-1458];
    the internals (activation, upsampling, the middle width min(in, out)) are [CODE].
    """

    def __init__(self, in_channels: int, out_channels: int, upsample: bool, spectral: bool = True):
        super().__init__()
        self.upsample = upsample
        mid = min(in_channels, out_channels)
        self.conv1 = sn(nn.Conv2d(in_channels, mid, 3, padding=1), spectral)
        self.conv2 = sn(nn.Conv2d(mid, out_channels, 3, padding=1), spectral)
        self.shortcut = sn(nn.Conv2d(in_channels, out_channels, 1, bias=False), spectral)

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.upsample else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self._up(F.leaky_relu(x, 0.2)))
        h = self.conv2(F.leaky_relu(h, 0.2))
        return h + self.shortcut(self._up(x))


@dataclass
class GeneratorOutput:
    """What G returns: ``images`` at every block (coarse -> fine; MSG outputs), ``features`` = tanh of
    every block's output (the G^l of Eq. 5.3), ``last_features`` = the final block's raw features."""

    images: list[torch.Tensor]
    features: list[torch.Tensor]
    last_features: torch.Tensor

    @property
    def image(self) -> torch.Tensor:
        return self.images[-1]


class Generator(nn.Module):
    """The SIV-GAN generator.

    ``z`` (B, z_dim) is mapped to a ``noise_shape`` map, then ``num_blocks`` residual blocks (the first
    without upsampling) reach ``noise_shape * 2**(num_blocks-1)``. ``z_to_map="project"`` ([CODE]) uses a
    learned transposed convolution with kernel = noise_shape; ``"broadcast"`` repeats z over the map
    (the literal reading of [L1458]) followed by a 1x1 conv. This first layer is not spectrally
    normalised, as in [CODE] (``to_map_spectral=True`` normalises it too). An ``out_channels`` head
    (SN conv3x3 + tanh) follows every block; it reads the block's output directly (no activation in
    between, [CODE]).
    """

    def __init__(self, z_dim: int = 64, noise_shape: Sequence[int] = (3, 5), num_blocks: int = 7,
                 base_channels: int = 32, channels: Sequence[int] | None = None, out_channels: int = 3,
                 spectral: bool = True, z_to_map: str = "project", to_map_spectral: bool = False):
        super().__init__()
        if channels is None:
            if num_blocks + 1 > len(G_MULTIPLIERS):
                raise ValueError(f"at most {len(G_MULTIPLIERS) - 1} blocks with the default widths")
            channels = [m * base_channels for m in G_MULTIPLIERS[-(num_blocks + 1):]]
        if len(channels) != num_blocks + 1:
            raise ValueError(f"channels needs num_blocks + 1 = {num_blocks + 1} entries, got {len(channels)}")
        if z_to_map not in ("project", "broadcast"):
            raise ValueError(f"z_to_map must be 'project' or 'broadcast', got {z_to_map!r}")
        self.z_dim, self.noise_shape, self.channels = z_dim, tuple(noise_shape), list(channels)
        self.num_blocks, self.z_to_map = num_blocks, z_to_map
        map_sn = spectral and to_map_spectral
        if z_to_map == "project":
            self.to_map = sn(nn.ConvTranspose2d(z_dim, channels[0], kernel_size=self.noise_shape), map_sn)
        else:
            self.to_map = sn(nn.Conv2d(z_dim, channels[0], kernel_size=1), map_sn)
        self.blocks = nn.ModuleList(
            GBlock(channels[i], channels[i + 1], upsample=i > 0, spectral=spectral) for i in range(num_blocks)
        )
        self.to_rgb = nn.ModuleList(
            sn(nn.Conv2d(channels[i + 1], out_channels, 3, padding=1), spectral) for i in range(num_blocks)
        )
        _init_weights(self)

    @property
    def output_shape(self) -> tuple[int, int]:
        k = 2 ** (self.num_blocks - 1)
        return self.noise_shape[0] * k, self.noise_shape[1] * k

    def sample_z(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """z ~ N(0, I) of length z_dim [L1458]."""
        z = torch.randn(n, self.z_dim, generator=generator)
        return z.to(device) if device is not None else z.to(self.to_map.bias.device)

    def forward(self, z: torch.Tensor) -> GeneratorOutput:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (B, {self.z_dim}), got {tuple(z.shape)}")
        z = z[:, :, None, None]
        if self.z_to_map == "broadcast":
            z = z.expand(-1, -1, *self.noise_shape)
        h = self.to_map(z)
        images, features = [], []
        for block, to_rgb in zip(self.blocks, self.to_rgb):
            h = block(h)
            features.append(torch.tanh(h))  # G^l(z) of Eq. 5.3: tanh of the block's final conv [L1458]
            images.append(torch.tanh(to_rgb(h)))
        return GeneratorOutput(images=images, features=features, last_features=h)


# ---------------------------------------------------------------------------------------------
# Discriminator [L1409-1438, L1460]
# ---------------------------------------------------------------------------------------------


class DBlock(nn.Module):
    """Residual D block: [LReLU] -> conv -> LReLU -> conv -> (AvgPool2), plus a shortcut (+ AvgPool2).

    [CODE] details: the first conv narrows to min(in, out) channels and the second widens to ``out``;
    the shortcut is the identity when nothing changes (same width, no pooling), else a 1x1 conv without
    bias. ``kernel=1`` gives the content branch's blocks (no spatial extent); ``first=True`` skips the
    first activation (the block right after the from-RGB conv). Average pooling uses ceil mode, so a
    1-pixel map stays 1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, downsample: bool = True,
                 first: bool = False, spectral: bool = True):
        super().__init__()
        pad = kernel // 2
        mid = min(in_channels, out_channels)
        self.first, self.downsample = first, downsample
        self.conv1 = sn(nn.Conv2d(in_channels, mid, kernel, padding=pad), spectral)
        self.conv2 = sn(nn.Conv2d(mid, out_channels, kernel, padding=pad), spectral)
        if in_channels == out_channels and not downsample:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = sn(nn.Conv2d(in_channels, out_channels, 1, bias=False), spectral)

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2, ceil_mode=True) if self.downsample else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.leaky_relu(x, 0.2)
        h = self.conv2(F.leaky_relu(self.conv1(h), 0.2))
        return self._down(h) + self._down(self.shortcut(x))


@dataclass
class DOutput:
    """Per-block logits of each part (lists, one map per block) and the shared features F(x)."""

    low: list[torch.Tensor]
    content: list[torch.Tensor] = field(default_factory=list)
    layout: list[torch.Tensor] = field(default_factory=list)
    plain: list[torch.Tensor] = field(default_factory=list)
    features: torch.Tensor | None = None

    def parts(self) -> dict[str, list[torch.Tensor]]:
        return {k: v for k, v in (("low", self.low), ("content", self.content), ("layout", self.layout),
                                  ("plain", self.plain)) if v}


def image_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Real images for the MSG inputs: ``x`` and its bilinear (antialiased) halvings, fine -> coarse."""
    out = [x]
    for _ in range(levels - 1):
        h, w = out[-1].shape[-2:]
        out.append(F.interpolate(out[-1], size=(max(1, h // 2), max(1, w // 2)), mode="bilinear",
                                 antialias=True, align_corners=False))
    return out


class ContentLayoutDiscriminator(nn.Module):
    """The two-branch discriminator of SIV-GAN (Fig. 5.3).

    ``channels`` has ``num_blocks + 1`` entries (default ``base_channels`` x D_MULTIPLIERS): c[0] is the
    width of the from-RGB conv, c[i + 1] the output width of block i ([CODE]).

    * from-RGB: an SN 3x3 conv in_channels -> c[0] on the full-resolution image ([CODE]);
    * low-level trunk: ``num_low`` residual blocks c[i] -> c[i+1]; block i > 0 also gets ``fromRGB`` of the
      image at its scale concatenated, c[i] // 8 channels [CODE], by a ``msg_kernel`` conv: 1 = MSG-GAN's
      phi_lin_cat that the text names [L1460], 3 = [CODE];
    * ``branches="content_layout"``: content branch (global average pooling of F(x) [L1415], then
      ``num_blocks - num_low`` blocks of 1x1 convs) and layout branch (F(x) squeezed to one channel
      [L1417] by a 1x1 conv, ``layout_squeeze="conv1x1"``, or by a first 3x3 residual block C->1 as in
      [CODE], ``"block"``; then 1-channel 3x3 blocks);
    * ``branches="none"``: the ablation "No branches": the same depth as one ordinary branch of 3x3 blocks;
      ``"content"`` / ``"layout"``: only one branch ("No Layout br." / "No Content br.").
    Every block has a real/fake head. ``**OFFICIAL_D`` gives the authors' layers everywhere.
    """

    def __init__(self, in_channels: int = 3, num_blocks: int = 7, num_low: int = 3, base_channels: int = 32,
                 channels: Sequence[int] | None = None, branches: str = "content_layout",
                 layout_squeeze: str = "conv1x1", msg_kernel: int = 1, spectral: bool = True):
        super().__init__()
        if branches not in BRANCHES:
            raise ValueError(f"branches must be one of {BRANCHES}, got {branches!r}")
        if layout_squeeze not in ("conv1x1", "block"):
            raise ValueError(f"layout_squeeze must be 'conv1x1' or 'block', got {layout_squeeze!r}")
        if msg_kernel not in (1, 3):
            raise ValueError(f"msg_kernel must be 1 or 3, got {msg_kernel!r}")
        if not 1 <= num_low < num_blocks:
            raise ValueError(f"need 1 <= num_low < num_blocks, got num_low={num_low}, num_blocks={num_blocks}")
        if channels is None:
            if num_blocks + 1 > len(D_MULTIPLIERS):
                raise ValueError(f"at most {len(D_MULTIPLIERS) - 1} blocks with the default widths")
            channels = [m * base_channels for m in D_MULTIPLIERS[:num_blocks + 1]]
        if len(channels) != num_blocks + 1:
            raise ValueError(f"channels needs num_blocks + 1 = {num_blocks + 1} entries, got {len(channels)}")
        self.num_blocks, self.num_low, self.branches = num_blocks, num_low, branches
        self.channels, self.layout_squeeze, self.msg_kernel = list(channels), layout_squeeze, msg_kernel
        c = self.channels
        # --- from-RGB and the shared low-level trunk with MSG inputs
        self.stem = sn(nn.Conv2d(in_channels, c[0], 3, padding=1), spectral)
        self.from_rgb = nn.ModuleList(
            sn(nn.Conv2d(in_channels, max(1, c[i] // 8), msg_kernel, padding=msg_kernel // 2), spectral)
            for i in range(1, num_low)
        )
        low_blocks = [DBlock(c[0], c[1], first=True, spectral=spectral)]
        low_blocks += [DBlock(c[i] + max(1, c[i] // 8), c[i + 1], spectral=spectral) for i in range(1, num_low)]
        self.low = MultiHeadD(low_blocks, c[1:num_low + 1], spectral)
        n_branch = num_blocks - num_low
        trunk = c[num_low]
        branch_ch = c[num_low:]
        # --- content branch: pooled vector, 1x1 blocks
        self.content = None
        if branches in ("content_layout", "content"):
            blocks = [DBlock(branch_ch[i], branch_ch[i + 1], kernel=1, downsample=False, spectral=spectral)
                      for i in range(n_branch)]
            self.content = MultiHeadD(blocks, branch_ch[1:], spectral)
        # --- layout branch: one channel wide
        self.layout = None
        self.layout_squeezer = None
        if branches in ("content_layout", "layout"):
            if layout_squeeze == "conv1x1":
                self.layout_squeezer = sn(nn.Conv2d(trunk, 1, 1), spectral)
                blocks = [DBlock(1, 1, spectral=spectral) for _ in range(n_branch)]
            else:
                blocks = [DBlock(trunk, 1, spectral=spectral)] + [DBlock(1, 1, spectral=spectral)
                                                                  for _ in range(n_branch - 1)]
            self.layout = MultiHeadD(blocks, [1] * n_branch, spectral)
        # --- ablation: an ordinary branch of the same depth
        self.plain = None
        if branches == "none":
            blocks = [DBlock(branch_ch[i], branch_ch[i + 1], spectral=spectral) for i in range(n_branch)]
            self.plain = MultiHeadD(blocks, branch_ch[1:], spectral)
        _init_weights(self)

    # -- parts, usable on their own (tests, OSMIS) --------------------------------------------------
    def low_level(self, images: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the trunk. ``images``: a batch (a real pyramid is built) or a list fine -> coarse with at
        least ``num_low`` levels (the MSG outputs of G). Returns F(x) and the per-block logits."""
        levels = image_pyramid(images, self.num_low) if torch.is_tensor(images) else list(images)
        if len(levels) < self.num_low:
            raise ValueError(f"the low-level part needs {self.num_low} image scales, got {len(levels)}")

        def inject(i: int, h: torch.Tensor) -> torch.Tensor:
            if i == 0:
                return self.stem(levels[0])
            img = levels[i]
            if img.shape[-2:] != h.shape[-2:]:
                raise ValueError(f"image scale {i} has size {tuple(img.shape[-2:])}, features {tuple(h.shape[-2:])}")
            return torch.cat([h, self.from_rgb[i - 1](img)], dim=1)

        logits, feats = self.low(levels[0], before_block=inject)
        return feats[-1], logits

    @staticmethod
    def pool_content(features: torch.Tensor) -> torch.Tensor:
        """F_content(x): global average pooling over H x W -> (B, C, 1, 1) [L1415]."""
        return features.mean(dim=(2, 3), keepdim=True)

    def content_branch(self, features: torch.Tensor, augment: bool = False, p: float = 0.4,
                       generator: torch.Generator | None = None) -> list[torch.Tensor]:
        pooled = self.pool_content(features)
        if augment:
            pooled = content_feature_augmentation(pooled, p, generator)
        logits, _ = self.content(pooled)
        return logits

    def squeeze_layout(self, features: torch.Tensor) -> torch.Tensor:
        """The layout branch's input: F_layout(x) (B, 1, H, W) with ``conv1x1``; F(x) itself with ``block``."""
        return self.layout_squeezer(features) if self.layout_squeezer is not None else features

    def layout_branch(self, features: torch.Tensor, augment: bool = False, p: float = 0.4,
                      generator: torch.Generator | None = None) -> list[torch.Tensor]:
        squeezed = self.squeeze_layout(features)
        if augment:  # paper: CutMix on F_layout [L1426]; with "block" squeezing on F(x), as [CODE]
            squeezed = layout_feature_augmentation(squeezed, p, generator)
        logits, _ = self.layout(squeezed)
        return logits

    def forward(self, images, augment: bool = False, p_fa: float = 0.4,
                generator: torch.Generator | None = None) -> DOutput:
        """``augment=True`` applies feature augmentation (use it for real images only [L1426])."""
        features, low = self.low_level(images)
        out = DOutput(low=low, features=features)
        if self.content is not None:
            out.content = self.content_branch(features, augment, p_fa, generator)
        if self.layout is not None:
            out.layout = self.layout_branch(features, augment, p_fa, generator)
        if self.plain is not None:
            f = layout_feature_augmentation(features, p_fa, generator) if augment else features
            out.plain = self.plain(f)[0]
        return out


# ---------------------------------------------------------------------------------------------
# Feature augmentation [L1426, L1460]; fractions from [CODE]
# ---------------------------------------------------------------------------------------------


def _partner(x: torch.Tensor) -> torch.Tensor:
    """The mixing partner of sample i is sample i+1 (mod B): another augmentation or another frame."""
    return x.roll(1, dims=0)


def content_feature_augmentation(pooled: torch.Tensor, p: float = 0.4, generator: torch.Generator | None = None,
                                 fraction: tuple[float, float] = (0.1, 0.3)) -> torch.Tensor:
    """Content FA on (B, C, 1, 1): with prob. p copy 10-30 % of the channels from the partner sample
    (mix), then, with prob. p, zero 10-30 % of the channels (drop) [L1426]."""
    b, c = pooled.shape[:2]
    out = pooled
    for kind in ("mix", "drop"):
        active = torch.rand(b, generator=generator) < p
        frac = fraction[0] + (fraction[1] - fraction[0]) * torch.rand(b, generator=generator)
        chosen = torch.rand(b, c, generator=generator) < frac[:, None]  # about frac * C channels each
        chosen = (chosen & active[:, None]).to(pooled.device)[:, :, None, None]
        replacement = _partner(out) if kind == "mix" else torch.zeros_like(out)
        out = torch.where(chosen, replacement, out)
    return out


def layout_feature_augmentation(features: torch.Tensor, p: float = 0.4, generator: torch.Generator | None = None,
                                side: tuple[float, float] = (0.1, 0.5)) -> torch.Tensor:
    """Layout FA: with prob. p paste a rectangle (sides 10-50 % of H and W) of the partner's features at
    the same location (CutMix on real features) [L1426]."""
    b, _, h, w = features.shape
    active = torch.rand(b, generator=generator) < p
    sizes = side[0] + (side[1] - side[0]) * torch.rand(b, 2, generator=generator)
    corners = torch.rand(b, 2, generator=generator)
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    rh = (sizes[:, 0] * h).ceil().clamp(1, h)
    rw = (sizes[:, 1] * w).ceil().clamp(1, w)
    top = (corners[:, 0] * (h - rh + 1)).floor()
    left = (corners[:, 1] * (w - rw + 1)).floor()
    in_rows = (rows >= top[:, None]) & (rows < (top + rh)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + rw)[:, None])
    box = (in_rows[:, :, None] & in_cols[:, None, :]) & active[:, None, None]
    return torch.where(box[:, None].to(features.device), _partner(features), features)


# ---------------------------------------------------------------------------------------------
# Losses: Eq. 5.1-5.4
# ---------------------------------------------------------------------------------------------

PAPER_WEIGHTS = {"low": 2.0, "content": 1.0, "layout": 1.0, "plain": 2.0}  # Eq. 5.2 [L1436]


def adversarial_loss(out: DOutput, real: bool, normalisation: str = "paper",
                     weights: dict[str, float] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """L_adv for one side (real or fake targets).

    paper (Eq. 5.1-5.2): sum over parts of w_part * (mean over that part's blocks of the BCE), with
    w = 2 (low-level), 1 (content), 1 (layout). The "No branches" ablation's single branch gets 2, the
    weight of the two branches it replaces.
    official [CODE]: (sum_low + 0.5 sum_content + 0.5 sum_layout) / N_D with N_D all D blocks.
    Returns the loss and the per-part means (for logging).
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    parts = out.parts()
    means = {name: per_block_bce(logits, real) for name, logits in parts.items()}
    if normalisation == "paper":
        w = {**PAPER_WEIGHTS, **(weights or {})}
        total = sum(w[name] * loss for name, loss in means.items())
    else:
        n_d = len(parts["low"]) + max([len(v) for k, v in parts.items() if k != "low"], default=0)
        w = {"low": 1.0, "content": 0.5, "layout": 0.5, "plain": 1.0, **(weights or {})}
        total = sum(w[name] * per_block_bce(parts[name], real, "sum") for name in parts) / n_d
    return total, {name: float(v.detach()) for name, v in means.items()}


def pairwise_feature_distance(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """(L, P) matrix: mean |G^l(z_i) - G^l(z_j)| for every layer l and every pair i < j of the batch."""
    b = features[0].shape[0]
    if b < 2:
        raise ValueError("the diversity term needs at least two samples in the batch")
    pairs = list(itertools.combinations(range(b), 2))
    i, j = (torch.tensor(idx) for idx in zip(*pairs))
    rows = []
    for f in features:
        flat = f.flatten(1)
        rows.append((flat[i] - flat[j]).abs().mean(dim=1))
    return torch.stack(rows)


def diversity_regularisation(features: Sequence[torch.Tensor], normalisation: str = "paper") -> torch.Tensor:
    """L_DR (Eq. 5.3), which G maximises.

    paper: E_{z1,z2}[ 1/L sum_l ||G^l(z1) - G^l(z2)|| ] with ||.|| the L1 norm taken per element
    (mean absolute difference, so layers of different sizes count alike), the expectation over all pairs
    of the batch: the mean of :func:`pairwise_feature_distance`.
    official [CODE]: the sum over pairs and layers, times 2 / (L (L - 1)) with L the number of layers.
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    d = pairwise_feature_distance(features)
    if normalisation == "paper":
        return d.mean()
    n_layers = d.shape[0]
    scale = 2.0 / (n_layers * (n_layers - 1)) if n_layers > 1 else 1.0
    return d.sum() * scale


def official_dr_strength(lambda_dr: float, batch_size: int, g_layers: int, num_low: int, num_branch: int) -> float:
    """The lambda that, in the paper's normalisation, equals the official code run at ``lambda_dr``.

    Code: (S_low + 0.5 S_content + 0.5 S_layout)/N_D - lambda * s * DR_mean, with S the sums over blocks,
    s = P * 2/(L-1) (P pairs, L layers). Rescaling so the content term has weight 1 (as in Eq. 5.2)
    multiplies everything by N_D / (0.5 * N_content); the DR weight becomes lambda * s * N_D/(0.5 N_c).
    At the paper's sizes (B=5, L=7, 3+4+4 blocks) this is 0.15 * 3.33 * 3.5 = 1.75, about 12x 0.15.
    """
    pairs = batch_size * (batch_size - 1) / 2
    s = pairs * 2.0 / (g_layers - 1)
    n_d = num_low + num_branch
    return lambda_dr * s * n_d / (0.5 * num_branch)


# ---------------------------------------------------------------------------------------------
# The model and its training step
# ---------------------------------------------------------------------------------------------


def build_generator(cfg) -> Generator:
    blocks = generator_blocks_for(cfg["image_size"], cfg["noise_shape"][0])
    return Generator(z_dim=cfg["z_dim"], noise_shape=cfg["noise_shape"], num_blocks=blocks,
                     base_channels=cfg["g_base_channels"])


def build_discriminator(cfg, branches: str | None = None) -> ContentLayoutDiscriminator:
    return ContentLayoutDiscriminator(num_blocks=cfg["d_blocks"], num_low=cfg["num_low"],
                                      base_channels=cfg["d_base_channels"],
                                      branches=branches or cfg["branches"], layout_squeeze=cfg["layout_squeeze"],
                                      msg_kernel=cfg["msg_kernel"])


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class SIVGAN:
    """Generator + discriminator + optimisers + EMA, and one training iteration (:meth:`step`).

    ``frames`` (N, 3, H, W) in [-1, 1] is the training data: one image (N=1), the frames of a video,
    or a few images. ``lambda_dr=0`` gives "No DR"; ``branches="none"`` gives "No branches".
    Per iteration, as in [CODE]: a G step (fake through DA), then a D step on DA(real) with FA and on
    a fresh DA(fake).
    """

    def __init__(self, cfg, frames: torch.Tensor, device: torch.device | str = "cpu", branches: str | None = None,
                 lambda_dr: float | None = None, normalisation: str | None = None, seed: int | None = None):
        from nbsyn.train import EMA

        self.cfg = cfg
        self.device = torch.device(device)
        h, w = image_shape(cfg)
        check_frames(frames, (h, w))
        self.frames = frames.to(self.device)
        self.lambda_dr = cfg["lambda_dr"] if lambda_dr is None else lambda_dr
        self.normalisation = normalisation or cfg["normalisation"]
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}")
        seed = cfg["seed"] if seed is None else seed
        torch.manual_seed(seed)
        self.G = build_generator(cfg).to(self.device)
        self.D = build_discriminator(cfg, branches).to(self.device)
        self.ema = EMA(self.G, cfg["ema_decay"])
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg["lr_g"], betas=tuple(cfg["betas"]))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg["lr_d"], betas=tuple(cfg["betas"]))
        self.rng = torch.Generator().manual_seed(seed)

    def objects(self) -> dict:
        """Everything ``nbsyn.train.fit`` must checkpoint to resume bit-identically (incl. our RNG)."""
        return {"G": self.G, "D": self.D, "ema": self.ema, "opt_g": self.opt_g, "opt_d": self.opt_d,
                "rng": GeneratorState(self.rng)}

    def real_batch(self) -> torch.Tensor:
        idx = torch.randint(len(self.frames), (self.cfg["batch_size"],), generator=self.rng)
        return self.frames[idx]

    def augment(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """DA with one transform for all MSG levels of a batch [L1460, CODE]."""
        return diff_augment(levels, policy=self.cfg["da_policy"], p=self.cfg["p_da"], generator=self.rng)

    def fake_levels(self, out: GeneratorOutput) -> list[torch.Tensor]:
        return out.images[::-1][: self.D.num_low]

    def step(self, iteration: int = 0) -> dict[str, float]:
        b = self.cfg["batch_size"]
        # --- G step: fool every head (non-saturating BCE against "real"), maximise L_DR (Eq. 5.4)
        self.G.train()
        out = self.G(self.G.sample_z(b, self.rng, self.device))
        d_fake = self.D(self.augment(self.fake_levels(out)))
        g_adv, _ = adversarial_loss(d_fake, real=True, normalisation=self.normalisation)
        dr = diversity_regularisation(out.features, self.normalisation)
        g_loss = g_adv - self.lambda_dr * dr
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.ema.update(self.G)
        # --- D step: real (DA + FA) against a fresh fake (DA)
        real = self.augment(image_pyramid(self.real_batch(), self.D.num_low))
        d_real = self.D(real, augment=True, p_fa=self.cfg["p_fa"], generator=self.rng)
        with torch.no_grad():
            fake = self.fake_levels(self.G(self.G.sample_z(b, self.rng, self.device)))
        d_fake = self.D(self.augment(fake))
        loss_real, parts_real = adversarial_loss(d_real, real=True, normalisation=self.normalisation)
        loss_fake, parts_fake = adversarial_loss(d_fake, real=False, normalisation=self.normalisation)
        d_loss = loss_real + loss_fake
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        logs = {"g_adv": float(g_adv.detach()), "dr": float(dr.detach()), "d_loss": float(d_loss.detach())}
        for name in parts_real:
            logs[f"d_{name}"] = parts_real[name] + parts_fake[name]
        return logs

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, ema: bool = True, batch: int = 25) -> torch.Tensor:
        """``n`` images from the EMA generator (or the live one), deterministic in ``seed``."""
        g = self.ema.module if ema else self.G
        g.eval()
        gen = torch.Generator().manual_seed(seed)
        z = g.sample_z(n, gen, self.device)
        return torch.cat([g(z[i:i + batch]).image for i in range(0, n, batch)]).cpu()


def train_arm(cfg, frames: torch.Tensor, device="cpu", desc: str = "SIV-GAN", iterations: int | None = None,
              time_budget_s: float | None = None, seed: int | None = None, **arm):
    """Build a :class:`SIVGAN` (``arm``: ``branches``, ``lambda_dr``, ``normalisation``) and train it with
    ``nbsyn.train.fit`` (progress bar, time budget, NaN guard). Returns (model, history)."""
    from nbsyn.train import fit

    model = SIVGAN(cfg, frames, device=device, seed=seed, **arm)
    budget = cfg["time_budget_s"] if time_budget_s is None else time_budget_s
    history = fit(model.step, cfg["iterations"] if iterations is None else iterations, model.objects(),
                  time_budget_s=budget, desc=desc)
    return model, history


def check_frames(frames: torch.Tensor, shape: tuple[int, int]) -> None:
    """Training frames must be (N, 3, H, W) floats in [-1, 1] at the generator's output size."""
    if not torch.is_tensor(frames) or frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be a (N, 3, H, W) tensor, got {getattr(frames, 'shape', type(frames))}")
    if tuple(frames.shape[-2:]) != tuple(shape):
        raise ValueError(f"frames are {tuple(frames.shape[-2:])} but the generator makes {tuple(shape)}; "
                         f"resize them (nbsyn.models.sivgan.fit_frames)")
    if not frames.is_floating_point() or frames.min() < -1.001 or frames.max() > 1.001:
        raise ValueError("frames must be floats in [-1, 1]")


# ---------------------------------------------------------------------------------------------
# Weight-free evaluation: diversity, memorisation, realism (LPIPS / SIFID via nbsyn.metrics when cached)
# ---------------------------------------------------------------------------------------------


def with_flips(frames: torch.Tensor) -> torch.Tensor:
    """The training images and their mirror images: a memorised flip must not count as novel [L1506]."""
    return torch.cat([frames, frames.flip(-1)])


def pixel_diversity(samples: torch.Tensor, frames: torch.Tensor) -> float:
    """SinGAN's pixel diversity [Shaham et al. 2019; L1472]: the per-pixel std over the samples, averaged
    over pixels and channels, divided by the std of the training image(s)' intensities. 0 = all the same."""
    return float(samples.std(dim=0).mean() / frames.std())


def _patches(images: torch.Tensor, size: int) -> torch.Tensor:
    return F.unfold(images, size).transpose(1, 2).reshape(-1, images.shape[1] * size * size)


def patch_realism(samples: torch.Tensor, frames: torch.Tensor, patch: int = 5, max_patches: int = 4000,
                  seed: int = 0) -> float:
    """A weight-free realism check (a crude stand-in for SIFID; lower = more realistic): the mean L2
    distance from a generated ``patch`` x ``patch`` patch to its nearest training patch (training images
    and flips), over up to ``max_patches`` random patches of each side."""
    gen = torch.Generator().manual_seed(seed)
    fake = _patches(samples.float(), patch)
    real = _patches(with_flips(frames).float(), patch)
    fake = fake[torch.randperm(len(fake), generator=gen)[:max_patches]]
    real = real[torch.randperm(len(real), generator=gen)[:max_patches]]
    return float(torch.cdist(fake, real).min(dim=1).values.mean())


def evaluate_samples(samples: torch.Tensor, frames: torch.Tensor) -> dict[str, float | None]:
    """The notebook's metrics for one model: diversity (MS-SSIM between pairs, pixel diversity, LPIPS if
    cached), memorisation (RMSE and LPIPS to the nearest training image or flip) and realism (patch NN,
    SIFID if cached). Unavailable metrics are None."""
    from nbsyn import metrics

    train = with_flips(frames)
    out = {
        "ms_ssim": metrics.msssim_diversity(samples).value,
        "pixel_div": pixel_diversity(samples, frames),
        "dist_rmse": metrics.nn_distance(samples, train).value,
        "patch_nn": patch_realism(samples, frames),
        "lpips_div": metrics.lpips_diversity(samples).value,
        "sifid": metrics.sifid(frames[len(frames) // 2], samples).value,
    }
    lp = metrics.lpips_available()
    out["dist_lpips"] = None
    if lp is None:
        from nbsyn.metrics.lpips import lpips_pairs

        dists = torch.stack([lpips_pairs(samples, t.expand_as(samples)) for t in train], dim=1)
        out["dist_lpips"] = float(dists.min(dim=1).values.mean())
    return out
