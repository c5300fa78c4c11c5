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
