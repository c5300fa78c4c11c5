"""OSMIS: one-shot synthesis of images and segmentation masks (Sushko, thesis ch. 6 / WACV'23).

OSMIS is SIV-GAN (notebook 02, ``nbsyn.models.sivgan``) with two additions:

1. a **mask synthesis branch** in the generator: a 3x3 convolution on the features of the last
   generator block, then a softmax over the N mask channels (N-1 objects + background) [L1711];
2. **masked content attention** (MCA) in the discriminator: the content branch sees one vector per
   object, pooled from the low-level features inside that object's mask (Eq. 6.4), and classifies it
   into N identities + 1 "fake" class (Eq. 6.5) with class-balancing weights (Eq. 6.6) [L1723-1741].

Between the two sits ``mask_argmax`` (Eq. 6.2): the discriminator sees *hard* one-hot masks, the
generator receives straight-through gradients; during the first ``P_0`` iterations the hard mask is
sampled (Eq. 6.3) instead of taken by argmax.

Line references [Lxxxx] point into ``papers/sushko2024_thesis_oasis_sivgan_osmis_ssr.txt``.
Everything that is not new in OSMIS (generator and discriminator blocks, diversity regularisation,
feature augmentation, differentiable augmentation) is imported from notebook 02's modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------
# Eq. 6.2 / 6.3: MaskArgmax, the straight-through hard mask
# ---------------------------------------------------------------------------------------------

WARMUP_SAMPLINGS = ("bernoulli", "categorical")


def one_hot_argmax(soft: torch.Tensor) -> torch.Tensor:
    """T(y) = one-hot of argmax over the channel axis (dim 1) of a (B, N, H, W) map."""
    index = soft.argmax(dim=1)
    return F.one_hot(index, soft.shape[1]).permute(0, 3, 1, 2).to(soft.dtype)


def sample_hard_mask(soft: torch.Tensor, sampling: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """T(y) ~ Bernoulli(y) of Eq. 6.3, used during the warm-up phase.

    ``"bernoulli"`` samples every channel of every pixel independently from Bernoulli(y), as the
    text writes and the official code does (probabilities clamped to [0.001, 0.999]); the result is
    binary but a pixel may carry zero or several classes. ``"categorical"`` samples one class per
    pixel from Categorical(y), the multi-class reading of "each mask pixel [is] a random variable";
    its result is a valid one-hot map.
    """
    if sampling == "bernoulli":
        probs = soft.detach().clamp(0.001, 0.999)
        return torch.bernoulli(probs, generator=generator)
    if sampling == "categorical":
        b, n, h, w = soft.shape
        probs = soft.detach().permute(0, 2, 3, 1).reshape(-1, n).clamp_min(1e-8)
        index = torch.multinomial(probs, 1, generator=generator).view(b, h, w)
        return F.one_hot(index, n).permute(0, 3, 1, 2).to(soft.dtype)
    raise ValueError(f"unknown warm-up sampling {sampling!r}; choose one of {', '.join(WARMUP_SAMPLINGS)}")


def straight_through(soft: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """MaskArgmax(y) = y + T(y) - sg[y] (Eq. 6.2).

    Written as T(y) + (y - sg[y]) so that the forward value is *exactly* T(y) (y - y == 0 in floating
    point, while (y + T) - y may round), and the gradient with respect to y is the identity.
    """
    return hard + (soft - soft.detach())


def mask_argmax(
    soft: torch.Tensor,
    warmup: bool = False,
    sampling: str = "bernoulli",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The hard mask that the discriminator sees, with straight-through gradients to ``soft``.

    ``soft`` is the (B, N, H, W) softmax output of the mask head. With ``warmup=True`` (iteration
    < P_0, Eq. 6.3) the hard mask is sampled, otherwise it is the one-hot argmax.
    """
    if soft.dim() != 4:
        raise ValueError(f"mask_argmax expects a (B, N, H, W) probability map, got shape {tuple(soft.shape)}")
    hard = sample_hard_mask(soft, sampling, generator) if warmup else one_hot_argmax(soft)
    return straight_through(soft, hard)


def in_warmup(step: int, p0: int) -> bool:
    """Eq. 6.3: sample while ``epoch < P_0``; the official code counts iterations as epochs."""
    return step < p0


class MaskHead(nn.Module):
    """The mask synthesis branch [L1711]: Conv3x3(C -> N) + softmax over the N channels.

    The official code uses a plain convolution (no spectral norm); ``spectral_norm=True`` is offered
    because the text does not say.
    """

    def __init__(self, in_channels: int, num_classes: int, spectral_norm: bool = False):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a mask needs at least 2 channels (background + one object), got {num_classes}")
        conv = nn.Conv2d(in_channels, num_classes, kernel_size=3, padding=1)
        self.conv = nn.utils.spectral_norm(conv) if spectral_norm else conv
        self.num_classes = num_classes

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.conv(features), dim=1)


# ---------------------------------------------------------------------------------------------
# Eq. 6.4 / 6.6: masked content attention and class balancing
# ---------------------------------------------------------------------------------------------

MCA_NORMALIZATIONS = ("map", "area")


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Downsample a (B, N, H, W) one-hot mask to ``size`` by nearest neighbour.

    Nearest keeps every pixel one-hot (bilinear would blend classes) and is differentiable, so the
    straight-through gradient reaches the generator's mask.
    """
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask, size=size, mode="nearest")


def masked_content_attention(features: torch.Tensor, mask: torch.Tensor, normalize: str = "map") -> torch.Tensor:
    """MCA(x, y) = { AvgPool(F(x) * 1[y = i]) }_{i=1..N} (Eq. 6.4) -> (B, N, C).

    ``features`` is F(x) = D_low-level(x), (B, C, h, w); ``mask`` is a (B, N, H, W) one-hot mask,
    resized here to (h, w) by nearest neighbour [L1727]. ``normalize="map"`` averages over the whole
    map, as Eq. 6.4 is written and the official code does (the vector shrinks with the object's
    area); ``"area"`` divides by the object's area instead (a masked mean; empty objects give 0).
    """
    if normalize not in MCA_NORMALIZATIONS:
        raise ValueError(f"unknown MCA normalization {normalize!r}; choose one of {', '.join(MCA_NORMALIZATIONS)}")
    if features.dim() != 4 or mask.dim() != 4 or features.shape[0] != mask.shape[0]:
        raise ValueError(
            f"MCA expects features (B, C, h, w) and mask (B, N, H, W) with the same B, "
            f"got {tuple(features.shape)} and {tuple(mask.shape)}"
        )
    m = resize_mask(mask, features.shape[-2:])
    # (B, 1, C, h, w) * (B, N, 1, h, w) summed over space -> (B, N, C)
    pooled_sum = torch.einsum("bchw,bnhw->bnc", features, m)
    if normalize == "map":
        return pooled_sum / (features.shape[-1] * features.shape[-2])
    area = m.sum(dim=(2, 3)).unsqueeze(-1)  # (B, N, 1)
    return pooled_sum / area.clamp_min(1.0)


def class_balance_weights(mask: torch.Tensor) -> torch.Tensor:
    """alpha_i = (sum 1[y=i])^-1 / sum_j (sum 1[y=j])^-1 (Eq. 6.6), per image -> (B, N).

    Classes absent from an image get weight 0 (their inverse count is undefined); the present ones
    sum to 1. The counts are taken from the hard mask without gradient.
    """
    counts = mask.detach().sum(dim=(2, 3))  # (B, N)
    inverse = torch.where(counts > 0, 1.0 / counts.clamp_min(1e-12), torch.zeros_like(counts))
    total = inverse.sum(dim=1, keepdim=True)
    return inverse / total.clamp_min(1e-12)


# ---------------------------------------------------------------------------------------------
# Eq. 6.5: the object discriminator loss, with its fake term read as intended
# ---------------------------------------------------------------------------------------------


def object_loss_real(logits: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """-E[ sum_i alpha_i log D^i_object(MCA^i(x, y)) ] (first term of Eq. 6.5).

    ``logits`` is (B, N, N+1): for every image b and object i, the logits of N identities + fake.
    Object i's target is identity i.
    """
    b, n, k = logits.shape
    if k != n + 1:
        raise ValueError(f"object logits need N+1 = {n + 1} classes for N = {n} objects, got {k}")
    log_p = torch.log_softmax(logits, dim=-1)
    identity = torch.arange(n, device=logits.device)
    log_p_true = log_p[:, identity, identity]  # (B, N): log D^i(MCA^i)
    return -(alpha * log_p_true).sum(dim=1).mean()


def object_loss_fake(logits: torch.Tensor) -> torch.Tensor:
    """Every object vector of a generated pair must be classified as "fake" (class N).

    Eq. 6.5 prints this term as -E sum_i log(1 - D^fake(MCA^i(G(z)))), which a minimising D would
    satisfy by driving D^fake -> 0 on fakes, the opposite of the text around it [L1733-1735]. We
    implement the intended (N+1)-way cross-entropy with target "fake", as the official code does, and
    average over the N vectors (the code's unweighted cross-entropy mean) so that the fake term has
    the same scale as the alpha-weighted real term, whose weights sum to 1.
    """
    b, n, k = logits.shape
    log_p = torch.log_softmax(logits, dim=-1)
    return -log_p[..., n].mean()


def object_loss_generator(logits: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """G's object loss (not written in the text; official code): each generated region i should be
    classified as identity i, weighted by Eq. 6.6 computed on the generated mask."""
    return object_loss_real(logits, alpha)


# ---------------------------------------------------------------------------------------------
# The OSMIS generator and discriminator: SIV-GAN's classes plus the two additions
# ---------------------------------------------------------------------------------------------

from dataclasses import dataclass  # noqa: E402

from nbsyn.models import sivgan  # noqa: E402
from nbsyn.nn.heads import MultiHeadD, per_block_bce, sn  # noqa: E402
from nbsyn.train import GeneratorState  # noqa: E402

MASK_SUPERVISIONS = ("mca", "concat", "none")  # Table 6.3: MCA (ours), input concatenation, none


@dataclass
class OSMISOutput(sivgan.GeneratorOutput):
    """SIV-GAN's generator output plus ``soft_mask``: the (B, N, H, W) softmax map y of [L1711]."""

    soft_mask: torch.Tensor | None = None


class OSMISGenerator(sivgan.Generator):
    """SIV-GAN's generator with the mask synthesis branch on the features of its last block [L1711].

    The mask head reads the last block's features directly, as the last RGB head does ([CODE]: no
    activation in between); ``mask_spectral`` spectrally normalises it (the official code does not).
    """

    def __init__(self, num_classes: int, mask_spectral: bool = False, **generator_kwargs):
        super().__init__(**generator_kwargs)
        self.num_classes = num_classes
        self.mask_head = MaskHead(self.channels[-1], num_classes, spectral_norm=mask_spectral)
        sivgan._init_weights(self.mask_head)

    def forward(self, z: torch.Tensor) -> OSMISOutput:
        out = super().forward(z)
        soft = self.mask_head(out.last_features)
        return OSMISOutput(images=out.images, features=out.features, last_features=out.last_features,
                           soft_mask=soft)


class ClassHead(nn.Module):
    """A 1x1 (spectral-norm) convolution from features to ``num_outputs`` logits (N identities + fake)."""

    def __init__(self, in_channels: int, num_outputs: int, spectral: bool = True):
        super().__init__()
        self.conv = sn(nn.Conv2d(in_channels, num_outputs, kernel_size=1), spectral)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(h)


@dataclass
class OSMISDOutput(sivgan.DOutput):
    """SIV-GAN's per-part logits plus ``objects``: per object-branch block, (B, N, N+1) logits."""

    objects: list[torch.Tensor] | None = None


class OSMISDiscriminator(sivgan.ContentLayoutDiscriminator):
    """SIV-GAN's content-layout discriminator, given the mask in one of three ways (Table 6.3).

    * ``"mca"`` (OSMIS): the content branch becomes D_object. Its blocks (SIV-GAN's 1x1 content blocks)
      process the N masked content vectors of Eq. 6.4 as a batch of B*N, and every block ends in an
      (N+1)-way head instead of a real/fake head [L1723-1741]. Low-level and layout parts unchanged.
    * ``"concat"``: the one-hot mask is concatenated to the image at every MSG scale [L1798]; all of
      SIV-GAN is unchanged otherwise.
    * ``"none"``: plain SIV-GAN; the mask is ignored (the "None" row of Table 6.3).

    ``branch_width`` multiplies the width between the content blocks: the outputs of every content block
    but the last ([CODE] doubles them with masks; the text gives no widths). ``layout_squeeze`` and
    ``msg_kernel`` as in SIV-GAN (``**sivgan.OFFICIAL_D`` = the authors' layers).
    """

    def __init__(self, num_classes: int, supervision: str = "mca", num_blocks: int = 7, num_low: int = 4,
                 base_channels: int = 32, branch_width: int = 2, layout_squeeze: str = "conv1x1",
                 msg_kernel: int = 1, mca_normalize: str = "map", spectral: bool = True):
        if supervision not in MASK_SUPERVISIONS:
            raise ValueError(f"unknown mask supervision {supervision!r}; choose one of {', '.join(MASK_SUPERVISIONS)}")
        channels = [m * base_channels for m in sivgan.D_MULTIPLIERS[:num_blocks + 1]]
        # c[num_low] = F(x) and c[num_blocks] = the last content block's output keep their width
        channels = [c * branch_width if num_low < i < num_blocks else c for i, c in enumerate(channels)]
        in_channels = 3 + num_classes if supervision == "concat" else 3
        super().__init__(in_channels=in_channels, num_blocks=num_blocks, num_low=num_low, channels=channels,
                         branches="content_layout", layout_squeeze=layout_squeeze, msg_kernel=msg_kernel,
                         spectral=spectral)
        self.num_classes, self.supervision, self.mca_normalize = num_classes, supervision, mca_normalize
        if supervision == "mca":  # D_object: same blocks as D_content, (N+1)-way heads
            branch_ch = channels[num_low:]
            self.content.heads = nn.ModuleList(ClassHead(c, num_classes + 1, spectral) for c in branch_ch[1:])
            sivgan._init_weights(self.content.heads)

    def _levels(self, images, mask: torch.Tensor | None) -> list[torch.Tensor]:
        levels = sivgan.image_pyramid(images, self.num_low) if torch.is_tensor(images) else list(images)
        if self.supervision == "concat":  # the mask, resized by nearest neighbour, joins every scale
            levels = [torch.cat([x, resize_mask(mask, x.shape[-2:])], dim=1) for x in levels]
        return levels

    def object_branch(self, features: torch.Tensor, mask: torch.Tensor, augment: bool = False, p: float = 0.4,
                      generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """D_object(MCA(x, y)) at every block: a list of (B, N, N+1) logits."""
        vectors = masked_content_attention(features, mask, self.mca_normalize)  # (B, N, C), Eq. 6.4
        if augment:  # content FA on the background vector only ([CODE]; the text does not say)
            background = sivgan.content_feature_augmentation(vectors[:, 0, :, None, None], p, generator)
            vectors = torch.cat([background[:, None, :, 0, 0], vectors[:, 1:]], dim=1)
        b, n, c = vectors.shape
        logits, _ = self.content(vectors.reshape(b * n, c, 1, 1))
        return [lg.view(b, n, -1) for lg in logits]

    def forward(self, images, mask: torch.Tensor | None = None, augment: bool = False, p_fa: float = 0.4,
                generator: torch.Generator | None = None) -> OSMISDOutput:
        """``images``: a batch or MSG list (fine -> coarse); ``mask``: (B, N, H, W) one-hot (hard) mask."""
        if self.supervision != "none" and mask is None:
            raise ValueError(f"the {self.supervision!r} discriminator needs the mask")
        features, low = self.low_level(self._levels(images, mask))
        out = OSMISDOutput(low=low, features=features)
        if self.supervision == "mca":
            out.objects = self.object_branch(features, mask, augment, p_fa, generator)
        else:
            out.content = self.content_branch(features, augment, p_fa, generator)
        out.layout = self.layout_branch(features, augment, p_fa, generator)
        return out


def discriminator_loss_parts(out: OSMISDOutput, real: bool, alpha: torch.Tensor | None,
                             normalisation: str = "paper", generator_step: bool = False):
    """Eq. 6.1 with the content term replaced by Eq. 6.5 when D has an object branch.

    Low-level and layout (and content, without MCA) use SIV-GAN's :func:`sivgan.adversarial_loss`. The
    object term is the mean over object-branch blocks (Eq. 5.1) of: the alpha-weighted identity loss for
    real pairs, the "fake" cross-entropy for generated pairs (D step), or the identity loss on generated
    pairs (G step). With ``normalisation="official"`` its weight is 0.5 / N_D per block, as for D_content.
    Returns (loss, logs).
    """
    total, logs = sivgan.adversarial_loss(out, real, normalisation)
    if out.objects:
        if real or generator_step:
            per_block = [object_loss_real(lg, alpha) for lg in out.objects]
        else:
            per_block = [object_loss_fake(lg) for lg in out.objects]
        stacked = torch.stack(per_block)
        if normalisation == "paper":
            obj = stacked.mean()
        else:
            n_d = len(out.low) + len(out.objects)
            obj = 0.5 * stacked.sum() / n_d
        total = total + obj
        logs["object"] = float(stacked.mean().detach())
    return total, logs


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------

_PAPER = dict(
    sivgan.PRESETS["paper"],
    seed=22,  # [CODE]
    iterations=150_000,  # not stated in the text [B.10]; the official README example uses 150k
    image_size=384,  # DAVIS at 640x384 [L1756]
    dataset="davis17",  # DAVIS-17 val first frames [L1756]: data_scripts/prepare_davis17_first_frames.py
    noise_shape=(3, 5),  # 3x5 -> 384x640 with 8 G blocks [L1458, CODE]
    num_low=4,  # N_low-level = 4 for OSMIS [L1800]
    supervision="mca",  # masked content attention [L1723]
    p0=15_000,  # Bernoulli warm-up iterations [L1749]
    warmup_sampling="bernoulli",  # Eq. 6.3 ("bernoulli" per channel as [CODE]; or "categorical")
    mca_normalize="map",  # Eq. 6.4 AvgPool over the whole map ([CODE]); "area" = masked mean
    branch_width=2,  # the text gives no widths; [CODE] doubles the content blocks' widths (not the last output)
    ema_decay=0.9999,  # [L1749]
    p_da=0.7,  # DA of images and masks [L1749, L1460]
    n_eval_samples=100,  # 100 generated pairs for metrics and the synthetic pool [L1835]
    filter_fraction=0.15,  # drop the 15 % worst samples by SIFID rank [L1835]
    seg_steps=500,  # "500 epochs" of the mIoU U-Net [L1760]; [CODE] 500 iterations
    seg_seeds=5,  # 5 runs with different augmentation seeds [L1847]
    heldout=30,  # held-out frames / crops for the downstream test
    arms=("mca", "concat", "none"),  # Table 6.3 rows we build (projection and SemanticGAN D_m: not built)
)

PRESETS = {
    "paper": _PAPER,
    "gpu": {**_PAPER, "iterations": 20_000, "image_size": 64, "dataset": "scenes", "time_budget_s": None,
            "noise_shape": (4, 6), "d_blocks": 6, "num_low": 3, "p0": 3000, "lambda_dr": 1.75,
            "ema_decay": 0.999},
    # cpu: SIV-GAN's cpu scale (32x48 from a 4x6 map; notebook 02) with the paper's method; P_0 is scaled
    # to about 15 % of the run (specs B.9) and lambda_dr = 1.75 is the paper's lambda in the official
    # code's normalisation (notebook 02). da_policy: at 32x48 crops and rotations mostly blur the images
    # (and resample the masks coarsely), so flips and translations only, as notebook 02's cpu preset.
    # iterations: a fixed step count, equal for both arms (issue 10); time_budget_s = None (a user may set
    # one per arm as a guard; a run it cuts is recorded as incomplete). N_low = 2 of 5 D blocks (paper: 4
    # of 7 [L1800]): at 32x48 a 4-block trunk would leave 2x3 features for MCA. One thread (two collapsed
    # 10x on the shared 2-core machine).
    "cpu": {**_PAPER, "seed": 0, "iterations": 1500, "image_size": 32, "dataset": "scenes", "time_budget_s": None,
            "noise_shape": (4, 6), "g_base_channels": 8, "d_base_channels": 16, "d_blocks": 5, "num_low": 2,
            "lambda_dr": 1.75, "p0": 225, "ema_decay": 0.99, "n_eval_samples": 60, "seg_steps": 120,
            "seg_seeds": 3, "heldout": 24, "arms": ("mca", "concat"), "da_policy": "translation,flip", "threads": 1},
    "smoke": {**_PAPER, "seed": 0, "iterations": 4, "image_size": 16, "dataset": "scenes", "time_budget_s": None,
              "noise_shape": (2, 3), "g_base_channels": 4, "d_base_channels": 4, "d_blocks": 4, "num_low": 2,
              "lambda_dr": 1.75, "p0": 2, "ema_decay": 0.9, "n_eval_samples": 8, "seg_steps": 3,
              "seg_seeds": 2, "heldout": 4, "arms": ("mca", "concat"), "threads": 1},
}


def build_generator(cfg, num_classes: int) -> OSMISGenerator:
    blocks = sivgan.generator_blocks_for(cfg["image_size"], cfg["noise_shape"][0])
    return OSMISGenerator(num_classes, z_dim=cfg["z_dim"], noise_shape=cfg["noise_shape"], num_blocks=blocks,
                          base_channels=cfg["g_base_channels"])


def build_discriminator(cfg, num_classes: int, supervision: str | None = None) -> OSMISDiscriminator:
    return OSMISDiscriminator(num_classes, supervision or cfg["supervision"], num_blocks=cfg["d_blocks"],
                              num_low=cfg["num_low"], base_channels=cfg["d_base_channels"],
                              branch_width=cfg["branch_width"], layout_squeeze=cfg["layout_squeeze"],
                              msg_kernel=cfg["msg_kernel"], mca_normalize=cfg["mca_normalize"])


# ---------------------------------------------------------------------------------------------
# Training: one image-mask pair, SIV-GAN's loop with the mask added
# ---------------------------------------------------------------------------------------------


def check_pair(images: torch.Tensor, labels: torch.Tensor, num_classes: int, shape: tuple[int, int]) -> None:
    """The training pair(s): (N, 3, H, W) images in [-1, 1] and (N, H, W) ids in [0, num_classes)."""
    from nbsyn.data import check_labels

    sivgan.check_frames(images, shape)
    check_labels(labels, num_classes)
    if labels.shape[0] != images.shape[0] or tuple(labels.shape[-2:]) != tuple(shape):
        raise ValueError(f"labels {tuple(labels.shape)} do not match images {tuple(images.shape)}")


class OSMIS:
    """Generator + discriminator + optimisers + EMA for one image-mask pair, and one iteration (:meth:`step`).

    ``supervision`` picks the discriminator of Table 6.3 ("mca" = OSMIS, "concat", "none").
    ``warmup=False`` switches off the sampling phase of Eq. 6.3 (an ablation). The loop is SIV-GAN's
    (notebook 02): a G step, then a D step on DA(real) + FA against a fresh DA(fake); DA moves the mask
    with the image (geometric ops, nearest resampling) [L1749].
    """

    def __init__(self, cfg, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                 device: torch.device | str = "cpu", supervision: str | None = None, seed: int | None = None,
                 lambda_dr: float | None = None, warmup: bool = True):
        from nbsyn.train import EMA

        self.cfg, self.device = cfg, torch.device(device)
        if images.dim() == 3:
            images, labels = images[None], labels[None]
        self.shape = sivgan.image_shape(cfg)
        check_pair(images, labels, num_classes, self.shape)
        self.num_classes = num_classes
        self.images = images.to(self.device)
        self.masks = F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float().to(self.device)
        self.supervision = supervision or cfg["supervision"]
        self.lambda_dr = cfg["lambda_dr"] if lambda_dr is None else lambda_dr
        self.normalisation, self.warmup = cfg["normalisation"], warmup
        seed = cfg["seed"] if seed is None else seed
        torch.manual_seed(seed)
        self.G = build_generator(cfg, num_classes).to(self.device)
        self.D = build_discriminator(cfg, num_classes, self.supervision).to(self.device)
        self.ema = EMA(self.G, cfg["ema_decay"])
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg["lr_g"], betas=tuple(cfg["betas"]))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg["lr_d"], betas=tuple(cfg["betas"]))
        self.rng = torch.Generator().manual_seed(seed)

    def objects(self) -> dict:
        return {"G": self.G, "D": self.D, "ema": self.ema, "opt_g": self.opt_g, "opt_d": self.opt_d,
                "rng": GeneratorState(self.rng)}

    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.images), (self.cfg["batch_size"],), generator=self.rng)
        return self.images[idx], self.masks[idx]

    def augment(self, levels: list[torch.Tensor], mask: torch.Tensor):
        """DA: one transform for every MSG level and the mask [L1749]."""
        return sivgan.diff_augment(levels, policy=self.cfg["da_policy"], p=self.cfg["p_da"], generator=self.rng,
                                   masks=mask)

    def generate(self, iteration: int):
        """A fresh generated batch: MSG images (fine -> coarse) and the hard mask of Eq. 6.2/6.3."""
        out = self.G(self.G.sample_z(self.cfg["batch_size"], self.rng, self.device))
        warm = self.warmup and in_warmup(iteration, self.cfg["p0"])
        hard = mask_argmax(out.soft_mask, warmup=warm, sampling=self.cfg["warmup_sampling"], generator=self.rng)
        return out, out.images[::-1][: self.D.num_low], hard

    def step(self, iteration: int = 0) -> dict[str, float]:
        # --- G step: fool every head; each generated region should be classified as its own identity
        self.G.train()
        out, levels, hard = self.generate(iteration)
        levels, mask = self.augment(levels, hard)
        d_fake = self.D(levels, mask)
        g_adv, _ = discriminator_loss_parts(d_fake, real=True, alpha=class_balance_weights(mask),
                                            normalisation=self.normalisation, generator_step=True)
        dr = sivgan.diversity_regularisation(out.features, self.normalisation)
        g_loss = g_adv - self.lambda_dr * dr  # Eq. 5.4 / 6.1 with the DR of SIV-GAN
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.ema.update(self.G)
        # --- D step: DA(real pair) with FA against a fresh DA(generated pair)
        real, real_mask = self.real_batch()
        real_levels, real_mask = self.augment(sivgan.image_pyramid(real, self.D.num_low), real_mask)
        d_real = self.D(real_levels, real_mask, augment=True, p_fa=self.cfg["p_fa"], generator=self.rng)
        with torch.no_grad():
            _, fake_levels, fake_mask = self.generate(iteration)
        fake_levels, fake_mask = self.augment(fake_levels, fake_mask)
        d_fake = self.D(fake_levels, fake_mask)
        loss_real, parts_real = discriminator_loss_parts(d_real, True, class_balance_weights(real_mask),
                                                         self.normalisation)
        loss_fake, parts_fake = discriminator_loss_parts(d_fake, False, None, self.normalisation)
        d_loss = loss_real + loss_fake
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        hard_ids = hard.detach().argmax(1)
        logs = {"g_adv": float(g_adv.detach()), "dr": float(dr.detach()), "d_loss": float(d_loss.detach()),
                "background_fraction": float((hard_ids == 0).float().mean())}
        for name in parts_real:
            logs[f"d_{name}"] = parts_real[name] + parts_fake[name]
        return logs

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, ema: bool = True, batch: int = 25):
        """``n`` generated pairs: images (n, 3, H, W) and label maps (n, H, W) = argmax of the soft mask."""
        g = self.ema.module if ema else self.G
        g.eval()
        z = g.sample_z(n, torch.Generator().manual_seed(seed), self.device)
        images, labels = [], []
        for i in range(0, n, batch):
            out = g(z[i:i + batch])
            images.append(out.image.cpu())
            labels.append(out.soft_mask.argmax(1).cpu())
        return torch.cat(images), torch.cat(labels)


# ---------------------------------------------------------------------------------------------
# One-shot data: the training pair and held-out pairs of the same scene
# ---------------------------------------------------------------------------------------------

SCENE_OBJECTS = ("tree", "rock", "water")  # the "objects of interest"; other scene classes are background


@dataclass
class OneShotData:
    """One training pair and held-out pairs of the same scene (other crops or video frames)."""

    image: torch.Tensor  # (3, H, W) in [-1, 1]
    labels: torch.Tensor  # (H, W) ids, 0 = background
    class_names: list[str]
    palette: list[tuple[int, int, int]]
    heldout_images: torch.Tensor  # (K, 3, H, W)
    heldout_labels: torch.Tensor  # (K, H, W)
    description: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def object_palette(n: int) -> list[tuple[int, int, int]]:
    """Background dark grey, then distinct bright colours for the objects."""
    colours = [(60, 60, 60), (230, 60, 60), (250, 200, 40), (60, 140, 250), (90, 220, 90), (220, 90, 230),
               (40, 220, 220), (250, 140, 40), (160, 110, 60), (250, 250, 250)]
    return [colours[i % len(colours)] for i in range(n)]


def _scene_mask(labels: torch.Tensor, scene_names, objects) -> torch.Tensor:
    out = torch.zeros_like(labels)
    for k, name in enumerate(objects, start=1):
        out[labels == scene_names.index(name)] = k
    return out


def scene_crops(shape: tuple[int, int], heldout: int, seed: int = 0, objects=SCENE_OBJECTS,
                min_pixels: int = 4) -> OneShotData:
    """A procedural scene (``nbsyn.data`` 'scenes') seen through a panning camera.

    The scene is rendered at 4H x 4H; every view is a 2H x 3H window (rows from 1.25H, the band around the
    horizon and the ground) downsampled by 2 to H x 1.5H. The training pair is the leftmost window; the held-out pairs
    are windows shifted by 1/8 to 1 of the free width and up or down by up to H/4 - the same scene with
    its objects at new positions in the frame, as later frames of a DAVIS video. The mask keeps
    ``objects`` (tree, rock, water by default) and makes every other class background. The first scene
    (index 0, 1, ... of ``seed``) whose training view shows every object with ``min_pixels`` is used.
    """
    from nbsyn.data import RENDERERS

    h, w = shape
    if w * 2 != h * 3:
        raise ValueError(f"scene crops are H x 1.5H (e.g. 32 x 48), got {shape}")
    render, scene_names, _ = RENDERERS["scenes"]
    unknown = [o for o in objects if o not in scene_names]
    if unknown:
        raise ValueError(f"unknown scene classes {unknown}; the scenes have {', '.join(scene_names)}")
    size = 4 * h
    for index in range(50):
        full_image, full_labels = render(seed, index, size)
        mask = _scene_mask(full_labels, scene_names, objects)
        views = _windows(h, heldout, seed)
        crops = [_crop(full_image, mask, top, left, h) for top, left in views]
        train_labels = crops[0][1]
        if all((train_labels == k).sum() >= min_pixels for k in range(1, len(objects) + 1)):
            break
    else:
        raise RuntimeError(f"no scene of seed {seed} shows all of {objects}; choose other objects")
    images = torch.stack([c[0] for c in crops])
    labels = torch.stack([c[1] for c in crops])
    names = ["background"] + list(objects)
    return OneShotData(images[0], labels[0], names, object_palette(len(names)), images[1:], labels[1:],
                       f"procedural scene {seed}/{index}: training view + {heldout} panned views")


def _windows(h: int, n: int, seed: int) -> list[tuple[int, int]]:
    """(top, left) of the training window and ``n`` held-out windows in the 4H x 4H render."""
    g = torch.Generator().manual_seed(seed)
    free = 4 * h - 3 * h  # horizontal room: H
    views = [(5 * h // 4, 0)]
    for _ in range(n):
        left = int(free * (0.125 + 0.875 * torch.rand((), generator=g)))
        top = 5 * h // 4 + int((torch.rand((), generator=g) * 2 - 1) * h / 4)
        views.append((top, left))
    return views


def _crop(image: torch.Tensor, labels: torch.Tensor, top: int, left: int, h: int):
    img = image[:, top:top + 2 * h, left:left + 3 * h]
    lab = labels[top:top + 2 * h, left:left + 3 * h]
    img = F.interpolate(img[None], size=(h, 3 * h // 2), mode="bilinear", antialias=True, align_corners=False)[0]
    lab = lab[::2, ::2]  # nearest
    return img.clamp(-1, 1) * 1.0, lab.contiguous()


def load_oneshot(dataset: str, shape: tuple[int, int], heldout: int, seed: int = 0) -> OneShotData:
    """The one-shot data of a notebook ``dataset`` string.

    * ``"scenes"``: :func:`scene_crops` (offline default);
    * ``"photo:<name>"``: a scikit-image photograph with its colour-segment mask (``nbsyn.data.load_photo``),
      the darkest segment as background; held-out = flipped/zoomed copies of the same pair (the paper's
      mIoU test set, [L1760]);
    * ``"davis17:<DAVIS root>:<video>"``: the first frame is the training pair and ``heldout`` later
      frames, evenly spaced, are the test (one-shot video object segmentation, [L1816-1847]);
    * ``"oneshot:<folder>"``: a prepared pair (data_scripts/prepare_*.py), held-out = augmented copies.
    """
    kind, _, rest = dataset.partition(":")
    if kind == "scenes":
        return scene_crops(shape, heldout, seed)
    if kind == "photo":
        from nbsyn.data import load_photo

        image, labels, names = load_photo(rest or "astronaut", max(shape) * 2)
        image, labels = _fit_pair(image, labels, shape)
        return _with_augmented_heldout(image, labels, names, heldout, seed, f"photo {rest}")
    if kind == "davis17":
        from nbsyn.data import davis17

        root, _, video = rest.rpartition(":")
        if not root or not video:
            raise ValueError("use dataset='davis17:<DAVIS root>:<video>', e.g. 'davis17:data/DAVIS:bike-packing'")
        image, labels, names = davis17.load_first_frame(root, video, size=None)
        image, labels = _fit_pair(image, labels, shape)
        frames = davis17.list_frames(root, video)
        picks = torch.linspace(1, len(frames) - 1, min(heldout, len(frames) - 1)).round().long().unique().tolist()
        pairs = [_fit_pair(*davis17.load_frame(root, video, i), shape) for i in picks]
        held_images = torch.stack([p[0] for p in pairs])
        held_labels = torch.stack([p[1] for p in pairs]).clamp(max=len(names) - 1)
        return OneShotData(image, labels, names, object_palette(len(names)), held_images, held_labels,
                           f"DAVIS-17 {video}: first frame + {len(picks)} later frames")
    if kind == "oneshot":
        from nbsyn.data import davis17

        image, labels, names = davis17.load_prepared_pair(rest)
        image, labels = _fit_pair(image, labels, shape)
        return _with_augmented_heldout(image, labels, names, heldout, seed, f"prepared pair {rest}")
    raise ValueError(f"unknown dataset {dataset!r}; use 'scenes', 'photo:<name>', 'davis17:<root>:<video>' "
                     f"or 'oneshot:<folder>'")


def _fit_pair(image: torch.Tensor, labels: torch.Tensor, shape: tuple[int, int]):
    """Centre-crop to the aspect ratio of ``shape`` and resize: image antialiased, labels nearest."""
    image = sivgan.fit_frames(image[None], shape)[0]
    lab = labels[None, None].float()
    h, w = labels.shape
    th, tw = shape
    if h * tw > w * th:
        nh = round(w * th / tw)
        lab = lab[..., (h - nh) // 2:(h - nh) // 2 + nh, :]
    else:
        nw = round(h * tw / th)
        lab = lab[..., :, (w - nw) // 2:(w - nw) // 2 + nw]
    lab = F.interpolate(lab, size=shape, mode="nearest")[0, 0].long()
    return image, lab


def _with_augmented_heldout(image, labels, names, heldout, seed, description) -> OneShotData:
    from nbsyn.data import PairedAugment

    aug = PairedAugment(flip=True, zoom=(1.0, 1.3), max_degrees=5.0)
    g = torch.Generator().manual_seed(seed + 1)
    held_images, held_labels = aug(image[None].expand(heldout, -1, -1, -1), labels[None].expand(heldout, -1, -1), g)
    return OneShotData(image, labels, list(names), object_palette(len(names)), held_images, held_labels,
                       f"{description}; held-out = {heldout} augmented copies (no other view exists)")


def augmented_real(data: OneShotData, n: int, seed: int = 0):
    """The paper's mIoU test set: the real pair under standard geometric augmentation [L1760]."""
    from nbsyn.data import PairedAugment

    aug = PairedAugment(flip=True, zoom=(1.0, 1.3), max_degrees=5.0)
    g = torch.Generator().manual_seed(seed)
    return aug(data.image[None].expand(n, -1, -1, -1), data.labels[None].expand(n, -1, -1), g)


# ---------------------------------------------------------------------------------------------
# Using the generated pairs: figures, filtering, data augmentation for a segmenter
# ---------------------------------------------------------------------------------------------


def pair_rows(images: torch.Tensor, labels: torch.Tensor, palette) -> torch.Tensor:
    """(3n, 3, H, W): a row of images, a row of their coloured masks, a row of overlays (grid nrow=n)."""
    from nbsyn.viz import colorize, overlay

    images, labels = images.cpu(), labels.cpu()
    masks = colorize(labels, palette)
    overlays = torch.stack([overlay(i, lab, palette, alpha=0.5) for i, lab in zip(images, labels)])
    return torch.cat([images, masks, overlays])


def filter_by_sifid(real_image: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, fraction: float):
    """Drop the ``fraction`` of generated pairs with the worst SIFID [L1835].

    The thesis ranks by the average of SIFID ranks over four InceptionV3 layers; ``nbsyn.metrics.sifid``
    has one layer, so we rank by it. Without Inception weights nothing is dropped and the note says so.
    Returns (images, labels, note).
    """
    from nbsyn.metrics import sifid

    result = sifid(real_image, images)
    if not result.available:
        return images, labels, f"not filtered: SIFID {result.unavailable_reason}"
    keep = int(round(len(images) * (1 - fraction)))
    order = result.per_item.argsort()[:keep]  # lower SIFID = better
    return images[order], labels[order], f"kept the {keep} of {len(images)} samples with the best SIFID"


def with_synthetic(real_images: torch.Tensor, real_labels: torch.Tensor, syn_images: torch.Tensor | None,
                   syn_labels: torch.Tensor | None):
    """A training set in which real and generated pairs are drawn 50 % / 50 % (as OSVOS [L1837]):
    the real pair(s) repeated as often as there are generated pairs."""
    if real_images.dim() == 3:
        real_images, real_labels = real_images[None], real_labels[None]
    if syn_images is None or len(syn_images) == 0:
        return real_images, real_labels
    reps = max(1, len(syn_images) // len(real_images))
    return (torch.cat([real_images.repeat(reps, 1, 1, 1), syn_images]),
            torch.cat([real_labels.repeat(reps, 1, 1), syn_labels]))
