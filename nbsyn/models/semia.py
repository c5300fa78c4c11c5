"""SemIA: semantic image analogy with a conditional single-image GAN (Li, Xiong, Liu, Chen, Zha, ACM MM 2020).

Trained on ONE image I and its label map P, G turns an edited map P' into I' ("P => P' :: I => I'",
L45-47). G is an image-to-image endomorphism I_target = G(I_source | T_seg) (Eq. 1, L85): an
encoder-decoder over the source image whose features are modulated at every scale by (gamma, beta)
that the Semantic Feature Translation (SFT) module predicts from the ratio and the difference of
E_seg features of P' and P (Eq. 4-6, L121-135). Training alternates a sampling mode (patch coherence,
semantic alignment via an auxiliary segmenter S, LSGAN + feature matching; Eq. 7-10) and a
reconstruction mode (L1 + fixed point on gamma, beta + GAN; Eq. 11-13), on progressively stronger
augmentations of (I, P) (L105, L193).

``Lnnn`` are lines of ``papers/li2020_semantic_image_analogy.txt``; ``specs/li_semantic_analogy.md``
(§n) says where the official code (ddlee-cn/SemIA, described, not copied) differs. ``variant="paper"``
follows the text; ``variant="official"`` switches every knob of the spec's §6 decision table to the code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from nbsyn.losses import d_loss as adv_d_loss
from nbsyn.losses import g_loss as adv_g_loss
from nbsyn.models.oasis import count_parameters, one_hot, set_requires_grad
from nbsyn.widgets import paste_shifted

VARIANTS = ("paper", "official")
DESCRIPTORS = ("pixel",)

# --------------------------------------------------------------------------------------------- presets
# Paper values with their lines; the cpu/smoke knobs are the spec's §8.4/§9 choices (said in the notebook).
_PAPER = {
    "seed": 0,
    "iterations": 2500,          # "above 2k iterations" (L195); code: 2500
    "image_size": 256,           # scene height (width = 4/3 of it, rounded to a multiple of 8); not stated
    "photo_size": 256,
    "batch_size": 1,             # [CODE]; not stated in the text
    "dataset": "single_scene",   # the real single images come through data_scripts (not shipped here)
    "photo": "chelsea",
    "time_budget_s": None,
    "threads": None,
    "variant": "paper",          # schedule + losses of the text; "official" = the code (§6)
    "base_nc": 32,               # "starting channel number is 32" (L191)
    "d_base": 32,                # PatchGAN with the G block structure (L191)
    "aux_channels": 128,         # DeepLabV3 "with 1/4 number of channels" (L191); code: 128, ASPP only
    "g_steps": 10,               # "optimize the discriminator once and the generator 10 times" (L193)
    "rec_every": 10,             # "reconstruction mode once every 10 iterations" (L193); code: 5
    "lr_g": 5e-4, "lr_d": 5e-4, "lr_s": 5e-4,  # "learning rate 0.0005" (L195); code: 5e-3 / 2e-2 / 5e-3
    "ramp_iterations": 1000,     # linear ramp of the augmentation (L193); code: 1000 of 2500
    "lambda_patch": 1.0, "lambda_seg": 1.0, "lambda_gan": 1.0, "lambda_fm": 1.0, "lambda_fp": 1.0,
    "lambda_rec": 1.0,           # all lambda = 1 (L195); code: rec 5
    "patch_descriptor": "pixel",  # paper: VGG19 relu1_1/relu2_1 (L195) - needs ImageNet weights, not shipped
    "patches": (10, 5),          # "10 patches and 5 patches from the first two stages" (L195)
    "scale_clamp": 10.0,         # guard on F_scale = F_aug / F_source (not in the paper; §8.8 risk 3)
    "modulate_decoder": True,    # [CODE] modulates decoder features too; the text names only the encoder
    "spade_channels": 32, "spade_blocks": 4, "spade_hidden": 64, "spade_ndf": 32,
    "segmenter_steps": 2000, "segmenter_renders": 2000, "segmenter_width": 32,
    "n_seeds": 1, "curve_every": 50,
}
_GPU = {**_PAPER, "iterations": 1000, "image_size": 128, "photo_size": 128,
        "base_nc": 16, "d_base": 16, "aux_channels": 64, "rec_every": 5, "lr_g": 5e-3, "lr_d": 2e-2, "lr_s": 5e-3,
        "ramp_iterations": 300, "lambda_rec": 5.0, "patches": (64, 32), "spade_channels": 16, "spade_hidden": 32,
        "n_seeds": 3, "segmenter_steps": 1500, "segmenter_renders": 1000, "segmenter_width": 16}
PRESETS = {
    "paper": _PAPER,
    "gpu": _GPU,
    # cpu: 48x64 scene, 64x64 photo, base 8 (G 349,510 params at N = 4), PatchGAN base 8, ASPP S with 32
    # channels (§9). Schedule from the official code (rec every 5 on lr 5e-3 / 2e-2, lambda_rec 5): the
    # pilot learned the identity path ~3x faster with it (§8.4, §8.11). Losses as in the paper.
    # iterations: FIXED and equal for every learned arm (the SPADE-style arm gets iterations * g_steps
    # G updates, the same number as SemIA); time_budget_s only guards against a stuck run.
    "cpu": {**_GPU, "iterations": 60, "image_size": 48, "photo_size": 64, "base_nc": 8,
            "d_base": 8, "aux_channels": 32, "ramp_iterations": 24, "spade_channels": 8, "spade_hidden": 16,
            "spade_ndf": 16, "n_seeds": 2, "segmenter_steps": 250, "segmenter_renders": 192,
            "segmenter_width": 16, "threads": None, "curve_every": 5, "time_budget_s": 1800},
    "smoke": {**_GPU, "iterations": 2, "image_size": 16, "photo_size": 16, "base_nc": 4,
              "d_base": 4, "aux_channels": 8, "g_steps": 2, "rec_every": 2, "ramp_iterations": 1,
              "patches": (4, 2), "spade_channels": 4, "spade_hidden": 8, "spade_ndf": 8, "n_seeds": 1,
              "segmenter_steps": 5, "segmenter_renders": 8, "segmenter_width": 8, "threads": 1,
              "curve_every": 1, "time_budget_s": 60},
}

# --------------------------------------------------------------------------------------------- blocks


def sn(module: nn.Module) -> nn.Module:
    """Spectral normalisation "in every block" (L191); u, v are buffers, so no extra parameters."""
    return spectral_norm(module)


def conv(cin: int, cout: int, k: int, stride: int = 1, bias: bool = True, pad_mode: str = "zeros") -> nn.Module:
    return sn(nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2 if k % 2 else 1, bias=bias,
                        padding_mode=pad_mode))


def bn_lrelu(c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.LeakyReLU(0.2)]


class Bottleneck(nn.Module):
    """[CODE] residual bottleneck x + [1x1 d->d/4, 3x3 d/4->d/4 (reflect pad), 1x1 d/4->d], BN optional."""

    def __init__(self, d: int, norm: bool = True):
        super().__init__()
        q = max(1, d // 4)
        layers = [sn(nn.Conv2d(d, q, 1))] + (bn_lrelu(q) if norm else [nn.LeakyReLU(0.2)])
        layers += [sn(nn.Conv2d(q, q, 3, padding=1, padding_mode="reflect"))] + (bn_lrelu(q) if norm else [nn.LeakyReLU(0.2)])
        layers += [sn(nn.Conv2d(q, d, 1))] + ([nn.BatchNorm2d(d)] if norm else [])
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.body(x)


class Encoder(nn.Module):
    """The G encoder design, used for the image and (as E_seg, L109/L191) for the label map.

    head: reflect-pad 3, SN-conv 7x7 (no bias), BN, LReLU; ``num_down`` blocks d -> 2d, each a
    bottleneck, a 3x3 stride-1 conv and a 4x4 stride-2 conv (L191: "a 3x3 convolutional layer with stride
    1, and a 4x4 convolutional layer ... with stride 2"), SN + BN + LeakyReLU; tail 3x3 conv + BN + LReLU.
    Returns the tail code and the output of every down block (the per-stage features of Eq. 4-6).
    """

    def __init__(self, in_channels: int, base: int = 32, num_down: int = 3):
        super().__init__()
        self.head = nn.Sequential(nn.ReflectionPad2d(3), sn(nn.Conv2d(in_channels, base, 7, bias=False)), *bn_lrelu(base))
        self.down = nn.ModuleList()
        for i in range(num_down):
            d = base * 2**i
            self.down.append(nn.Sequential(Bottleneck(d), conv(d, d, 3), *bn_lrelu(d),
                                           conv(d, 2 * d, 4, stride=2), *bn_lrelu(2 * d)))
        top = base * 2**num_down
        self.tail = nn.Sequential(sn(nn.Conv2d(top, top, 3, padding=1, bias=False)), *bn_lrelu(top))
        self.channels = [base * 2 ** (i + 1) for i in range(num_down)]

    def forward(self, x, gammas=None, betas=None, code: bool = True):
        x = self.head(x)
        feats = []
        for i, block in enumerate(self.down):
            x = block(x)
            if gammas is not None:  # Eq. 6 [CODE placement: after DS^l, i.e. on the input of DS^{l+1}]
                x = modulate(x, gammas[i], betas[i])
            feats.append(x)
        return (self.tail(x) if code else None), feats


class Decoder(nn.Module):
    """[CODE] head 3x3 conv (no bias); ``num_up`` blocks d -> d/2 (bottleneck, 3x3 conv, 4x4 transposed conv stride 2),
    SN + BN + LReLU (L191); output 3x3 conv -> 3 + BN + LReLU as in the code (no tanh), or tanh."""

    def __init__(self, base: int = 32, num_up: int = 3, output: str = "bn_lrelu"):
        super().__init__()
        top = base * 2**num_up
        self.head = nn.Sequential(conv(top, top, 3, bias=False), *bn_lrelu(top))
        self.up = nn.ModuleList()
        for i in range(num_up):
            d = top // 2**i
            self.up.append(nn.Sequential(Bottleneck(d), conv(d, d, 3), *bn_lrelu(d),
                                         sn(nn.ConvTranspose2d(d, d // 2, 4, stride=2, padding=1)), *bn_lrelu(d // 2)))
        if output not in ("bn_lrelu", "tanh"):
            raise ValueError(f"output must be 'bn_lrelu' or 'tanh', got {output!r}")
        tail = [sn(nn.Conv2d(base, 3, 3, padding=1, bias=False))]
        self.to_rgb = nn.Sequential(*tail, *(bn_lrelu(3) if output == "bn_lrelu" else [nn.Tanh()]))

    def forward(self, code, gammas=None, betas=None):
        y = self.head(code)
        n = len(self.up)
        for i, block in enumerate(self.up):
            if gammas is not None:  # [CODE] the mirrored scale's (gamma, beta) before each up block
                y = modulate(y, gammas[n - 1 - i], betas[n - 1 - i])
            y = block(y)
        return self.to_rgb(y)


def standardize(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(x - mean_HW(x)) / std_HW(x) per sample and channel (Eq. 6; [CODE] unbiased variance, eps 1e-5)."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, unbiased=True) if x.shape[2] * x.shape[3] > 1 else torch.zeros_like(mean)
    return (x - mean) / torch.sqrt(var + eps)


def modulate(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Eq. 6 (L133): gamma * (F - mean(F)) / std(F) + beta, gamma and beta per pixel and channel."""
    return gamma * standardize(x) + beta


def translation_inputs(f_source: torch.Tensor, f_target: torch.Tensor, clamp: float | None = 10.0,
                       eps: float = 1e-14) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4 (L123): F_scale = F_aug / F_source, F_shift = F_aug - F_source (element-wise).

    [CODE] adds 1e-14 to both; the ratio of post-LeakyReLU features is unbounded, so ``clamp`` limits it
    (a guard that is not in the paper, §8.8 risk 3). For identical maps F_scale == 1 and F_shift == 0 exactly.
    """
    num, den = f_target + eps, f_source + eps
    den = torch.where(den == 0, torch.full_like(den, eps), den)
    scale = num / den
    if clamp is not None:
        scale = scale.clamp(-clamp, clamp)
    return scale, f_target - f_source


class SFTBranch(nn.Module):
    """One SFT block for one scale (L131, L191, [CODE]): bottleneck without BN + 1x1 C -> C/2 -> C."""

    def __init__(self, c: int):
        super().__init__()
        self.res = Bottleneck(c, norm=False)
        self.out = nn.Sequential(sn(nn.Conv2d(c, c // 2, 1)), nn.ReLU(), sn(nn.Conv2d(c // 2, c, 1)))

    def forward(self, x):
        return self.out(self.res(x))


class SFT(nn.Module):
    """Eq. 5 (L128): (gamma_img, beta_img) = SFT(F_scale, F_shift); gamma only from F_scale, beta only from
    F_shift: "two SFT blocks" (L131), one pair per down stage."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.gamma = nn.ModuleList(SFTBranch(c) for c in channels)
        self.beta = nn.ModuleList(SFTBranch(c) for c in channels)

    def forward(self, scales, shifts):
        return [g(s) for g, s in zip(self.gamma, scales)], [b(s) for b, s in zip(self.beta, shifts)]


@dataclass
class GOutput:
    image: torch.Tensor
    gammas: list
    betas: list
    clamped_fraction: float = 0.0
    f_scale: list = field(default_factory=list)
    f_shift: list = field(default_factory=list)


class SemIAGenerator(nn.Module):
    """I_target = G(I_source | P_source -> P_target) (Eq. 1, L85): E_seg (shared, Fig. 2) encodes both
    maps, SFT turns their ratio / difference into (gamma, beta), the image encoder-decoder applies them
    (Eq. 6). No noise input: G is deterministic (§2.1). Label maps are one-hot (the code feeds colours)."""

    def __init__(self, num_classes: int, base: int = 32, num_down: int = 3, modulate_decoder: bool = True,
                 scale_clamp: float | None = 10.0, output: str = "bn_lrelu"):
        super().__init__()
        if num_classes < 1:
            raise ValueError("need num_classes >= 1")
        self.num_classes, self.num_down = num_classes, num_down
        self.modulate_decoder, self.scale_clamp = modulate_decoder, scale_clamp
        self.e_seg = Encoder(num_classes, base, num_down)
        self.encoder = Encoder(3, base, num_down)
        self.sft = SFT(self.e_seg.channels)
        self.decoder = Decoder(base, num_down, output)

    def _check(self, image, labels):
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (B, 3, H, W), got {tuple(image.shape)}")
        if labels.shape != (image.shape[0], *image.shape[-2:]):
            raise ValueError(f"label map must be (B, H, W) = {(image.shape[0], *image.shape[-2:])}, got {tuple(labels.shape)}")
        f = 2**self.num_down
        if image.shape[-1] % f or image.shape[-2] % f:
            raise ValueError(f"H and W must be divisible by {f} (3 down stages), got {tuple(image.shape[-2:])}")

    def forward(self, image: torch.Tensor, p_source: torch.Tensor, p_target: torch.Tensor) -> GOutput:
        self._check(image, p_source)
        self._check(image, p_target)
        with parametrize.cached():  # one spectral-norm weight per forward (E_seg runs twice)
            return self._forward(image, p_source, p_target)

    def _forward(self, image, p_source, p_target) -> GOutput:
        # two separate E_seg passes, as in the code (own BN batch statistics per map in training mode)
        _, f_src = self.e_seg(one_hot(p_source, self.num_classes), code=False)
        _, f_tgt = self.e_seg(one_hot(p_target, self.num_classes), code=False)
        pairs = [translation_inputs(s, t, clamp=None) for s, t in zip(f_src, f_tgt)]
        raw_scales = [p[0] for p in pairs]
        clamped = 0.0
        if self.scale_clamp is not None:
            with torch.no_grad():
                n = sum(s.numel() for s in raw_scales)
                clamped = float(sum((s.abs() > self.scale_clamp).sum() for s in raw_scales)) / max(n, 1)
            scales = [s.clamp(-self.scale_clamp, self.scale_clamp) for s in raw_scales]
        else:
            scales = raw_scales
        shifts = [p[1] for p in pairs]
        gammas, betas = self.sft(scales, shifts)
        code, _ = self.encoder(image, gammas, betas)
        out = self.decoder(code, gammas, betas) if self.modulate_decoder else self.decoder(code)
        return GOutput(out, gammas, betas, clamped, scales, shifts)


# --------------------------------------------------------------------------------------------- D and S


class PatchGAN(nn.Module):
    """The paper's D: "a PatchGAN [16] with 3 downsample blocks", block structure of G (L111, L191).

    block l: SN-conv 3x3 s1 + BN + LReLU, SN-conv 4x4 s2 (c_l -> 2 c_l) + BN + LReLU; head 3x3 -> 1 score
    map. Images only (L107). Returns (list of score maps, list of block features for feature matching)."""

    def __init__(self, base: int = 32, num_down: int = 3):
        super().__init__()
        blocks, cin = [], 3
        for i in range(num_down):
            c = base * 2**i
            blocks.append(nn.Sequential(conv(cin, c, 3), *bn_lrelu(c), conv(c, 2 * c, 4, stride=2), *bn_lrelu(2 * c)))
            cin = 2 * c
        self.blocks = nn.ModuleList(blocks)
        self.head = conv(cin, 1, 3)

    def forward(self, x):
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return [self.head(x)], feats


class FPSEDiscriminator(nn.Module):
    """[CODE] option (variant "official"): the CC-FPSE-style D of the official code, unconditional.

    Bottom-up 3x3 stride-2 SN convs 3 -> b -> 2b -> 4b with InstanceNorm (no bias); top-down 1x1 laterals
    at H/4 and H/8, bilinear x2 upsampling; two 3x3 convs 4b -> 2b; one shared 1x1 conv -> 1 (two score
    maps). Features for FM: the bottom-up maps at H/4 and H/8. The unused 4th level is not built."""

    def __init__(self, base: int = 64):
        super().__init__()
        b = base

        def down(cin, cout):
            return nn.Sequential(sn(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)),
                                 nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2))

        def layer(cin, cout, k):
            return nn.Sequential(sn(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)), nn.InstanceNorm2d(cout),
                                 nn.LeakyReLU(0.2))

        self.enc1, self.enc2, self.enc3 = down(3, b), down(b, 2 * b), down(2 * b, 4 * b)
        self.lat2, self.lat3 = layer(2 * b, 4 * b, 1), layer(4 * b, 4 * b, 1)
        self.final2, self.final3 = layer(4 * b, 2 * b, 3), layer(4 * b, 2 * b, 3)
        self.score = nn.Conv2d(2 * b, 1, 1)

    def forward(self, x):
        e2 = self.enc2(self.enc1(x))
        e3 = self.enc3(e2)
        l3 = self.lat3(e3)
        l2 = self.lat2(e2) + F.interpolate(l3, size=e2.shape[-2:], mode="bilinear", align_corners=True)
        return [self.score(self.final2(l2)), self.score(self.final3(l3))], [e2, e3]


def aspp_rates(height: int) -> tuple[int, int]:
    """Dilation rates of S scaled to the image: [CODE] uses 8 and 16 for images of <= 250 px (§2.6)."""
    return max(1, round(height / 32)), max(2, round(height / 16))


class AuxASPP(nn.Module):
    """The auxiliary classifier S: "a light version of DeepLab V3 ... 1/4 number of channels" (L111, L191).

    [CODE] an ASPP head on the RGB image, no backbone: 1x1 conv, two dilated 3x3 convs, image pooling +
    1x1 conv (each 3 -> c, ReLU, no bias); concat -> 1x1 conv 4c -> c, ReLU, Dropout(0.5); 3x3 conv, BN,
    ReLU; 1x1 conv -> N class logits (the paper's CE, Eq. 8-9; the code regresses colours with L1)."""

    def __init__(self, num_classes: int, channels: int = 128, rates: tuple[int, int] = (8, 16)):
        super().__init__()
        c = channels
        self.b0 = nn.Conv2d(3, c, 1, bias=False)
        self.b1 = nn.Conv2d(3, c, 3, padding=rates[0], dilation=rates[0], bias=False)
        self.b2 = nn.Conv2d(3, c, 3, padding=rates[1], dilation=rates[1], bias=False)
        self.pool = nn.Conv2d(3, c, 1, bias=False)
        self.project = nn.Sequential(nn.Conv2d(4 * c, c, 1, bias=False), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.Conv2d(c, num_classes, 1))

    def forward(self, x):
        pooled = F.relu(self.pool(x.mean(dim=(2, 3), keepdim=True))).expand(-1, -1, *x.shape[-2:])
        y = torch.cat([F.relu(self.b0(x)), F.relu(self.b1(x)), F.relu(self.b2(x)), pooled], 1)
        return self.head(self.project(y))


# --------------------------------------------------------------------------------------------- losses


def _patches(image: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All k x k patches of a (3, H, W) image as rows (L, 3 k k) and the label at each patch centre (L,)."""
    rows = F.unfold(image[None], k)[0].T  # positions in raster order of the (H-k+1) x (W-k+1) grid
    h, w = labels.shape
    r = k // 2
    centre = labels[r:h - k + 1 + r, r:w - k + 1 + r].reshape(-1)
    return rows, centre


def patch_coherence_loss(generated: torch.Tensor, source: torch.Tensor, p_target: torch.Tensor,
                         p_source: torch.Tensor, n_patches: Sequence[int] = (64, 32), k: int = 3,
                         search: str = "class", top_k: int = 5,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. 7 (L145-150): (1 / N_target) sum_V min_{U in I_source, class(U) = class(V)} d(V, U), d = mean L1.

    "Stages": full resolution, then the 2x average-pooled images (pixel descriptors stand in for the
    paper's VGG relu1_1 / relu2_1, §8.4). A patch's class is the label at its centre (P_target for V,
    P_source for U); V whose class is absent from the source is skipped. ``search="global"`` is the
    code's choice: no class restriction, mean of the ``top_k`` nearest. The source is detached: the
    gradient reaches the generated image only. ``n_patches`` random generated patches per stage.
    """
    if search not in ("class", "global"):
        raise ValueError(f"search must be 'class' or 'global', got {search!r}")
    total, count = generated.new_zeros(()), 0
    src_img, src_lab, gen_lab = source.detach(), p_source, p_target
    gen_img = generated
    for stage, n in enumerate(n_patches):
        if stage > 0:
            gen_img, src_img = F.avg_pool2d(gen_img, 2), F.avg_pool2d(src_img, 2)
            gen_lab, src_lab = gen_lab[:, ::2, ::2], src_lab[:, ::2, ::2]
        for b in range(generated.shape[0]):
            g_rows, g_cls = _patches(gen_img[b], gen_lab[b], k)
            s_rows, s_cls = _patches(src_img[b], src_lab[b], k)
            idx = torch.randint(0, g_rows.shape[0], (n,), generator=generator, device=generator.device if generator is not None else "cpu").to(g_rows.device)
            v, v_cls = g_rows[idx], g_cls[idx]
            d = torch.cdist(v[None], s_rows[None], p=1)[0] / v.shape[1]  # mean L1, (n, L_source)
            if search == "class":
                same = v_cls[:, None] == s_cls[None, :]
                ok = same.any(1)
                if not ok.any():
                    continue
                d = torch.where(same, d, torch.full_like(d, float("inf")))[ok]
                total = total + d.min(1).values.sum()
                count += int(ok.sum())
            else:
                total = total + d.topk(min(top_k, d.shape[1]), dim=1, largest=False).values.mean(1).sum()
                count += n
    return total / max(count, 1)


def fixed_point_loss(gammas: Sequence[torch.Tensor], betas: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eq. 12 (L177): ||gamma_img - 1|| + ||beta_img||; [CODE] mean L1 per scale, summed over scales."""
    return sum((g - 1).abs().mean() + b.abs().mean() for g, b in zip(gammas, betas))


def feature_matching(real_feats: Sequence[torch.Tensor], fake_feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """FM on D features (L160): mean over layers of L1(D_l(fake), D_l(real).detach())."""
    return sum(F.l1_loss(f, r.detach()) for r, f in zip(real_feats, fake_feats)) / len(real_feats)


def lsgan_d(real_scores, fake_scores) -> torch.Tensor:
    """LSGAN (L160) with nbsyn's 1/2 factors (the code has none), averaged over D's score maps."""
    return sum(adv_d_loss("ls", r, f) for r, f in zip(real_scores, fake_scores)) / len(real_scores)


def lsgan_g(fake_scores) -> torch.Tensor:
    return sum(adv_g_loss("ls", f) for f in fake_scores) / len(fake_scores)


# --------------------------------------------------------------------------------------------- augmentation


def progressive_augment(image: torch.Tensor, labels: torch.Tensor, strength: float,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One random geometric transform of (I, P) whose randomness grows with ``strength`` f in [0, 1] (L105, L193).

    flip with p = 0.5 f, zoom-in U(1, 1 + 0.2 f) [CODE], rotation U(-5, 5) f degrees and shift U(-0.1, 0.1) f
    (the text's "rotation and crop", L193), and a smooth warp (3x3 random offsets, bicubic) of amplitude
    0.02 f of the width (the code's TPS, §3.2). One grid: bilinear for the image, nearest for the labels,
    reflection at the border. At f = 0 the pair is returned unchanged. All random numbers are drawn
    whatever f is, so the stream does not depend on f.
    """
    b, _, h, w = image.shape
    dev = image.device
    u = torch.rand(b, 6, generator=generator, device=generator.device if generator is not None else "cpu").to(dev)
    warp = (torch.rand(b, 2, 3, 3, generator=generator, device=generator.device if generator is not None else "cpu")
            .to(dev) * 2 - 1)
    if strength <= 0:
        return image.clone(), labels.clone()
    f = min(1.0, float(strength))
    flip = torch.where(u[:, 0] < 0.5 * f, -1.0, 1.0)
    zoom = 1.0 + 0.2 * f * u[:, 1]
    angle = math.radians(5.0) * f * (2 * u[:, 2] - 1)
    shift = 0.2 * f * (2 * u[:, 3:5] - 1)  # +-10 % of the size = +-0.2 in [-1, 1] coordinates
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=dev)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=dev)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    aspect = w / h
    x = gx[None] * aspect * flip[:, None, None]
    y = gy[None].expand(b, h, w)
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    xr, yr = cos * x - sin * y, sin * x + cos * y
    xr, yr = xr / zoom[:, None, None] / aspect + shift[:, 0, None, None], yr / zoom[:, None, None] + shift[:, 1, None, None]
    field_ = F.interpolate(warp, size=(h, w), mode="bicubic", align_corners=True) * (0.02 * f * 2)  # 0.02 W in [-1, 1]
    grid = torch.stack([xr + field_[:, 0], yr + field_[:, 1]], -1)
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    lab = F.grid_sample(labels[:, None].float(), grid, mode="nearest", padding_mode="reflection",
                        align_corners=False)[:, 0].round().long()
    return out, lab


# --------------------------------------------------------------------------------------------- training


@dataclass
class Arm:
    """A trained arm: the nets, the loss history and what it needs at inference."""
    name: str
    G: nn.Module
    D: nn.Module
    S: nn.Module | None
    history: object
    kind: str = "semia"  # or "spade"
    curve: list = field(default_factory=list)  # (G updates, reconstruction RMSE in eval mode)

    @torch.no_grad()
    def translate(self, image: torch.Tensor, p_source: torch.Tensor, p_target: torch.Tensor) -> torch.Tensor:
        """I' for target maps (B, H, W), eval mode, clamped to [-1, 1] for display and metrics."""
        self.G.eval()
        if p_target.dim() == 2:
            p_target = p_target[None]
        n = p_target.shape[0]
        if self.kind == "spade":
            out = self.G(one_hot(p_target, self.G.num_classes))
        else:
            out = self.G(image.expand(n, -1, -1, -1), p_source.expand(n, -1, -1), p_target).image
        return out.clamp(-1, 1)


def build_semia(cfg, num_classes: int, height: int):
    """(G, D, S) of a preset: D is the paper's PatchGAN, or the code's FPSE D with variant 'official'."""
    G = SemIAGenerator(num_classes, cfg["base_nc"], 3, cfg["modulate_decoder"], cfg["scale_clamp"])
    D = PatchGAN(cfg["d_base"]) if cfg["variant"] == "paper" else FPSEDiscriminator(2 * cfg["d_base"])
    S = AuxASPP(num_classes, cfg["aux_channels"], aspp_rates(height))
    return G, D, S


def check_config(cfg) -> None:
    """Clear errors for settings this module does not implement (before any training)."""
    if cfg["variant"] not in VARIANTS:
        raise ValueError(f"unknown variant {cfg['variant']!r}; choose one of {', '.join(VARIANTS)}")
    if cfg["patch_descriptor"] not in DESCRIPTORS:
        raise ValueError(f"patch_descriptor {cfg['patch_descriptor']!r} is not implemented (the paper's VGG19 needs "
                         f"ImageNet weights); choose one of {', '.join(DESCRIPTORS)}")


def check_pair(image: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
    """Clear errors for a bad training pair (before any training)."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got {tuple(image.shape)}")
    if labels.shape != image.shape[-2:]:
        raise ValueError(f"label map must be (H, W) = {tuple(image.shape[-2:])}, got {tuple(labels.shape)}")
    if labels.dtype != torch.long or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"label ids must be torch.long in [0, {num_classes - 1}]")
    if image.shape[-1] % 8 or image.shape[-2] % 8:
        raise ValueError(f"H and W must be divisible by 8 (3 down stages), got {tuple(image.shape[-2:])}")


def make_semia_step(G, D, S, opts, image, labels, cfg, *, patch=True, aux=True, progressive=True,
                    generator: torch.Generator):
    """One iteration (§8.9): D step, S step, ``g_steps`` G steps, in sampling or reconstruction mode.

    Sampling (L107, Eq. 10): G maps I -> I_target given P -> P_aug; loss L_patch + l_seg CE(S(I_target), P_aug)
    + l_gan LSGAN + l_fm FM against I_aug. Reconstruction every ``rec_every`` iterations (L105, Eq. 13):
    P_target = P_source, loss l_rec |G - I|_1 + l_fp L_fp + l_gan LSGAN. ``variant="official"`` switches to
    the code: reconstruct the augmented pair, swap source/target with p = 0.5, a second D step, S stepped in
    reconstruction iterations and its term detached, global top-5 patch search, FM in both modes.
    """
    official = cfg["variant"] == "official"
    opt_g, opt_d, opt_s = opts
    I, P = image[None], labels[None]
    dev = I.device
    gdev = generator.device

    def d_step(src, p_src, p_tgt, tgt):
        with torch.no_grad():
            fake = G(src, p_src, p_tgt).image
        set_requires_grad(D, True)
        real_scores, _ = D(tgt)
        fake_scores, _ = D(fake)
        loss = lsgan_d(real_scores, fake_scores)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        return loss.item()

    def step(it: int) -> dict:
        G.train(), D.train()
        f = min(1.0, it / max(cfg["ramp_iterations"], 1)) if progressive else 1.0
        I_a, P_a = progressive_augment(I, P, f, generator)
        rec = it % cfg["rec_every"] == 0
        swap = bool(torch.rand((), generator=generator, device=gdev) < 0.5)
        if rec:
            src, p_src, tgt, p_tgt = (I_a, P_a, I_a, P_a) if official else (I, P, I, P)
        elif official and swap:
            src, p_src, tgt, p_tgt = I_a, P_a, I, P
        else:
            src, p_src, tgt, p_tgt = I, P, I_a, P_a
        noise = (torch.rand(src.shape, generator=generator, device=gdev).to(dev) * 2 - 1) / 255.0
        noisy = src + noise  # [CODE] training-time input noise (8-bit quantisation), none at inference
        out = {"rec": float(rec), "strength": f}
        out["loss_d"] = d_step(noisy, p_src, p_tgt, tgt)
        train_s = aux and S is not None and (rec if official else not rec)
        if train_s:  # Eq. 9 (L158): L(S) = CE(P_aug, S(I_aug))
            S.train()
            set_requires_grad(S, True)
            loss_s = F.cross_entropy(S(I_a), P_a[:, :] if P_a.dim() == 3 else P_a)
            opt_s.zero_grad(set_to_none=True)
            loss_s.backward()
            opt_s.step()
            out["loss_s"] = loss_s.item()
        set_requires_grad(D, False)
        if S is not None:
            set_requires_grad(S, False)
        with torch.no_grad():
            _, real_feats = D(tgt)
        logs: dict[str, float] = {}
        for _ in range(cfg["g_steps"]):
            o = G(noisy, p_src, p_tgt)
            fake_scores, fake_feats = D(o.image)
            l_gan = lsgan_g(fake_scores)
            if rec:  # Eq. 11-13
                l_rec = (o.image - tgt).abs().mean()
                l_fp = fixed_point_loss(o.gammas, o.betas)
                loss = cfg["lambda_rec"] * l_rec + cfg["lambda_fp"] * l_fp + cfg["lambda_gan"] * l_gan
                parts = {"g_rec": l_rec.item(), "g_fp": l_fp.item()}
                if official:
                    l_fm = feature_matching(real_feats, fake_feats)
                    loss = loss + cfg["lambda_fm"] * l_fm
            else:  # Eq. 10
                loss = cfg["lambda_gan"] * l_gan + cfg["lambda_fm"] * feature_matching(real_feats, fake_feats)
                parts = {}
                if patch and cfg["lambda_patch"] > 0:
                    l_patch = patch_coherence_loss(o.image, src, p_tgt, p_src, cfg["patches"],
                                                   search="global" if official else "class", generator=generator)
                    loss = loss + cfg["lambda_patch"] * l_patch
                    parts["g_patch"] = l_patch.item()
                if aux and S is not None and cfg["lambda_seg"] > 0:
                    S.eval()  # frozen while it scores G (Eq. 8)
                    logits = S(o.image.detach() if official else o.image)
                    l_seg = F.cross_entropy(logits, p_tgt)
                    if not official:  # [CODE] detaches: logged, no gradient to G
                        loss = loss + cfg["lambda_seg"] * l_seg
                    parts["g_seg"] = l_seg.item()
            parts["g_gan"] = l_gan.item()
            parts["clamped"] = o.clamped_fraction
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            logs = parts
        out.update(logs)
        if official:
            out["loss_d2"] = d_step(noisy, p_src, p_tgt, tgt)
        return out

    return step


def reconstruction_rmse(G, image, labels) -> float:
    """RMSE of G(I | P -> P) vs I in eval mode (metric 0 of §8.5), output clamped to [-1, 1]."""
    was = G.training
    G.eval()
    with torch.no_grad():
        out = G(image[None], labels[None], labels[None]).image.clamp(-1, 1)
    G.train(was)
    return float(((out[0] - image) ** 2).mean().sqrt())


def train_semia(cfg, image, labels, num_classes, seed, *, device="cpu", patch=True, aux=True, progressive=True,
                iterations: int | None = None, name="SemIA", progress=True):
    """Train SemIA (or an ablation) on one pair for ``cfg.iterations`` iterations (fixed)."""
    from nbsyn.train import fit

    check_config(cfg)
    check_pair(image, labels, num_classes)
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    G, D, S = build_semia(cfg, num_classes, image.shape[-2])
    G, D, S = G.to(device), D.to(device), S.to(device)
    betas = (0.0, 0.9)  # [CODE]; the paper gives none
    opts = (torch.optim.Adam(G.parameters(), cfg["lr_g"], betas=betas),
            torch.optim.Adam(D.parameters(), cfg["lr_d"], betas=betas),
            torch.optim.Adam(S.parameters(), cfg["lr_s"], betas=betas))
    image, labels = image.to(device), labels.to(device)
    step = make_semia_step(G, D, S if aux else None, opts, image, labels, cfg, patch=patch, aux=aux,
                           progressive=progressive, generator=gen)
    curve = []

    def log_curve(n, _h):
        curve.append((n * cfg["g_steps"], reconstruction_rmse(G, image, labels)))

    total = cfg["iterations"] if iterations is None else iterations
    history = fit(step, total, {"G": G, "D": D, "S": S}, time_budget_s=cfg["time_budget_s"], desc=name,
                  callback=log_curve, callback_every=cfg["curve_every"], progress=progress)
    return Arm(name, G, D, S if aux else None, history, "semia", curve)


def train_spade(cfg, image, labels, num_classes, seed, *, device="cpu", iterations: int | None = None,
                name="SPADE-style", progress=True):
    """B1: the OASIS/SPADE-style label-to-image generator (no noise) + SPADE multi-scale D (hinge + FM),
    on the SAME progressive (I_aug, P_aug) stream; iterations * g_steps G updates, as many as SemIA."""
    from nbsyn.models.oasis import OASISGenerator
    from nbsyn.models.spade_baseline import MultiScaleDiscriminator, make_baseline_step
    from nbsyn.train import fit

    check_pair(image, labels, num_classes)
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    G = OASISGenerator(num_classes, z_dim=0, channels=cfg["spade_channels"], num_res_blocks=cfg["spade_blocks"],
                       spade_hidden=cfg["spade_hidden"]).to(device)
    D = MultiScaleDiscriminator(num_classes, ndf=cfg["spade_ndf"], n_layers=3, num_d=2).to(device)
    betas = (0.0, 0.9)
    opt_g = torch.optim.Adam(G.parameters(), cfg["lr_g"] / 2.5, betas=betas)  # 2e-3 / 8e-3 at cpu (TTUR)
    opt_d = torch.optim.Adam(D.parameters(), cfg["lr_d"] / 2.5, betas=betas)
    I, P = image[None].to(device), labels[None].to(device)
    g_steps = cfg["g_steps"]
    ramp = cfg["ramp_iterations"] * g_steps
    counter = {"step": 0}

    def sample_batch():
        s = counter["step"]
        f = min(1.0, s / max(ramp, 1))
        return progressive_augment(I, P, f, gen)

    inner = make_baseline_step(G, D, opt_g, opt_d, sample_batch, lambda_fm=10.0)

    def step(s):
        counter["step"] = s
        G.train()
        return inner(s)

    curve = []

    def log_curve(n, _h):
        if n % g_steps == 0 and (n // g_steps) % cfg["curve_every"] == 0:
            G.eval()
            with torch.no_grad():
                out = G(one_hot(P, num_classes)).clamp(-1, 1)
            curve.append((n, float(((out[0] - I[0]) ** 2).mean().sqrt())))

    total = (cfg["iterations"] if iterations is None else iterations) * g_steps
    budget = cfg["time_budget_s"]
    history = fit(step, total, {"G": G, "D": D}, time_budget_s=budget, desc=name, callback=log_curve,
                  callback_every=1, progress=progress)
    return Arm(name, G, D, None, history, "spade", curve)


# --------------------------------------------------------------------------------------------- B2: Image Analogies


def _causal_offsets(r: int = 2):
    """(dy, dx) of the L-shaped causal window: the r rows above (width 2r+1) and the r pixels to the left."""
    return [(dy, dx) for dy in range(-r, 0) for dx in range(-r, r + 1)] + [(0, dx) for dx in range(-r, 0)]


def image_analogies(p_a: torch.Tensor, image_a: torch.Tensor, p_b: torch.Tensor, num_classes: int,
                    kappa: float = 2.0, label_weight: float = 2.0) -> torch.Tensor:
    """B2, compact Image Analogies (Hertzmann et al. 2001, single level, Ashikhmin-style coherence).

    A = P, A' = I, B = P'. Each target pixel q of B' (scan-line order) is matched by a feature = the 5x5
    one-hot label window of B around q (times ``label_weight``) + the causal 5x5 RGB window of the already
    synthesised B'. Candidates: the brute-force nearest source pixel p_app, and p_coh = s(r) + (q - r)
    over the synthesised neighbours r; take p_coh if d(p_coh) <= d(p_app)(1 + kappa). Ties add
    1e-6 |p - q|^2, so with P' = P the result is I exactly. (The spec's 2-level pyramid is cut to one level.)
    """
    h, w = p_a.shape
    dev = image_a.device
    r = 2
    oh_a = F.pad(one_hot(p_a[None], num_classes), (r, r, r, r))[0] * label_weight
    oh_b = F.pad(one_hot(p_b[None], num_classes), (r, r, r, r))[0] * label_weight
    lab_a = F.unfold(oh_a[None], 2 * r + 1)[0].T  # (HW, N * 25)
    lab_b = F.unfold(oh_b[None], 2 * r + 1)[0].T
    offsets = _causal_offsets(r)
    img_a = F.pad(image_a[None], (r, r, r, r))[0]
    ys, xs = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    causal_a = torch.cat([img_a[:, ys + r + dy, xs + r + dx].T for dy, dx in offsets], 1)  # (HW, 3 * 12)
    src = torch.cat([lab_a, causal_a], 1)
    out = torch.zeros(3, h + 2 * r, w + 2 * r, device=dev)
    s = torch.full((h, w), -1, dtype=torch.long, device=dev)
    pos = torch.stack([ys, xs], 1).float()
    for q in range(h * w):
        qy, qx = divmod(q, w)
        causal = torch.cat([out[:, qy + r + dy, qx + r + dx] for dy, dx in offsets])
        feat = torch.cat([lab_b[q], causal])
        d = ((src - feat) ** 2).sum(1) + 1e-6 * ((pos - torch.tensor([qy, qx], device=dev).float()) ** 2).sum(1)
        best = int(d.argmin())
        d_app = float(d[best])
        coh, d_coh = -1, float("inf")
        for dy, dx in offsets:  # Ashikhmin: continue the source patch of an already synthesised neighbour
            ry, rx = qy + dy, qx + dx
            if 0 <= ry < h and 0 <= rx < w and s[ry, rx] >= 0:
                cy, cx = divmod(int(s[ry, rx]), w)
                cy, cx = cy - dy, cx - dx
                if 0 <= cy < h and 0 <= cx < w and float(d[cy * w + cx]) < d_coh:
                    coh, d_coh = cy * w + cx, float(d[cy * w + cx])
        if coh >= 0 and d_coh <= d_app * (1 + kappa):
            best = coh
        s[qy, qx] = best
        by, bx = divmod(best, w)
        out[:, qy + r, qx + r] = image_a[:, by, bx]
    return out[:, r:r + h, r:r + w]


# --------------------------------------------------------------------------------------------- edits + metrics

# §8.2: source layout of the scene (units of image height; x from the left) and the six scripted edits
SCENE_BALLOONS = ((0.30, 0.26, 0.11), (0.95, 0.22, 0.09))
SCENE_HOUSE = (0.80, 0.42, 0.36, 0.30)


def scene_edits():
    """name -> (balloons, house): each edit is a change of the render parameters (so it has an oracle)."""
    b0, b1 = SCENE_BALLOONS
    return {
        "move balloon right": (((0.55, 0.26, 0.11), b1), SCENE_HOUSE),
        "enlarge balloon": ((b0, (0.95, 0.22, 0.13)), SCENE_HOUSE),
        "move house left": (SCENE_BALLOONS, (0.25, 0.42, 0.36, 0.30)),
        "shrink house": (SCENE_BALLOONS, (0.85, 0.50, 0.27, 0.22)),
        "add balloon": (SCENE_BALLOONS + ((0.65, 0.36, 0.08),), SCENE_HOUSE),
        "remove balloon": ((b0,), SCENE_HOUSE),
    }


def scene_width(height: int) -> int:
    """The scene's width: 4/3 of its height, rounded to a multiple of 8 (48 -> 64, 16 -> 24)."""
    return max(8, 8 * round(height * 4 / 3 / 8))


def render_scene_edits(h: int, w: int):
    """(source image, source labels, {edit: (P', oracle I')}) of the procedural scene at h x w."""
    from nbsyn.data.single import render_scene

    image, labels = render_scene(h, w, SCENE_BALLOONS, SCENE_HOUSE)
    edits = {}
    for name, (balloons, house) in scene_edits().items():
        img, lab = render_scene(h, w, balloons, house)
        edits[name] = (lab, img)
    return image, labels, edits


def connected_regions(labels: torch.Tensor) -> torch.Tensor:
    """(H, W) component ids (0..K-1): 4-connected components of each class."""
    import numpy as np
    from scipy import ndimage

    lab = labels.cpu().numpy()
    out = np.zeros_like(lab)
    nxt = 0
    for c in np.unique(lab):
        comp, n = ndimage.label(lab == c)
        out[comp > 0] = comp[comp > 0] - 1 + nxt
        nxt += n
    return torch.from_numpy(out).long()


def fill_vacated(labels: torch.Tensor, vacated: torch.Tensor) -> torch.Tensor:
    """Each vacated pixel takes the label of its nearest non-vacated pixel (distance transform)."""
    from scipy import ndimage

    if not vacated.any():
        return labels.clone()
    if vacated.all():
        raise ValueError("cannot fill: every pixel is vacated")
    _, (iy, ix) = ndimage.distance_transform_edt(vacated.cpu().numpy(), return_indices=True)
    lab = labels.cpu().numpy()
    return torch.from_numpy(lab[iy, ix]).long()


def _region_class(labels, region):
    vals = labels[region]
    if vals.numel() == 0:
        raise ValueError("empty region")
    return int(vals.mode().values)


def move_region(labels: torch.Tensor, region: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move the pixels of ``region`` (bool) by (dy, dx); the old footprint is filled from its surroundings;
    pixels that leave the image are dropped."""
    cls = _region_class(labels, region)
    return paste_shifted(fill_vacated(labels, region), region, cls, dy, dx)


def scale_region(labels: torch.Tensor, region: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale ``region`` about its centroid by ``factor`` (nearest resampling); factor 1 is the identity."""
    if factor <= 0:
        raise ValueError("factor must be > 0")
    if factor == 1.0:
        return labels.clone()
    cls = _region_class(labels, region)
    base = fill_vacated(labels, region)
    h, w = labels.shape
    ys, xs = torch.nonzero(region, as_tuple=True)
    cy, cx = ys.float().mean(), xs.float().mean()
    gy, gx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    sy = torch.round(cy + (gy - cy) / factor).long()
    sx = torch.round(cx + (gx - cx) / factor).long()
    inside = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
    hit = torch.zeros_like(region)
    hit[inside] = region[sy[inside], sx[inside]]
    base[hit] = cls
    return base


def remove_region(labels: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    return fill_vacated(labels, region)


def add_disc(labels: torch.Tensor, cy: float, cx: float, radius: float, cls: int) -> torch.Tensor:
    from nbsyn.widgets import paint_disc

    return paint_disc(labels, cy, cx, radius, cls)


def photo_edits(labels: torch.Tensor, num_classes: int) -> dict:
    """Move, resize, add and remove on a k-means map (no oracle): the largest component with 2-20 % of the
    pixels is moved right by W/5 and scaled x1.3; a disc of radius H/8 of another class is painted; the
    second such component is removed."""
    h, w = labels.shape
    comps = connected_regions(labels)
    sizes = torch.bincount(comps.reshape(-1))
    order = sizes.argsort(descending=True)
    objects = [int(c) for c in order if 0.02 * h * w <= sizes[c] <= 0.2 * h * w]
    if len(objects) < 2:
        objects = [int(c) for c in order[1:3]]
    a, b = comps == objects[0], comps == objects[1]
    cy, cx = int(0.3 * h), int(0.7 * w)
    cls = (int(labels[cy, cx]) + 1) % num_classes
    return {
        "move region": move_region(labels, a, 0, max(1, w // 5)),
        "enlarge region": scale_region(labels, a, 1.3),
        "add disc": add_disc(labels, cy, cx, h / 8, cls),
        "remove region": remove_region(labels, b),
    }


def dilate(mask: torch.Tensor, r: int = 2) -> torch.Tensor:
    return F.max_pool2d(mask[None, None].float(), 2 * r + 1, stride=1, padding=r)[0, 0] > 0


def rmse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float | None:
    if not mask.any():
        return None
    return float(((a - b) ** 2)[:, mask].mean().sqrt())


def colour_class_accuracy(generated, image, labels, p_target, region, num_classes) -> float | None:
    """Metric 3b: classify each generated pixel to the class with the nearest mean source colour."""
    if not region.any():
        return None
    means = torch.stack([image[:, labels == c].mean(1) if (labels == c).any() else torch.full((3,), 9.0)
                         for c in range(num_classes)])
    pix = generated[:, region].T
    pred = torch.cdist(pix, means).argmin(1)
    return float((pred == p_target[region]).float().mean())


def patch_distance(generated, image, p_target, p_source, k: int = 5) -> float:
    """Metric 4 (L49): for every k x k patch of I' (centre class c in P'), the RMS distance to the nearest
    k x k patch of I with centre class c, averaged. k = 5, not the training 3, so it is not the loss itself."""
    g_rows, g_cls = _patches(generated, p_target, k)
    s_rows, s_cls = _patches(image, p_source, k)
    total, n = 0.0, 0
    for c in g_cls.unique():
        gs, ss = g_rows[g_cls == c], s_rows[s_cls == c]
        if len(ss) == 0:
            continue
        d = torch.cdist(gs, ss, compute_mode="donot_use_mm_for_euclid_dist").min(1).values / math.sqrt(gs.shape[1])
        total += float(d.sum())
        n += len(gs)
    return total / max(n, 1)


def edit_metrics(generated, image, p_source, p_target, num_classes, oracle=None, segmenter=None) -> dict:
    """§8.5 metrics of one edit. C = {P' != P}, U = complement of C dilated by 2 px. Truth on U is the
    oracle when there is one, else the source image (the photo)."""
    from nbsyn.metrics.segmenter import segment

    C = p_target != p_source
    U = ~dilate(C, 2)
    truth = oracle if oracle is not None else image
    out = {"unchanged_rmse": rmse(generated, truth, U),
           "edit_rmse": rmse(generated, oracle, C) if oracle is not None else None,
           "patch_dist": patch_distance(generated, image, p_target, p_source),
           "colour_acc_edit": colour_class_accuracy(generated, image, p_source, p_target, C, num_classes),
           "seg_acc_edit": None, "seg_acc": None, "seg_miou": None}
    if segmenter is not None:
        pred = segment(segmenter, generated[None])[0]
        from nbsyn.metrics.miou import miou_and_accuracy

        out["seg_acc"] = float((pred == p_target).float().mean())
        out["seg_miou"] = miou_and_accuracy(pred, p_target, num_classes)["miou"]
        out["seg_acc_edit"] = float((pred[C] == p_target[C]).float().mean()) if C.any() else None
    return out


def random_scene_renders(n: int, h: int, w: int, seed: int = 0):
    """Oracle renders of ``n`` random layouts (0-3 balloons, random house) to train the evaluation
    segmenter on (§8.5): it never sees a generated image."""
    import numpy as np

    from nbsyn.data.single import render_scene

    rng = np.random.default_rng(seed)
    aspect = w / h
    imgs, labs = [], []
    for _ in range(n):
        balloons = tuple((float(rng.uniform(0.05, aspect - 0.05)), float(rng.uniform(0.08, 0.55)),
                          float(rng.uniform(0.05, 0.15))) for _ in range(int(rng.integers(0, 4))))
        bw = float(rng.uniform(0.2, 0.45))
        house = (float(rng.uniform(-0.1, aspect - 0.2)), float(rng.uniform(0.3, 0.55)), bw, bw * float(rng.uniform(0.6, 1.0)))
        img, lab = render_scene(h, w, balloons, house)
        imgs.append(img)
        labs.append(lab)
    return torch.stack(imgs), torch.stack(labs)


def resolved(diff: float, spread: float) -> str:
    """§8.5 rule: a difference of arm means is 'resolved' only if it exceeds 2x the seed std."""
    if spread is None or spread != spread:
        return "no seed spread"
    return "resolved" if abs(diff) > 2 * spread else "not resolved"


# --------------------------------------------------------------------------------------------- widget


class RegionEditPanel:
    """Paint (``nbsyn.widgets.MaskPainter`` logic) or move / scale / remove connected regions of the target
    map P', then regenerate I' = generate(P'). ``render()`` is [P' coloured | I'] for the static figure."""

    def __init__(self, labels: torch.Tensor, class_names, palette, generate, upscale: int = 4):
        from nbsyn.widgets import MaskPainter

        h, w = labels.shape
        self.painter = MaskPainter(labels, class_names, palette, generate, canvas_size=h * upscale)
        self.upscale, self.h, self.w = upscale, h, w

    @property
    def labels(self) -> torch.Tensor:
        return self.painter.labels

    def _set(self, labels: torch.Tensor) -> torch.Tensor:
        if labels.shape != (self.h, self.w) or labels.min() < 0 or labels.max() >= len(self.painter.class_names):
            raise ValueError(f"a target map must be ({self.h}, {self.w}) with ids in [0, {len(self.painter.class_names) - 1}]")
        self.painter.labels = labels.long()
        return self.painter.labels

    def regions(self) -> list[tuple[str, int]]:
        """(description, component id) of the current map's connected regions, largest first."""
        comps = connected_regions(self.labels)
        sizes = torch.bincount(comps.reshape(-1))
        out = []
        for cid in sizes.argsort(descending=True).tolist():
            cls = int(self.labels[comps == cid][0])
            out.append((f"{self.painter.class_names[cls]} #{cid} ({int(sizes[cid])} px)", cid))
        return out

    def _mask(self, cid: int) -> torch.Tensor:
        mask = connected_regions(self.labels) == cid
        if not mask.any():
            raise ValueError(f"no region {cid}")
        return mask

    def paint(self, points, cls: int, radius: float) -> torch.Tensor:
        """A stroke in canvas pixel (x, y) coordinates."""
        if not 0 <= cls < len(self.painter.class_names):
            raise ValueError(f"class id {cls} out of range [0, {len(self.painter.class_names) - 1}]")
        self.painter.cls, self.painter.radius = cls, radius
        return self.painter.paint(points)

    def move(self, cid: int, dy: int, dx: int) -> torch.Tensor:
        return self._set(move_region(self.labels, self._mask(cid), dy, dx))

    def scale(self, cid: int, factor: float) -> torch.Tensor:
        return self._set(scale_region(self.labels, self._mask(cid), factor))

    def remove(self, cid: int) -> torch.Tensor:
        return self._set(remove_region(self.labels, self._mask(cid)))

    def reset(self) -> None:
        self.painter.reset()

    def render(self) -> torch.Tensor:
        return self.painter.render()

    def widget(self):
        import ipywidgets as W
        from ipycanvas import Canvas

        from nbsyn.viz import colorize, to_numpy_image
        from nbsyn.widgets import png_bytes

        up = self.upscale
        canvas = Canvas(width=self.w * up, height=self.h * up)
        result = W.Image(value=png_bytes(self.painter.generate(self.labels).cpu(), up), format="png")
        cls = W.Dropdown(options=[(n, i) for i, n in enumerate(self.painter.class_names)], value=0, description="class")
        brush = W.FloatSlider(value=max(1.0, self.h / 16), min=0.5, max=self.h / 4, step=0.5, description="brush")
        region = W.Dropdown(options=self.regions(), description="region")
        dy = W.IntSlider(0, min=-self.h // 2, max=self.h // 2, description="dy")
        dx = W.IntSlider(0, min=-self.w // 2, max=self.w // 2, description="dx")
        factor = W.FloatSlider(1.0, min=0.5, max=2.0, step=0.1, description="scale")
        move_b, scale_b, remove_b = W.Button(description="move"), W.Button(description="scale"), W.Button(description="remove")
        reset_b = W.Button(description="reset")
        stroke: list = []

        def redraw():
            canvas.put_image_data((to_numpy_image(colorize(self.labels, self.painter.palette))
                                   .repeat(up, 0).repeat(up, 1) * 255).astype("uint8"), 0, 0)
            region.options = self.regions()
            result.value = png_bytes(self.painter.generate(self.labels).cpu(), up)  # regenerate (~tens of ms)

        def down(x, y):
            stroke[:] = [(x, y)]
            self.paint(stroke, cls.value, brush.value)

        def move(x, y):
            if stroke:
                self.paint([stroke[-1], (x, y)], cls.value, brush.value)
                stroke.append((x, y))

        def release(x, y):
            if stroke:
                stroke.clear()
                redraw()

        canvas.on_mouse_down(down)
        canvas.on_mouse_move(move)
        canvas.on_mouse_up(release)
        move_b.on_click(lambda _: (self.move(region.value, dy.value, dx.value), redraw()))
        scale_b.on_click(lambda _: (self.scale(region.value, factor.value), redraw()))
        remove_b.on_click(lambda _: (self.remove(region.value), redraw()))
        reset_b.on_click(lambda _: (self.reset(), redraw()))
        redraw()
        return W.VBox([W.HBox([cls, brush, reset_b]), W.HBox([region, remove_b]), W.HBox([dy, dx, move_b]),
                       W.HBox([factor, scale_b]), W.HBox([canvas, result])])


__all__ = [
    "PRESETS", "VARIANTS", "SemIAGenerator", "Encoder", "Decoder", "SFT", "SFTBranch", "PatchGAN",
    "FPSEDiscriminator", "AuxASPP", "standardize", "modulate", "translation_inputs", "patch_coherence_loss",
    "fixed_point_loss", "feature_matching", "lsgan_d", "lsgan_g", "progressive_augment", "make_semia_step",
    "train_semia", "train_spade", "image_analogies", "scene_edits", "render_scene_edits", "photo_edits",
    "connected_regions", "fill_vacated", "move_region", "scale_region", "remove_region", "edit_metrics",
    "patch_distance", "colour_class_accuracy", "count_parameters", "random_scene_renders", "check_pair",
    "RegionEditPanel",
]
