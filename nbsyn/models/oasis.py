"""OASIS: semantic image synthesis with only adversarial supervision (thesis ch. 4, app. A, B).

Line references ``Lnnnn`` point into ``sushko2024_thesis_oasis_sivgan_osmis_ssr.txt``.

- ``OASISGenerator``: the SPADE generator with the first residual block removed (L1095) and a 3D
  noise tensor concatenated to the one-hot label map at the first layer and at every SPADE layer
  (L1093). The noise can be resampled for the whole image, for one class or for any region.
- ``OASISDiscriminator``: a U-Net semantic segmenter with N+1 output classes per pixel; every pixel
  of a fake image belongs to the extra "fake" class (L1058). It never sees the label map.
- ``d_loss`` / ``g_loss``: the class-balanced (N+1)-class cross-entropy (Eq. 4.2, 4.3, 4.5).
- ``labelmix_mask`` / ``labelmix_loss``: the LabelMix consistency regulariser (Eq. 4.4).
- ``make_train_step``: one OASIS iteration (G step, then D step, then EMA), as in the official code.

Index conventions: classes are 0..N-1 and the fake class is index N (the paper's class N+1; the
official code puts fake at index 0 instead, which only changes bookkeeping). Layer widths and the
initialisation are not in the thesis (its appendices with the architecture are not in the text,
see specs/oasis.md); they follow the official code and are marked [CODE].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from nbsyn.nn.spade import SPADEResBlock, resize_nearest, upsample2x

# ---------------------------------------------------------------------------------------------
# Presets. Small presets change sizes and step counts, never the method.
# ---------------------------------------------------------------------------------------------

_COMMON = dict(
    z_dim=64,  # latent dimension M of the 3D noise (L1121)
    lr_g=1e-4,  # Adam learning rate of G (L1121)
    lr_d=4e-4,  # Adam learning rate of D (L1121)
    betas=(0.0, 0.999),  # Adam momenta (L1121)
    balance="paper",  # class weights alpha_c: "paper" = Eq. 4.3, "official" = code (alpha_c / K), "none"
    first_block=False,  # OASIS removes SPADE's first residual block (L1095)
    norm="batch",  # param-free norm inside SPADE: [CODE] sync batch norm
    lambda_fm=10.0,  # baseline only: feature matching weight ([CODE] NVlabs/SPADE lambda_feat)
    num_d=2,  # baseline only: two PatchGAN discriminators at two scales (L1050)
    amp=False,  # mixed precision (nbsyn.amp): True in gpu / paper (bf16, or fp16 + GradScaler on old GPUs)
)

PRESETS = {
    # every cell in well under a minute on one thread
    "smoke": dict(
        _COMMON, seed=0, iterations=6, image_size=32, batch_size=4, dataset="scenes", time_budget_s=None,
        hard_dataset="streets",
        aspect=1, n_train=32, n_test=8, num_res_blocks=3, channels_g=8, channels_d=8, spade_hidden=16,
        n_layers_d=2, ndf=8, lambda_labelmix=5.0, ema_decay=0.9, bn_batches=2, checkpoint_every=0,
        n_seeds=1, segmenter_steps=10, diversity_maps=2, diversity_samples=3, reference_n_test=8,
        reference_diversity_maps=2,
    ),
    # the default without CUDA: four variants x two seeds x 300 steps; the converged comparison comes
    # from the shipped reference models (nbsyn.pretrained: oasis_scenes64, spade_scenes64)
    "cpu": dict(
        _COMMON, seed=0, iterations=300, image_size=32, batch_size=8, dataset="scenes", time_budget_s=None,
        hard_dataset="streets",  # section 9b: OASIS vs SPADE+ D on the harder dataset too (issue 17)
        aspect=1, n_train=400, n_test=64, num_res_blocks=3, channels_g=16, channels_d=16, spade_hidden=32,
        n_layers_d=3, ndf=32, lambda_labelmix=5.0,
        ema_decay=0.98,  # 0.9999 averages over ~10k steps; a cpu run has a few hundred
        bn_batches=10, checkpoint_every=0,
        n_seeds=2, segmenter_steps=400, diversity_maps=8, diversity_samples=20,  # 20 per map (L1145)
        reference_n_test=128,  # test maps for evaluating the shipped 64 px reference models
        reference_diversity_maps=4,  # 64 px MS-SSIM over 190 pairs per map is most of section 10's time
    ),
    # about an hour on one GPU
    "gpu": dict(
        _COMMON, amp=True, seed=0, iterations=20000, image_size=128, batch_size=16, dataset="scenes",
        time_budget_s=None,
        hard_dataset="streets",
        aspect=1, n_train=4000, n_test=200, num_res_blocks=5, channels_g=32, channels_d=32, spade_hidden=64,
        n_layers_d=4, ndf=64, lambda_labelmix=5.0, ema_decay=0.999, bn_batches=50, checkpoint_every=2000,
        n_seeds=3, segmenter_steps=3000, diversity_maps=50, diversity_samples=20, reference_n_test=200,
        reference_diversity_maps=50,
    ),
    # the thesis setting on ADE20K (L1112-1121); other datasets: paper_settings(name)
    "paper": dict(
        _COMMON, amp=True, seed=42, iterations=126_200, image_size=256, batch_size=32, dataset="ade20k",
        time_budget_s=None,
        hard_dataset=None,  # ADE20K / Cityscapes / COCO-Stuff are the hard setting themselves
        aspect=1,  # width / height (2 for Cityscapes, 256 x 512)
        n_train=None, n_test=None,  # the whole train / validation split (20,210 / 2,000 images)
        num_res_blocks=6, channels_g=64, channels_d=64, spade_hidden=128,  # [CODE] widths
        n_layers_d=4, ndf=64,  # baseline PatchGAN ([CODE] NVlabs/SPADE)
        lambda_labelmix=5.0,  # L1121 (the official code uses 10 for ADE20K)
        ema_decay=0.9999,  # L1121
        bn_batches=50,  # [CODE] BN statistics of the EMA generator re-estimated on 50 batches
        checkpoint_every=5000, reference_n_test=0,  # no reference model at paper scale
        n_seeds=1, segmenter_steps=20_000,  # our U-Net stands in for UperNet101 / DRN / DeepLabV2 (L1123)
        diversity_maps=2000, diversity_samples=20,  # 20 samples per label map (L1145)
        reference_diversity_maps=0,
    ),
}

# Per-dataset settings of the thesis (L1112-1121) and the official code's label encoding [CODE].
# num_classes includes the "unlabelled / other" class 0, which gets weight 0 in the loss.
PAPER_DATASETS = {
    "ade20k": dict(num_classes=151, image_size=256, aspect=1, batch_size=32, epochs=200, train_images=20_210,
                   lambda_labelmix=5.0),
    "cityscapes": dict(num_classes=35, image_size=256, aspect=2, batch_size=20, epochs=200, train_images=2_975,
                       lambda_labelmix=5.0),
    "cocostuff": dict(num_classes=183, image_size=256, aspect=1, batch_size=32, epochs=100, train_images=118_287,
                      lambda_labelmix=10.0),
}

PAPER_TABLE_4_1 = {  # Table 4.1 (L1127-1141): OASIS and SPADE+ without VGG, FID / mIoU
    "ade20k": {"OASIS": (28.3, 48.8), "SPADE+ (no VGG)": (60.7, 21.0)},
    "cityscapes": {"OASIS": (47.7, 69.3), "SPADE+ (no VGG)": (61.4, 47.6)},
    "cocostuff": {"OASIS": (17.0, 44.1), "SPADE+ (no VGG)": (99.1, 16.1)},
}


def paper_settings(dataset: str) -> dict:
    """Overrides of the ``paper`` preset for one of the thesis's datasets (iterations from epochs)."""
    if dataset not in PAPER_DATASETS:
        raise ValueError(f"unknown paper dataset {dataset!r}; choose one of {', '.join(PAPER_DATASETS)}")
    s = PAPER_DATASETS[dataset]
    iterations = s["epochs"] * (s["train_images"] // s["batch_size"])
    return dict(dataset=dataset, image_size=s["image_size"], aspect=s["aspect"], batch_size=s["batch_size"],
                iterations=iterations, lambda_labelmix=s["lambda_labelmix"])


# ---------------------------------------------------------------------------------------------
# Initialisation [CODE]: Xavier-normal with gain 0.02 for every conv, biases zero.
# ---------------------------------------------------------------------------------------------

def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            weight = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
            nn.init.xavier_normal_(weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def sn_conv(cin: int, cout: int, kernel_size: int, bias: bool = True) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=bias))


def _as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


# ---------------------------------------------------------------------------------------------
# 3D noise (L1093): a 64-d vector per image, broadcast over H x W; resampled per class or region.
# ---------------------------------------------------------------------------------------------

def sample_noise(batch: int, z_dim: int, size: int | Sequence[int], generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Image-level 3D noise: z ~ N(0, I) of shape (B, M), replicated over every pixel -> (B, M, H, W)."""
    h, w = _as_hw(size)
    z = torch.randn(batch, z_dim, generator=generator, device=device)
    return z[:, :, None, None].expand(batch, z_dim, h, w).contiguous()


def resample_noise(noise: torch.Tensor, region: torch.Tensor, generator: torch.Generator | None = None,
                   z: torch.Tensor | None = None) -> torch.Tensor:
    """Local resampling (L1093, L1242): a new noise vector inside ``region`` (B, H, W) bool, per image.

    Pixels outside the region keep their noise. ``z`` (B, M) gives the new vectors explicitly.
    """
    if region.shape != (noise.shape[0], *noise.shape[-2:]):
        raise ValueError(f"region must have shape {(noise.shape[0], *noise.shape[-2:])}, got {tuple(region.shape)}")
    if z is None:
        z = torch.randn(noise.shape[0], noise.shape[1], generator=generator, device=noise.device)
    new = z[:, :, None, None].to(noise.dtype).expand_as(noise)
    return torch.where(region[:, None].to(noise.device), new, noise)


def resample_noise_for_class(noise: torch.Tensor, labels: torch.Tensor, cls: int,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """Resample the noise of every pixel of class ``cls`` (e.g. change only the bed of a bedroom)."""
    return resample_noise(noise, labels == cls, generator=generator)


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------

def generator_channels(channels: int, num_res_blocks: int) -> list[int]:
    """[CODE] widths c_0..c_n: c_k = channels * min(16, 2^(n-k)); block i maps c_i -> c_{i+1}.

    For channels=64 and 6 blocks: [1024, 1024, 1024, 512, 256, 128, 64].
    """
    return [channels * min(16, 2 ** (num_res_blocks - k)) for k in range(num_res_blocks + 1)]


class OASISGenerator(nn.Module):
    """SPADE generator with 3D noise (L1093) and without SPADE's first residual block (L1095).

    seg = concat(noise (M channels), one-hot labels (N channels))
    x   = conv3x3(seg resized to H / 2^(n-1))                    # first layer sees noise + labels
    x   = SPADEResBlock_i(x, seg), nearest x2 upsampling after every block but the last
    out = tanh(conv3x3(lrelu(x)))

    Args:
        num_classes: N, channels of the one-hot label map.
        z_dim: M (64 in the paper); 0 builds the generator without 3D noise.
        channels, num_res_blocks: [CODE] 64 and 6 for 256 px.
        first_block: add back SPADE's first residual block (96M instead of 72M params, L1095).
        spade_hidden: width of the SPADE embedding conv (128).
        norm: param-free norm in SPADE ("batch" as in the code, or "instance").
    """

    def __init__(self, num_classes: int, z_dim: int = 64, channels: int = 64, num_res_blocks: int = 6,
                 first_block: bool = False, spade_hidden: int = 128, norm: str = "batch"):
        super().__init__()
        if num_classes < 1 or z_dim < 0 or num_res_blocks < 1:
            raise ValueError("need num_classes >= 1, z_dim >= 0, num_res_blocks >= 1")
        self.num_classes, self.z_dim, self.num_res_blocks = num_classes, z_dim, num_res_blocks
        cond = z_dim + num_classes
        widths = generator_channels(channels, num_res_blocks)
        self.first_conv = nn.Conv2d(cond, widths[0], 3, padding=1)
        self.extra_block = SPADEResBlock(widths[0], widths[0], cond, spade_hidden, norm) if first_block else None
        self.blocks = nn.ModuleList(
            SPADEResBlock(widths[i], widths[i + 1], cond, spade_hidden, norm) for i in range(num_res_blocks)
        )
        self.to_rgb = nn.Conv2d(widths[-1], 3, 3, padding=1)
        init_weights(self)

    def start_size(self, size: tuple[int, int]) -> tuple[int, int]:
        factor = 2 ** (self.num_res_blocks - 1)
        if size[0] % factor or size[1] % factor:
            raise ValueError(f"label map size {tuple(size)} must be divisible by {factor} "
                             f"(2^(num_res_blocks-1) with num_res_blocks={self.num_res_blocks})")
        return size[0] // factor, size[1] // factor

    def forward(self, labels_onehot: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """labels_onehot: (B, N, H, W) float; noise: None (sampled), (B, M) or (B, M, H, W)."""
        if labels_onehot.dim() != 4 or labels_onehot.shape[1] != self.num_classes:
            raise ValueError(f"expected a one-hot label map of shape (B, {self.num_classes}, H, W), "
                             f"got {tuple(labels_onehot.shape)}")
        b, _, h, w = labels_onehot.shape
        if self.z_dim:
            if noise is None:
                noise = sample_noise(b, self.z_dim, (h, w), device=labels_onehot.device)
            elif noise.dim() == 2:
                noise = noise[:, :, None, None].expand(b, self.z_dim, h, w)
            if noise.shape != (b, self.z_dim, h, w):
                raise ValueError(f"noise must have shape {(b, self.z_dim, h, w)}, got {tuple(noise.shape)}")
            seg = torch.cat([noise.to(labels_onehot.dtype), labels_onehot], dim=1)  # noise first, as in the code
        else:
            seg = labels_onehot
        return self.synthesize(seg, seg)

    def synthesize(self, seg: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The decoder: ``seg`` (noise + labels) enters at the start size, ``cond`` modulates every SPADE
        layer (OASIS: the same tensor; CAT, notebook 06, adds the target map to ``cond``)."""
        x = self.first_conv(resize_nearest(seg, self.start_size(seg.shape[-2:])))
        if self.extra_block is not None:
            x = self.extra_block(x, cond)
        for i, block in enumerate(self.blocks):
            x = block(x, cond)
            if i < len(self.blocks) - 1:
                x = upsample2x(x)
        return torch.tanh(self.to_rgb(F.leaky_relu(x, 0.2)))


# ---------------------------------------------------------------------------------------------
# Discriminator: U-Net segmenter with N+1 classes (L1058)
# ---------------------------------------------------------------------------------------------

class DownBlock(nn.Module):
    """[CODE] residual down block: (lrelu) conv3x3 lrelu conv3x3 avgpool; shortcut conv1x1 + avgpool."""

    def __init__(self, fin: int, fout: int, first: bool = False):
        super().__init__()
        self.first = first
        self.conv1, self.conv2 = sn_conv(fin, fout, 3), sn_conv(fout, fout, 3)
        self.shortcut = sn_conv(fin, fout, 1) if (fin != fout or first) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.leaky_relu(x, 0.2)
        h = F.avg_pool2d(self.conv2(F.leaky_relu(self.conv1(h), 0.2)), 2)
        if self.first:  # the first block pools before its 1x1 conv
            s = self.shortcut(F.avg_pool2d(x, 2))
        else:
            s = F.avg_pool2d(self.shortcut(x) if self.shortcut is not None else x, 2)
        return h + s


class UpBlock(nn.Module):
    """[CODE] residual up block: lrelu upsample conv3x3 lrelu conv3x3; shortcut upsample (+ conv1x1)."""

    def __init__(self, fin: int, fout: int):
        super().__init__()
        self.conv1, self.conv2 = sn_conv(fin, fout, 3), sn_conv(fout, fout, 3)
        self.shortcut = sn_conv(fin, fout, 1) if fin != fout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = upsample2x(F.leaky_relu(x, 0.2))
        h = self.conv2(F.leaky_relu(self.conv1(up), 0.2))
        s = upsample2x(x)
        return h + (self.shortcut(s) if self.shortcut is not None else s)


def discriminator_channels(channels: int, num_res_blocks: int) -> list[int]:
    """[CODE] encoder widths: [2c, 2c, 4c, 4c, 8c, 8c] for channels=64 and 6 blocks."""
    return [channels * 2 * 2 ** (k // 2) for k in range(num_res_blocks)]


class OASISDiscriminator(nn.Module):
    """U-Net segmentation discriminator: image (B, 3, H, W) -> logits (B, N+1, H, W).

    The encoder is a ResNet of ``num_res_blocks`` down blocks; the decoder mirrors it with up blocks
    that take the previous decoder output concatenated with the encoder feature of the same size.
    Spectral norm on every conv except the final 1x1; no normalisation layers [CODE].
    """

    def __init__(self, num_classes: int, channels: int = 64, num_res_blocks: int = 6):
        super().__init__()
        self.num_classes, self.num_res_blocks = num_classes, num_res_blocks
        enc = discriminator_channels(channels, num_res_blocks)
        self.encoder = nn.ModuleList(
            DownBlock(3 if i == 0 else enc[i - 1], enc[i], first=(i == 0)) for i in range(num_res_blocks)
        )
        dec_out = [enc[i - 1] if i > 0 else channels for i in reversed(range(num_res_blocks))]
        self.decoder = nn.ModuleList(
            UpBlock(enc[-1] if k == 0 else 2 * enc[num_res_blocks - 1 - k], dec_out[k]) for k in range(num_res_blocks)
        )
        self.to_logits = nn.Conv2d(channels, num_classes + 1, 1)  # N real classes + "fake"
        init_weights(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        factor = 2 ** self.num_res_blocks
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] % factor or images.shape[3] % factor:
            raise ValueError(f"expected images (B, 3, H, W) with H, W divisible by {factor}, got {tuple(images.shape)}")
        skips, x = [], images
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = self.decoder[0](skips[-1])
        for k in range(1, self.num_res_blocks):
            x = self.decoder[k](torch.cat([skips[-1 - k], x], dim=1))
        return self.to_logits(x)


def build_generator(cfg, num_classes: int) -> OASISGenerator:
    """The generator of a preset (``cfg`` maps the PRESETS keys)."""
    return OASISGenerator(num_classes, cfg["z_dim"], cfg["channels_g"], cfg["num_res_blocks"], cfg["first_block"],
                          cfg["spade_hidden"], cfg["norm"])


def build_discriminator(cfg, num_classes: int) -> OASISDiscriminator:
    """The OASIS discriminator of a preset: as many U-Net levels as the generator has blocks."""
    return OASISDiscriminator(num_classes, cfg["channels_d"], cfg["num_res_blocks"])


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------
# Losses: class-balanced (N+1)-class cross-entropy, Eq. 4.2, 4.3, 4.5
# ---------------------------------------------------------------------------------------------

BALANCE_MODES = ("paper", "official", "none")


def class_weights(labels: torch.Tensor, num_classes: int, mode: str = "paper",
                  dontcare: int | None = None) -> torch.Tensor:
    """alpha_c for every class, computed on the batch ``labels`` (B, H, W) of class ids.

    paper (Eq. 4.3, L1073): alpha_c = H*W / E_t[#pixels of class c] = B*H*W / n_c
    official [CODE]:        alpha_c = B*H*W / (K * n_c), K = number of classes present in the batch
    none:                   alpha_c = 1 (the unbalanced N+1 loss of Table 4.10)
    Classes absent from the batch get 0; so does ``dontcare`` (ADE20K "other", COCO "unlabelled").
    """
    if mode not in BALANCE_MODES:
        raise ValueError(f"unknown class balancing {mode!r}; choose one of {BALANCE_MODES}")
    counts = torch.bincount(labels.reshape(-1), minlength=num_classes)[:num_classes].to(torch.float32)
    if dontcare is not None:
        counts[dontcare] = 0
    if mode == "none":
        alpha = torch.ones(num_classes)
        if dontcare is not None:
            alpha[dontcare] = 0
        return alpha.to(labels.device)
    present = counts > 0
    alpha = torch.where(present, labels.numel() / counts.clamp(min=1), torch.zeros_like(counts))
    if mode == "official":
        alpha = alpha / present.sum().clamp(min=1)
    return alpha.to(labels.device)


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """(1 / BHW) * sum_{b,i,j} alpha_{t_bij} * (-log softmax(logits)_{b, t_bij, i, j})."""
    ce = F.cross_entropy(logits, labels, reduction="none")  # (B, H, W): -log D(x)_{i,j,t_ij}
    return (alpha[labels] * ce).mean()


def fake_ce(logits: torch.Tensor) -> torch.Tensor:
    """(1 / BHW) * sum -log D(G(z,t))_{i,j,N+1}: every pixel of a fake image is "fake" (index N)."""
    fake_class = torch.full((logits.shape[0], *logits.shape[-2:]), logits.shape[1] - 1,
                            dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, fake_class)


def d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, labels: torch.Tensor,
           alpha: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 4.2 divided by H*W (a constant factor): class-balanced real term + unweighted fake term."""
    real = weighted_ce(logits_real, labels, alpha)  # first term of Eq. 4.2 (weights alpha_c)
    fake = fake_ce(logits_fake)  # second term of Eq. 4.2 (no weights)
    return real + fake, {"d_real": real.item(), "d_fake": fake.item()}


def g_loss(logits_fake: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Eq. 4.5 divided by H*W: G wants each fake pixel classified as its label's class."""
    return weighted_ce(logits_fake, labels, alpha)


def d_segmentation(logits: torch.Tensor) -> torch.Tensor:
    """D as a segmenter (L1244): argmax over the N real-class channels only."""
    return logits[:, :-1].argmax(dim=1)


# ---------------------------------------------------------------------------------------------
# LabelMix, Eq. 4.4
# ---------------------------------------------------------------------------------------------

def labelmix_mask(labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary mask M (B, 1, H, W) that follows the label map (L1077, L1081).

    One fair coin per class present in the batch: all pixels of class c (in every image of the
    batch, as in the official code) come from the real image if the coin shows 1, else from the fake.
    """
    coins = torch.randint(0, 2, (int(labels.max()) + 1,), generator=generator).to(labels.device)
    return coins[labels].unsqueeze(1).to(torch.float32)


def labelmix(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LabelMix(a, b, M) = M * a + (1 - M) * b   (L1077)."""
    return mask * a + (1 - mask) * b


def labelmix_loss(logits_mixed: torch.Tensor, logits_real: torch.Tensor, logits_fake: torch.Tensor,
                  mask: torch.Tensor) -> torch.Tensor:
    """Eq. 4.4: || D_logits(LabelMix(x, x_hat, M)) - LabelMix(D_logits(x), D_logits(x_hat), M) ||^2.

    Taken as the mean over all B*(N+1)*H*W entries (the code's MSE): the literal sum would be
    (N+1)*H*W times larger than the CE terms it is added to, which lambda_LM = 5 would not balance.
    D(x) and D(x_hat) are not detached, so the regulariser shapes both sides (as in the code).
    """
    return F.mse_loss(logits_mixed, labelmix(logits_real, logits_fake, mask))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) class ids -> (B, N, H, W) float one-hot, with a clear error for bad ids."""
    if labels.dtype != torch.long:
        raise ValueError(f"labels must be torch.long class ids, got {labels.dtype}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"label ids must be in [0, {num_classes - 1}], got [{int(labels.min())}, {int(labels.max())}]")
    return F.one_hot(labels, num_classes).permute(0, 3, 1, 2).to(torch.float32)


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def make_train_step(G: OASISGenerator, D: OASISDiscriminator, opt_g: torch.optim.Optimizer,
                    opt_d: torch.optim.Optimizer, sample_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
                    *, lambda_labelmix: float = 5.0, balance: str = "paper", dontcare: int | None = None,
                    ema=None, noise_generator: torch.Generator | None = None,
                    precision=None, shard: slice | None = None) -> Callable[[int], dict]:
    """One OASIS iteration as in the official code: G step, D step (1:1), then the EMA update.

    ``sample_batch()`` returns (images in [-1, 1] (B, 3, H, W), labels (B, H, W) long).
    ``lambda_labelmix=0`` trains OASIS without LabelMix. ``precision`` (``nbsyn.amp.Precision``) runs
    the forward passes under autocast and scales the losses in fp16; None = fp32.

    Data parallel (``nbsyn.distributed``): G and D may be DistributedDataParallel wrappers and
    ``shard`` this process's slice of the global batch that ``sample_batch()`` returns on every
    process. The class weights, LabelMix coins and noise are drawn for the global batch (so one step
    equals a single-process step on it); the forward / backward passes see only the slice.
    """
    from nbsyn.amp import Precision
    from nbsyn.distributed import unwrap

    G_raw, D_raw = unwrap(G), unwrap(D)  # the G step back-propagates through D without syncing D
    num_classes, z_dim = G_raw.num_classes, G_raw.z_dim
    prec = precision or Precision(False)
    part = shard or slice(None)

    def noise(batch: int, size, device) -> torch.Tensor:
        z = torch.randn(batch, z_dim, generator=noise_generator, device=device)[part]  # as sample_noise
        return z[:, :, None, None].expand(z.shape[0], z_dim, *size).contiguous()

    def step(_: int) -> dict[str, float]:
        real_all, labels_all = sample_batch()
        alpha = class_weights(labels_all, num_classes, balance, dontcare)  # Eq. 4.3, per (global) batch
        real, labels = real_all[part], labels_all[part]
        onehot = one_hot(labels, num_classes)
        batch, (b, _, h, w) = real_all.shape[0], real.shape

        # G step: Eq. 4.5, the generator's only loss
        set_requires_grad(D_raw, False)
        with prec.autocast():
            fake = G(onehot, noise(batch, (h, w), real.device))
            loss_g = g_loss(D_raw(fake).float(), labels, alpha)
        opt_g.zero_grad(set_to_none=True)
        prec.backward(loss_g)
        prec.step(opt_g)
        set_requires_grad(D_raw, True)

        # D step: Eq. 4.2 (+ lambda_LM * Eq. 4.4), with a new fake made without gradients to G
        with torch.no_grad(), prec.autocast():
            fake = G(onehot, noise(batch, (h, w), real.device))
        fake = fake.to(real.dtype)
        inputs = [fake, real]
        if lambda_labelmix > 0:
            mask = labelmix_mask(labels_all, noise_generator)[part]  # coins per class of the global batch
            inputs.append(labelmix(real, fake, mask))
        with prec.autocast():
            logits = D(torch.cat(inputs)).float().split(b)  # one forward pass over fake, real (and mixed)
        loss_d, parts = d_loss(logits[1], logits[0], labels, alpha)
        if lambda_labelmix > 0:
            loss_lm = labelmix_loss(logits[2], logits[1], logits[0], mask)
            loss_d = loss_d + lambda_labelmix * loss_lm
            parts["labelmix"] = loss_lm.item()
        opt_d.zero_grad(set_to_none=True)
        prec.backward(loss_d)
        prec.step(opt_d)
        prec.update()
        if ema is not None:
            ema.update(G_raw)
        return {"loss_g": loss_g.item(), "loss_d": loss_d.item(), **parts}

    return step


@torch.no_grad()
def generate(G: nn.Module, labels: torch.Tensor, num_classes: int, noise: torch.Tensor | None = None,
             batch_size: int = 32) -> torch.Tensor:
    """Images for label maps (B, H, W), in batches, with G in its current mode."""
    out = []
    for i in range(0, labels.shape[0], batch_size):
        chunk = noise[i:i + batch_size] if noise is not None else None
        out.append(G(one_hot(labels[i:i + batch_size], num_classes), chunk))
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# One training run of a variant, as the notebook's experiment uses it
# ---------------------------------------------------------------------------------------------

# The discriminator set-ups of the notebook's experiment; all train the same generator.
VARIANTS = {
    "OASIS": dict(discriminator="oasis", labelmix=True),  # N+1 U-Net D + LabelMix (Eqs. 4.2-4.5)
    "OASIS w/o LabelMix": dict(discriminator="oasis", labelmix=False),  # lambda_LM = 0
    "SPADE+ D": dict(discriminator="patch", feature_matching=False),  # the thesis's SPADE+ w/o VGG (L1151)
    "SPADE D + FM": dict(discriminator="patch", feature_matching=True),  # NVlabs/SPADE: + lambda_FM = 10
}


@dataclass
class Run:
    """A trained variant: live and EMA generator, discriminator, loss history."""

    variant: str
    seed: int
    G: nn.Module
    D: nn.Module
    ema: object
    history: object


def recalibrate_ema(run: Run, dataset, cfg, num_classes: int, seed: int = 0) -> None:
    """[CODE] Re-estimate the EMA generator's batch-norm statistics on ``bn_batches`` training batches.

    The EMA weights never produced the BN statistics copied from the live model; the official code
    therefore runs the EMA generator in train mode on 50 batches before every evaluation.
    """
    device = next(run.G.parameters()).device
    batches = dataset.batches(cfg["batch_size"], torch.Generator().manual_seed(seed))
    run.ema.recalibrate_bn(lambda m: m(one_hot(next(batches)[1].to(device), num_classes)), cfg["bn_batches"])


def train_variant(cfg, variant: str, train_set, seed: int, *, dontcare: int | None = None, device="cpu",
                  ckpt_path=None, progress: bool = True, distributed: bool = False) -> Run:
    """Train one variant of ``VARIANTS`` from scratch for ``cfg["iterations"]`` steps.

    "OASIS": N+1 segmentation D + LabelMix; "OASIS w/o LabelMix": lambda_LM = 0; "SPADE+ D":
    multi-scale PatchGAN on image + labels with the hinge loss only (the thesis's SPADE+ without VGG);
    "SPADE D + FM": the same plus feature matching (lambda_FM from ``cfg``, 10 in NVlabs/SPADE). Same
    generator, optimiser, EMA, data order and number of steps for all. ``cfg["time_budget_s"]`` is
    only a guard against a stuck run: a run it cuts has ``history.stopped_by_budget`` set.
    ``distributed=True``: data-parallel over the process group (``python -m nbsyn.launch``); only rank 0
    writes the checkpoint.
    """
    from nbsyn.train import fit

    step, objects = variant_trainer(cfg, variant, train_set, seed, dontcare=dontcare, device=device,
                                    distributed=distributed)
    history = fit(step, cfg["iterations"], objects, ckpt_path=ckpt_path, ckpt_every=cfg["checkpoint_every"],
                  time_budget_s=cfg["time_budget_s"], desc=f"{variant}, seed {seed}", progress=progress)
    return Run(variant, seed, objects["G"], objects["D"], objects["ema"], history)


def variant_trainer(cfg, variant: str, train_set, seed: int, *, dontcare: int | None = None, device="cpu",
                    distributed: bool = False):
    """The step function of one variant and the objects ``nbsyn.train.fit`` checkpoints
    (G, D, optimisers, EMA and the batch stream), built from scratch with ``seed``.

    ``distributed=True`` (OASIS variants, inside an initialised process group): G's batch norms become
    synchronised batch norm (as in the official code), G and D are wrapped in DistributedDataParallel
    and every process trains on its slice of the same global batch (``cfg["batch_size"]``); the
    checkpointed objects are the unwrapped modules, so a checkpoint resumes in a single process."""
    from nbsyn import distributed as dist
    from nbsyn.amp import Precision
    from nbsyn.models.spade_baseline import build_baseline_discriminator, make_baseline_step
    from nbsyn.train import EMA

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {list(VARIANTS)}")
    setup = VARIANTS[variant]
    num_classes = train_set.num_classes
    if distributed and setup["discriminator"] == "patch":
        raise ValueError("distributed training is implemented for the OASIS variants, not the SPADE-style D")
    torch.manual_seed(seed)
    G = build_generator(cfg, num_classes).to(device)
    if distributed:
        dist.convert_sync_batchnorm(G)  # [CODE] the official G uses synchronised batch norm
    if setup["discriminator"] == "patch":
        D = build_baseline_discriminator(cfg, num_classes).to(device)
    else:
        D = build_discriminator(cfg, num_classes).to(device)
    betas = tuple(cfg["betas"])
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg["lr_g"], betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg["lr_d"], betas=betas)
    ema = EMA(G, cfg["ema_decay"])
    batches = train_set.batches(cfg["batch_size"], torch.Generator().manual_seed(seed))

    def sample_batch():
        images, labels = next(batches)
        return images.to(device), labels.to(device)

    prec = Precision(cfg.get("amp", False), device)
    if setup["discriminator"] == "patch":
        lambda_fm = cfg["lambda_fm"] if setup["feature_matching"] else 0.0
        step = make_baseline_step(G, D, opt_g, opt_d, sample_batch, lambda_fm=lambda_fm, ema=ema, precision=prec)
    else:
        lam = cfg["lambda_labelmix"] if setup["labelmix"] else 0.0
        G_run, D_run = (dist.wrap(G, torch.device(device)), dist.wrap(D, torch.device(device))) if distributed \
            else (G, D)
        step = make_train_step(G_run, D_run, opt_g, opt_d, sample_batch, lambda_labelmix=lam,
                               balance=cfg["balance"], dontcare=dontcare, ema=ema, precision=prec,
                               shard=dist.shard(cfg["batch_size"]) if distributed else None)
    objects = {"G": G, "D": D, "opt_g": opt_g, "opt_d": opt_d, "ema": ema, "batches": batches}
    if prec.scaler is not None:  # fp16: the loss scale resumes with the run
        objects["amp"] = prec
    return step, objects
