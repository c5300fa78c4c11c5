"""Semantic image synthesis with an unconditional generator (Chae, Cho, Go, Choi, Uh; NeurIPS 2023).

Only the paper's supplement is available (``papers/chae2023_sis_unconditional_generator_supp.txt``,
``[Lnn]`` = its line nn). The equations of the main text are reconstructed in
``specs/chae_sis_unconditional.md`` and marked [INFER] here too.

A frozen, pre-trained StyleGAN2 ``G`` is split at an intermediate resolution into ``G1`` (blocks up
to the split, giving features ``F`` and the partial RGB skip image) and ``G2`` (the split block's
ToRGB and every later block) [L115]. Pieces:

* :func:`split` / :func:`resume`: ``resume(*split(ws, r), ws, r)`` equals ``G.synthesis(ws)``.
* :func:`spherical_kmeans`, :class:`ProxyMasks`: K-means on ``G1`` features of 256 samples [L42];
  the nearest centroid of every pixel is that sample's *proxy mask* (K = 25 [L82]).
* :class:`Rearranger`: single-head cross-attention, query = target proxy mask (class embedding +
  sinusoidal position encoding + a 4-layer residual block), key and value = source features [L23,
  L28]; one 4-layer residual block after. The partial RGB skip image is appended to the values, so
  it moves with the *same* attention (spec 4.3, the skip-image trap).
* :func:`self_loss`, :func:`mask_loss`, :func:`make_rearranger_step`: L_self (flip), L_mask,
  L_adv with weights 10 / 1 / 1 [L42, L46], alternating self / cross iterations [L42], L_adv every
  5th step in the first 5/7 of training and every step after [L44].
* :class:`SemanticMapper`: the OASIS generator without noise, K logits out [L36].
* :func:`latent_optimisation`: the LinearGAN-style semantic-conditional sampling baseline.
* :func:`move_region`, :class:`ProxyMaskPanel`: editing a proxy mask (the widget).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nbsyn.metrics.clusters import cluster_purity, spherical_kmeans  # noqa: F401 (used by notebook 07)
from nbsyn.models import stylegan2 as sg
from nbsyn.widgets import paste_shifted

# ---------------------------------------------------------------------------------------------
# Presets (spec 12.8). Every preset loads a shipped, pre-trained StyleGAN2; none trains it.
# ---------------------------------------------------------------------------------------------
_METHOD = dict(
    n_clusters=25,  # K [L82]
    spherical=True,  # spherical K-means as in Collins et al. [2] [EXT]; False = Euclidean
    tau=0.1,  # temperature of the soft proxy assignment in L_mask [INFER]
    lr=0.002,  # R and D [L40]
    betas=(0.0, 0.99),  # StyleGAN2 Adam [EXT]
    lambda_self=10.0,  # [L42]
    lambda_mask=1.0,  # [L42]
    lambda_adv=1.0,  # [L46]
    r1_gamma=10.0,  # [L40]
    r1_every=16,  # lazy R1 [EXT StyleGAN2]
    adv_every=5,  # L_adv once every five iterations in phase 1 [L44]
    phase1_fraction=5 / 7,  # 100k of 140k iterations [L44]
    flip_p=0.5,  # random horizontal flip against the self shortcut [L42]
    key_pe=True,  # position encoding on the keys too [INFER switch]
    key_mask=False,  # deviation switch (spec 4.2): add E onehot(M_s) to the keys; False = literal
    rgb_rearrange=True,  # move the partial skip image with the same attention (spec 4.3)
    lambda_recon=10.0,  # mapper CE weight, phase 1 [L46] (printed "lambda_self", a slip)
    lambda_recon_adv=100.0,  # mapper CE weight in the adversarial phase [L46]
)

PRESETS = {
    "smoke": dict(
        _METHOD, seed=0, iterations=6, image_size=32, batch_size=4, dataset="faces", time_budget_s=None,
        reference="stylegan2_faces32", sg_config="cpu", feature_res=16, n_kmeans_samples=32, kmeans_iters=5,
        width=16, blocks_per_side=1, n_seeds=1, n_real=64, oracle_steps=10, n_eval_pairs=8, n_eval_sets=2,
        eval_every=3, scs_inits=2, scs_steps=3, scs_lr=0.01, n_shots=4, fewshot_seg_steps=10, n_pseudo=16,
        mapper_iterations=4, mapper_adv_iterations=1, mapper_width=8, mapper_blocks=3, oasis_iterations=4,
    ),
    # at most 15 minutes on two idle cores (spec 12.10)
    "cpu": dict(
        _METHOD, seed=0, iterations=700, image_size=32, batch_size=8, dataset="faces", time_budget_s=None,
        reference="stylegan2_faces32", sg_config="cpu", feature_res=16, n_kmeans_samples=256, kmeans_iters=30,
        width=64, blocks_per_side=1, n_seeds=2, n_real=1000, oracle_steps=400, n_eval_pairs=128, n_eval_sets=3,
        eval_every=100, scs_inits=10, scs_steps=50, scs_lr=0.01, n_shots=16, fewshot_seg_steps=300, n_pseudo=512,
        mapper_iterations=300, mapper_adv_iterations=30, mapper_width=16, mapper_blocks=3, oasis_iterations=500,
    ),
    # about an hour on one GPU: the same 32-px reference prior, longer runs and more evaluation pairs
    "gpu": dict(
        _METHOD, seed=0, iterations=8000, image_size=32, batch_size=16, dataset="faces", time_budget_s=None,
        reference="stylegan2_faces32", sg_config="cpu", feature_res=16, n_kmeans_samples=256, kmeans_iters=30,
        width=128, blocks_per_side=1, n_seeds=3, n_real=4000, oracle_steps=3000, n_eval_pairs=512, n_eval_sets=3,
        eval_every=500, scs_inits=10, scs_steps=100, scs_lr=0.01, n_shots=16, fewshot_seg_steps=2000, n_pseudo=4096,
        mapper_iterations=10_000, mapper_adv_iterations=1000, mapper_width=32, mapper_blocks=3,
        oasis_iterations=10_000,
    ),
    # the paper: StyleGAN2 config-f at 256 px, split at 64x64, CelebAMask-HQ (paper_settings for others)
    "paper": dict(
        _METHOD, seed=0, iterations=140_000, image_size=256, batch_size=8, dataset="celebamask_hq",
        time_budget_s=None,
        reference="checkpoint",  # a config-f state dict given by the user (no 256-px CelebAMask-HQ G is official)
        sg_config="paper", feature_res=64, n_kmeans_samples=256, kmeans_iters=30,  # [L42]
        width=512, blocks_per_side=1, n_seeds=1, n_real=28_000, oracle_steps=20_000, n_eval_pairs=28_000,
        n_eval_sets=1, eval_every=10_000, scs_inits=10, scs_steps=50, scs_lr=0.001, n_shots=1,
        fewshot_seg_steps=2000, n_pseudo=28_000,
        mapper_iterations=100_000, mapper_adv_iterations=10_000,  # [L46]
        mapper_width=64, mapper_blocks=4, oasis_iterations=100_000,
    ),
}

# Per-dataset settings of the paper [L44, L115]: resolution, StyleGAN2 size, rearranger schedule.
PAPER_DATASETS = {
    "celebamask_hq": dict(image_size=256, iterations=140_000, phase1_fraction=100 / 140, num_classes=19),
    "lsun_church": dict(image_size=256, iterations=140_000, phase1_fraction=100 / 140, num_classes=None),
    "lsun_bedroom": dict(image_size=256, iterations=140_000, phase1_fraction=100 / 140, num_classes=None),
    "afhq": dict(image_size=512, iterations=215_000, phase1_fraction=150 / 215, num_classes=None),
    "ffhq": dict(image_size=1024, iterations=215_000, phase1_fraction=150 / 215, num_classes=None),
}

# StyleGAN2 config-f parameter counts (nbsyn's StyleGAN2 reproduces the official per-layer table)
PAPER_G_PARAMS = {256: 30_034_338, 512: 30_276_583, 1024: 30_370_060}


def paper_settings(dataset: str) -> dict:
    """Overrides of the ``paper`` preset for one of the paper's datasets [L44]."""
    if dataset not in PAPER_DATASETS:
        raise ValueError(f"unknown paper dataset {dataset!r}; choose one of {', '.join(PAPER_DATASETS)}")
    s = PAPER_DATASETS[dataset]
    return dict(dataset=dataset, image_size=s["image_size"], iterations=s["iterations"],
                phase1_fraction=s["phase1_fraction"], mapper_iterations=100_000, mapper_adv_iterations=10_000)


def paper_generator(image_size: int = 256) -> tuple[sg.Generator, sg.Discriminator]:
    """StyleGAN2 config-f at 256 / 512 / 1024 px (the generators of the paper's datasets)."""
    if image_size not in PAPER_G_PARAMS:
        raise ValueError(f"the paper uses 256, 512 or 1024 px generators, got {image_size}")
    return sg.build("paper", image_size=image_size)


def load_prior(cfg, device="cpu", checkpoint: str | None = None):
    """The frozen prior ``(G, D)``: a shipped reference model by name, or a config-f checkpoint.

    Never trains anything. ``cfg.reference`` names a model of ``nbsyn.pretrained``; "checkpoint"
    reads a state dict ``{"G": ..., "D": ...}`` (``checkpoint`` path) into ``sg.build(cfg.sg_config)``.
    """
    if cfg["reference"] == "checkpoint":
        if checkpoint is None:
            raise ValueError("the paper preset needs a pre-trained StyleGAN2 config-f checkpoint: pass its path "
                             "(a torch file with 'G' and 'D' state dicts); nbsyn ships none at 256 px")
        G, D = sg.build(cfg["sg_config"], image_size=cfg["image_size"])
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
    else:
        from nbsyn import pretrained

        ref = pretrained.load(cfg["reference"], device=device)
        G, D = ref.G, ref.D
    G = G.to(device).eval().requires_grad_(False)
    if D is not None:
        D = D.to(device)
    if G.cfg.image_size != cfg["image_size"]:
        raise ValueError(f"the prior draws {G.cfg.image_size}-px images but the preset asks for {cfg['image_size']}")
    if cfg["feature_res"] not in G.cfg.resolutions[1:]:
        raise ValueError(f"feature_res must be one of {G.cfg.resolutions[1:]}, got {cfg['feature_res']}")
    return G, D


# ---------------------------------------------------------------------------------------------
# G = G2 o G1: split the skip generator at resolution r (spec 12.3)
# ---------------------------------------------------------------------------------------------
def _w_start(synthesis: sg.SynthesisNetwork, at: int) -> tuple[int, int]:
    """(index of the ``at`` block, index of its first w)."""
    w_idx = 0
    for i, block in enumerate(synthesis.blocks):
        if block.resolution == at:
            return i, w_idx
        w_idx += block.num_conv
    raise ValueError(f"split resolution must be one of {synthesis.cfg.resolutions}, got {at}")


def split(synthesis: sg.SynthesisNetwork, ws: torch.Tensor, at: int, noise_mode: str = "const"):
    """G1: (features of the ``at`` block before its ToRGB (B, C, at, at), partial RGB image (B, 3, at, at)).

    The partial image is the skip sum of the blocks below ``at``, upsampled to ``at`` (spec 4.3):
    it already carries the source's coarse layout and colours.
    """
    stop, _ = _w_start(synthesis, at)
    if stop == 0:
        raise ValueError("cannot split at the 4x4 block (there is no partial image yet)")
    x = img = None
    w_idx = 0
    for block in synthesis.blocks[: stop + 1]:
        last = block.resolution == at
        x, img = block(x, img, ws[:, w_idx: w_idx + block.num_conv + 1], noise_mode, with_rgb=not last)
        w_idx += block.num_conv
    return x, sg.upsample2d(img, synthesis.blocks[stop].blur_kernel)


def resume(synthesis: sg.SynthesisNetwork, x: torch.Tensor, img_up: torch.Tensor, ws: torch.Tensor, at: int,
           noise_mode: str = "const") -> torch.Tensor:
    """G2: the ``at`` block's ToRGB added to the partial image, then every later block. Style from ``ws``."""
    start, w_idx = _w_start(synthesis, at)
    block = synthesis.blocks[start]
    img = img_up + block.torgb(x, ws[:, w_idx + block.num_conv])
    w_idx += block.num_conv
    for block in synthesis.blocks[start + 1:]:
        x, img = block(x, img, ws[:, w_idx: w_idx + block.num_conv + 1], noise_mode)
        w_idx += block.num_conv
    return img


# ---------------------------------------------------------------------------------------------
# Proxy masks: K-means on G1 features [L42, L82]
# ---------------------------------------------------------------------------------------------
class ProxyMasks(nn.Module):
    """Frozen centroids mu_k (K, C). ``assign(F)`` -> (B, H, W) proxy mask; ``logits(F, tau)`` -> (B, K, H, W)."""

    def __init__(self, centroids: torch.Tensor, spherical: bool = True):
        super().__init__()
        self.register_buffer("centroids", centroids.detach().clone())
        self.spherical = spherical

    @property
    def K(self) -> int:
        return self.centroids.shape[0]

    def logits(self, feats: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
        """Spherical: cos(F_p, mu_k) / tau; Euclidean: -||F_p - mu_k||^2 (spec 5.2, [INFER])."""
        mu = self.centroids.to(feats.dtype)
        if self.spherical:
            return torch.einsum("bchw,kc->bkhw", F.normalize(feats, dim=1), mu) / tau
        d = feats.pow(2).sum(1, keepdim=True) - 2 * torch.einsum("bchw,kc->bkhw", feats, mu) \
            + mu.pow(2).sum(1)[None, :, None, None]
        return -d

    @torch.no_grad()
    def assign(self, feats: torch.Tensor) -> torch.Tensor:
        """Nearest centroid per pixel: the proxy mask [L42]."""
        return self.logits(feats, 1.0).argmax(1)


def fit_proxy_masks(G: sg.Generator, n: int, K: int, at: int, iters: int = 30, seed: int = 0,
                    spherical: bool = True, batch_size: int = 64) -> ProxyMasks:
    """Centroids from the ``at`` x ``at`` features of ``n`` random samples (psi = 1, const noise) [L42]."""
    feats = sample_features(G, n, at, seed, batch_size)[0]
    X = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
    return ProxyMasks(spherical_kmeans(X, K, iters, seed, spherical), spherical)


@torch.no_grad()
def sample_features(G: sg.Generator, n: int, at: int, seed: int, batch_size: int = 64, z: torch.Tensor | None = None):
    """(features, partial images, ws, images) of ``n`` latents drawn with ``seed`` (or given ``z``), on G's device."""
    device = next(G.parameters()).device
    if z is None:
        z = torch.randn(n, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed))
    outs = [[], [], [], []]
    for i in range(0, z.shape[0], batch_size):
        ws = G.map(z[i:i + batch_size].to(device))
        f, p = split(G.synthesis, ws, at)
        img = resume(G.synthesis, f, p, ws, at)
        for lst, t in zip(outs, (f, p, ws, img)):
            lst.append(t)
    return tuple(torch.cat(o) for o in outs)


def majority_pool(labels: torch.Tensor, size: int, num_classes: int) -> torch.Tensor:
    """(B, H, W) labels -> (B, size, size) by the most frequent class in each cell."""
    oh = F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(oh, size).argmax(1)


# ---------------------------------------------------------------------------------------------
# The rearranger (spec 4.2 [INFER] from [L23, L28, L80]) with the skip image (spec 4.3)
# ---------------------------------------------------------------------------------------------
def sinusoidal_pe_2d(d: int, H: int, W: int) -> torch.Tensor:
    """(d, H, W) fixed encoding: the first d/2 channels encode y, the rest x; sin and cos at
    geometric frequencies 1 / 10000^(2i / (d/2)) (Vaswani et al., per axis)."""
    if d % 4:
        raise ValueError(f"the 2-D position encoding needs d divisible by 4, got {d}")
    q = d // 4
    freq = 1.0 / (10000 ** (torch.arange(q, dtype=torch.float32) / q))

    def axis(n):  # (d/2, n)
        a = torch.arange(n, dtype=torch.float32)[None] * freq[:, None]
        return torch.cat([a.sin(), a.cos()])

    return torch.cat([axis(H)[:, :, None].expand(-1, H, W), axis(W)[:, None, :].expand(-1, H, W)])


class ResBlock4(nn.Module):
    """Four pre-activation 3x3 convs (LeakyReLU 0.2, no normalisation); x + branch(x) / 2 [L23, INFER]."""

    def __init__(self, d: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(d, d, 3, padding=1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.convs:
            h = conv(F.leaky_relu(h, 0.2))
        return x + 0.5 * h


class Rearranger(nn.Module):
    """F' = R(F_s, M_t): the source features arranged like the target proxy mask.

        Q = W_q Res_pre(E onehot(M_t) + P)                  query: class embedding + position [L23, L80]
        K = W_k (W_in F_s [+ P if key_pe] [+ E onehot(M_s) if key_mask])
        V = [W_v F_s ; partial RGB image]                   the skip image rides along (spec 4.3)
        A = softmax_keys(Q^T K / sqrt(d))                   (B, HW_query, HW_key), rows sum to 1
        F' = W_out Res_post((V A^T)[:d]),  rgb' = (V A^T)[d:]

    No path from F_s to F' bypasses the attention (a residual path would carry the source layout).
    ``M_t`` is a (B, H, W) label map or a (B, K, H, W) soft mask (the mapper's adversarial phase).
    """

    def __init__(self, feat_ch: int, K: int, width: int, res: int, blocks_per_side: int = 1, key_pe: bool = True,
                 key_mask: bool = False, rgb: bool = True):
        super().__init__()
        self.K, self.width, self.key_pe, self.key_mask, self.rgb = K, width, key_pe, key_mask, rgb
        self.embed = nn.Conv2d(K, width, 1, bias=False)  # E: class embedding
        self.register_buffer("pe", sinusoidal_pe_2d(width, res, res), persistent=False)
        self.pre = nn.Sequential(*[ResBlock4(width) for _ in range(blocks_per_side)])
        self.w_in = nn.Conv2d(feat_ch, width, 1)
        self.w_q = nn.Conv2d(width, width, 1)
        self.w_k = nn.Conv2d(width, width, 1)
        self.w_v = nn.Conv2d(feat_ch, width, 1)
        self.post = nn.Sequential(*[ResBlock4(width) for _ in range(blocks_per_side)])
        self.w_out = nn.Conv2d(width, feat_ch, 1)

    def _onehot(self, m: torch.Tensor) -> torch.Tensor:
        if m.dim() == 3:
            if m.min() < 0 or m.max() >= self.K:
                raise ValueError(f"proxy mask ids must lie in [0, {self.K - 1}], got [{int(m.min())}, {int(m.max())}]")
            return F.one_hot(m.long(), self.K).permute(0, 3, 1, 2).float()
        if m.dim() == 4 and m.shape[1] == self.K:
            return m.float()
        raise ValueError(f"a mask must be (B, H, W) ids or (B, {self.K}, H, W) soft, got {tuple(m.shape)}")

    def attention(self, feats: torch.Tensor, mask_t: torch.Tensor, mask_s: torch.Tensor | None = None):
        """A (B, HW, HW) with A[b, query pixel, key pixel]."""
        b, _, h, w = feats.shape
        if self.pe.shape[-2:] != (h, w):
            raise ValueError(f"features are {h}x{w} but the rearranger was built for {tuple(self.pe.shape[-2:])}")
        q = self.w_q(self.pre(self.embed(self._onehot(mask_t)) + self.pe))
        k = self.w_in(feats)
        if self.key_pe:
            k = k + self.pe
        if self.key_mask:
            if mask_s is None:
                raise ValueError("key_mask=True needs the source proxy mask mask_s")
            k = k + self.embed(self._onehot(mask_s))
        k = self.w_k(k)
        logits = torch.einsum("bdq,bdk->bqk", q.flatten(2), k.flatten(2)) / math.sqrt(self.width)
        return logits.softmax(-1)

    def forward(self, feats: torch.Tensor, mask_t: torch.Tensor, skip_img: torch.Tensor | None = None,
                mask_s: torch.Tensor | None = None, return_attention: bool = False):
        b, _, h, w = feats.shape
        A = self.attention(feats, mask_t, mask_s)
        v = self.w_v(feats).flatten(2)  # (B, d, HW)
        if self.rgb and skip_img is not None:
            v = torch.cat([v, skip_img.flatten(2)], 1)
        moved = torch.einsum("bck,bqk->bcq", v, A).reshape(b, -1, h, w)  # V A^T: convex combinations
        out = self.w_out(self.post(moved[:, : self.width]))
        rgb = moved[:, self.width:] if (self.rgb and skip_img is not None) else None
        return (out, rgb, A) if return_attention else (out, rgb)


def build_rearranger(cfg, feat_ch: int) -> Rearranger:
    return Rearranger(feat_ch, cfg["n_clusters"], cfg["width"], cfg["feature_res"], cfg["blocks_per_side"],
                      cfg["key_pe"], cfg["key_mask"], cfg["rgb_rearrange"])


# ---------------------------------------------------------------------------------------------
# Losses (spec 5.2 [INFER]: the formulas are in the unavailable main text)
# ---------------------------------------------------------------------------------------------
def flip_where(x: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Horizontally flip the samples whose flag is set (phi of spec 5.2)."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    return torch.where(flags.view(shape), x.flip(-1), x)


def self_loss(out_feat: torch.Tensor, target_feat: torch.Tensor, out_rgb: torch.Tensor | None = None,
              target_rgb: torch.Tensor | None = None) -> torch.Tensor:
    """L_self = ||R(F_s, phi(M_s)) - phi(F_s)||_1 (+ ||rgb' - phi(partial image)||_1), means over elements."""
    loss = (out_feat - target_feat).abs().mean()
    if out_rgb is not None and target_rgb is not None:
        loss = loss + (out_rgb - target_rgb).abs().mean()
    return loss


def mask_loss(proxy: ProxyMasks, out_feat: torch.Tensor, mask_t: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """L_mask = -1/HW sum_p log softmax_k(cos(F'_p, mu_k) / tau)[M_t(p)]: the output's features must fall
    into the requested clusters."""
    return F.cross_entropy(proxy.logits(out_feat, tau), mask_t)


def make_rearranger_step(G: sg.Generator, D: sg.Discriminator, R: Rearranger, proxy: ProxyMasks,
                         real_images: torch.Tensor, cfg, *, lambda_self: float | None = None,
                         lambda_mask: float | None = None, lambda_adv: float | None = None,
                         generator: torch.Generator | None = None):
    """One training iteration of R for ``nbsyn.train.fit`` (spec 5.2) and its optimisers.

    Even steps are *self* iterations: target mask phi(M_s) from the same noise, L_self against the
    flipped features and partial image. Odd steps are *cross*: the target is the proxy mask of the
    next sample in the batch (a mask from other noise); only L_mask (and L_adv) apply [L42]. L_adv
    (non-saturating, on G2's image of the current iteration) and a D step with lazy R1 run every
    ``adv_every``-th step in the first ``phase1_fraction`` of ``cfg.iterations`` and every step after [L44].
    G stays frozen. Returns ``(step, optimisers dict)``.
    """
    device = next(G.parameters()).device
    lam_s = cfg["lambda_self"] if lambda_self is None else lambda_self
    lam_m = cfg["lambda_mask"] if lambda_mask is None else lambda_mask
    lam_a = cfg["lambda_adv"] if lambda_adv is None else lambda_adv
    at, bs, tau = cfg["feature_res"], cfg["batch_size"], cfg["tau"]
    phase1_end = int(round(cfg["iterations"] * cfg["phase1_fraction"]))
    G.requires_grad_(False)
    opt_r = torch.optim.Adam(R.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]))
    opts = {"opt_r": opt_r}
    use_adv = lam_a > 0 and D is not None
    if use_adv:
        c = cfg["r1_every"] / (cfg["r1_every"] + 1)  # lazy-regularisation correction of D's Adam [EXT]
        b1, b2 = cfg["betas"]
        opts["opt_d"] = opt_d = torch.optim.Adam(D.parameters(), lr=cfg["lr"] * c, betas=(b1 ** c, b2 ** c))
    gen = generator or torch.Generator().manual_seed(0)
    d_steps = [0]

    def adv_now(i: int) -> bool:
        return use_adv and (i >= phase1_end or i % cfg["adv_every"] == 0)

    def step(i: int) -> dict[str, float]:
        with torch.no_grad():
            z = torch.randn(bs, G.cfg.z_dim, generator=gen).to(device)
            ws = G.map(z)
            feats, partial = split(G.synthesis, ws, at)
            m_s = proxy.assign(feats)
        out = {}
        if i % 2 == 0:  # self iteration with the random flip
            flags = (torch.rand(bs, generator=gen) < cfg["flip_p"]).to(device)
            m_t = flip_where(m_s, flags)
            f_out, rgb_out = R(feats, m_t, partial, m_s)
            ls = self_loss(f_out, flip_where(feats, flags), rgb_out, flip_where(partial, flags))
            out["loss_self"] = ls.item()
            loss = lam_s * ls
        else:  # cross iteration: the mask of another sample
            m_t = m_s.roll(1, 0)
            f_out, rgb_out = R(feats, m_t, partial, m_s)
            loss = torch.zeros((), device=device)
        lm = mask_loss(proxy, f_out, m_t, tau)
        out["loss_mask"] = lm.item()
        loss = loss + lam_m * lm
        with torch.no_grad():
            out["proxy_acc"] = float((proxy.assign(f_out) == m_t).float().mean())
        if adv_now(i):
            rgb_in = rgb_out if rgb_out is not None else partial
            fake = resume(G.synthesis, f_out, rgb_in, ws, at)
            D.requires_grad_(False)
            la = sg.g_nonsaturating_loss(D(fake))
            D.requires_grad_(True)
            out["loss_adv"] = la.item()
            loss = loss + lam_a * la
        opt_r.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
            opt_r.step()
        if adv_now(i):  # D: logistic loss, lazy R1 (gamma = 10 [L40])
            idx = torch.randint(real_images.shape[0], (bs,), generator=gen)
            real = real_images[idx].to(device)
            ld = sg.d_logistic_loss(D(real), D(fake.detach()))
            opt_d.zero_grad(set_to_none=True)
            ld.backward()
            opt_d.step()
            out["loss_d"] = ld.item()
            if cfg["r1_gamma"] > 0 and d_steps[0] % cfg["r1_every"] == 0:
                r1 = sg.r1_penalty(D, real)
                opt_d.zero_grad(set_to_none=True)
                (cfg["r1_gamma"] / 2 * r1 * cfg["r1_every"]).backward()
                opt_d.step()
            d_steps[0] += 1
        return out

    return step, opts


@torch.no_grad()
def rearrange_render(G: sg.Generator, R: Rearranger, feats, partial, ws, mask_t, at: int, mask_s=None,
                     rgb_mode: str = "rearranged", batch_size: int = 64) -> torch.Tensor:
    """x = G2(R(F_s, M_t), w_s). ``rgb_mode``: "rearranged" (spec 4.3 default), "source" (the partial
    image passed unchanged: the trap), "restart" (the skip sum restarted at the split)."""
    if rgb_mode not in ("rearranged", "source", "restart"):
        raise ValueError(f"rgb_mode must be 'rearranged', 'source' or 'restart', got {rgb_mode!r}")
    imgs = []
    for i in range(0, feats.shape[0], batch_size):
        sl = slice(i, i + batch_size)
        ms = mask_s[sl] if mask_s is not None else None
        f_out, rgb_out = R(feats[sl], mask_t[sl], partial[sl], ms)
        if rgb_mode == "source" or rgb_out is None:
            rgb_out = partial[sl]
        elif rgb_mode == "restart":
            rgb_out = torch.zeros_like(partial[sl])
        imgs.append(resume(G.synthesis, f_out, rgb_out, ws[sl], at))
    return torch.cat(imgs).clamp(-1, 1)


# ---------------------------------------------------------------------------------------------
# Baseline: latent optimisation (LinearGAN's semantic-conditional sampling, spec 9.1 / 12.5)
# ---------------------------------------------------------------------------------------------
def latent_optimisation(G: sg.Generator, score: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor,
                        inits: int, steps: int, lr: float, seed: int = 0, reg: float = 1e-3):
    """For each target label map, pick the best of ``inits`` random z by pixel agreement, then Adam on z
    minimising CE(score(z), target) + reg ||z - z0||^2. ``score(z) -> (B, C, h, w)`` logits matching
    ``target`` (B, h, w). Returns (z (B, z_dim), per-step mean loss list)."""
    device = next(G.parameters()).device
    b = target.shape[0]
    gen = torch.Generator().manual_seed(seed)
    z_all = torch.randn(inits, b, G.cfg.z_dim, generator=gen).to(device)
    with torch.no_grad():
        agree = torch.stack([(score(z_all[j]).argmax(1) == target).float().mean((1, 2)) for j in range(inits)])
    z0 = z_all[agree.argmax(0), torch.arange(b, device=device)].clone()
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    losses = []
    for _ in range(steps):
        ce = F.cross_entropy(score(z), target, reduction="none").mean((1, 2))
        loss = (ce + reg * (z - z0).pow(2).sum(1)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item() / b)
    return z.detach(), losses


# ---------------------------------------------------------------------------------------------
# The semantic mapper: OASIS generator without noise, K logits [L36]
# ---------------------------------------------------------------------------------------------
def _mapper_class():
    from nbsyn.models.oasis import OASISGenerator, init_weights

    class SemanticMapper(OASISGenerator):
        """User label map (B, N, h, w) one-hot -> proxy-mask logits (B, K, h, w). No 3D noise [L36]."""

        def __init__(self, num_classes: int, K: int, channels: int, num_res_blocks: int, spade_hidden: int = 128,
                     norm: str = "batch"):
            super().__init__(num_classes, z_dim=0, channels=channels, num_res_blocks=num_res_blocks,
                             spade_hidden=spade_hidden, norm=norm)
            self.to_rgb = nn.Conv2d(self.to_rgb.in_channels, K, 3, padding=1)  # K-logit head instead of RGB
            init_weights(self.to_rgb)
            self.K = K

        def forward(self, labels_onehot: torch.Tensor, noise=None) -> torch.Tensor:
            if labels_onehot.dim() != 4 or labels_onehot.shape[1] != self.num_classes:
                raise ValueError(f"expected a one-hot label map of shape (B, {self.num_classes}, H, W), "
                                 f"got {tuple(labels_onehot.shape)}")
            from nbsyn.nn.spade import resize_nearest, upsample2x

            h, w = labels_onehot.shape[-2:]
            x = self.first_conv(resize_nearest(labels_onehot, self.start_size((h, w))))
            for i, block in enumerate(self.blocks):
                x = block(x, labels_onehot)
                if i < len(self.blocks) - 1:
                    x = upsample2x(x)
            return self.to_rgb(F.leaky_relu(x, 0.2))  # logits, no tanh

    return SemanticMapper


def build_mapper(num_classes: int, K: int, channels: int, num_res_blocks: int, spade_hidden: int | None = None):
    """The mapper at a preset's widths; ``spade_hidden`` defaults to 2 x channels (128 at width 64)."""
    return _mapper_class()(num_classes, K, channels, num_res_blocks, spade_hidden or 2 * channels)


def train_mapper(mapper, cond: torch.Tensor, targets: torch.Tensor, num_classes: int, iterations: int,
                 batch_size: int, lr: float = 1e-4, lambda_recon: float = 10.0, seed: int = 0,
                 adv_iterations: int = 0, lambda_recon_adv: float = 100.0, adv_fn=None, progress: bool = False):
    """Phase 1: lambda_recon * CE(Map(y), proxy mask) for ``iterations`` steps; phase 2: ``adv_iterations``
    steps of lambda_recon_adv * CE + adv_fn(softmax(Map(y)), idx) [L46]. Returns the loss history dict."""
    from nbsyn.data import one_hot
    from tqdm.auto import trange

    device = next(mapper.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(mapper.parameters(), lr=lr, betas=(0.0, 0.999))  # OASIS's G optimiser [EXT]
    hist = {"recon": [], "adv": []}
    mapper.train()
    for i in trange(iterations + adv_iterations, desc="mapper", disable=not progress, mininterval=1.0):
        idx = torch.randint(cond.shape[0], (batch_size,), generator=gen)
        logits = mapper(one_hot(cond[idx], num_classes).to(device))
        ce = F.cross_entropy(logits, targets[idx].to(device))
        if i < iterations:
            loss = lambda_recon * ce
        else:
            la = adv_fn(logits.softmax(1), idx)
            loss = lambda_recon_adv * ce + la
            hist["adv"].append(la.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist["recon"].append(ce.item())
    return hist


# ---------------------------------------------------------------------------------------------
# Evaluation helpers (spec 12.6)
# ---------------------------------------------------------------------------------------------
def class_mean_colours(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[int]):
    """(B, len(classes), 3) mean RGB per class and (B, len(classes)) presence."""
    means, present = [], []
    for c in classes:
        m = (labels == c).float()[:, None]
        n = m.sum((2, 3))
        means.append((images * m).sum((2, 3)) / n.clamp(min=1))
        present.append(n[:, 0] > 0)
    return torch.stack(means, 1), torch.stack(present, 1)


def style_distance(out, out_labels, ref, ref_labels, classes: Sequence[int]) -> torch.Tensor:
    """Per pair: mean over shared classes of the L1 distance between class-mean colours; NaN if none shared."""
    a, pa = class_mean_colours(out, out_labels, classes)
    b, pb = class_mean_colours(ref, ref_labels, classes)
    both = (pa & pb).float()
    d = (a - b).abs().mean(2)
    return torch.where(both.sum(1) > 0, (d * both).sum(1) / both.sum(1).clamp(min=1),
                       torch.full_like(d[:, 0], float("nan")))


# ---------------------------------------------------------------------------------------------
# Editing a proxy mask (the widget's logic)
# ---------------------------------------------------------------------------------------------
def move_region(labels: torch.Tensor, cls: int, dy: int, dx: int, fill: int | None = None) -> torch.Tensor:
    """Move the pixels of class ``cls`` by (dy, dx) in an (H, W) map. Vacated pixels take ``fill``, or by
    default the most frequent other class on the region's border. Pixels moved off the canvas are lost."""
    if labels.dim() != 2:
        raise ValueError(f"move_region takes one (H, W) map, got {tuple(labels.shape)}")
    region = labels == cls
    if not region.any():
        return labels.clone()
    if fill is None:
        grown = F.max_pool2d(region[None, None].float(), 3, 1, 1)[0, 0].bool()
        border = labels[grown & ~region]
        fill = int(border.mode().values) if border.numel() else int(labels[~region].mode().values) \
            if (~region).any() else cls
    out = labels.clone()
    out[region] = fill
    return paste_shifted(out, region, cls, dy, dx)


def cluster_palette(K: int, seed: int = 3) -> list[tuple[int, int, int]]:
    """K distinct colours (evenly spaced hues, alternating brightness) for drawing proxy masks."""
    import colorsys

    out = []
    for k in range(K):
        r, g, b = colorsys.hsv_to_rgb((k * 0.618034 + seed * 0.1) % 1.0, 0.75, 0.95 if k % 2 else 0.7)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


class ProxyMaskPanel:
    """Edit a proxy mask (paint with the mouse, or move one cluster by dy, dx) and regenerate.

    ``generate(mask (h, w)) -> image (3, H, W)``. Logic in ``paint`` / ``move`` / ``render`` (tested in
    Python); ``widget()`` wires them to ipycanvas / ipywidgets.
    """

    def __init__(self, mask: torch.Tensor, names: Sequence[str], palette, generate: Callable, canvas_size: int = 256):
        self.original, self.mask = mask.clone(), mask.clone()
        self.names, self.palette, self.generate, self.canvas_size = list(names), palette, generate, canvas_size
        self.cls, self.radius = 0, 1.0

    def paint(self, points) -> torch.Tensor:
        from nbsyn.widgets import canvas_to_label, paint_stroke

        pts = [canvas_to_label(px, py, self.canvas_size, self.mask.shape[0]) for px, py in points]
        self.mask = paint_stroke(self.mask, pts, self.radius, self.cls)
        return self.mask

    def move(self, cls: int, dy: int, dx: int) -> torch.Tensor:
        self.mask = move_region(self.mask, cls, dy, dx)
        return self.mask

    def reset(self) -> None:
        self.mask = self.original.clone()

    def render(self) -> torch.Tensor:
        """Mask (upsampled to the image size) and generated image side by side."""
        from nbsyn.viz import colorize, grid

        img = self.generate(self.mask).cpu()
        col = colorize(self.mask, self.palette)
        col = F.interpolate(col[None], size=img.shape[-2:], mode="nearest")[0]
        return grid(torch.stack([col, img]), 2)

    def widget(self):
        import ipywidgets as W
        from ipycanvas import Canvas

        from nbsyn.viz import colorize, to_numpy_image
        from nbsyn.widgets import png_bytes

        up = max(1, self.canvas_size // self.mask.shape[0])
        canvas = Canvas(width=self.canvas_size, height=self.canvas_size)
        img_up = max(1, self.canvas_size // self.generate(self.mask).shape[-1])
        result = W.Image(value=png_bytes(self.generate(self.mask).cpu(), img_up), format="png")
        options = [(f"c{k:02d} · {n}", k) for k, n in enumerate(self.names)]
        cls = W.Dropdown(options=options, value=self.cls, description="cluster")
        brush = W.FloatSlider(value=self.radius, min=0.5, max=self.mask.shape[0] / 4, step=0.5, description="brush")
        dy = W.IntSlider(value=0, min=-4, max=4, description="dy")
        dx = W.IntSlider(value=0, min=-4, max=4, description="dx")
        move_b, gen_b, reset_b = W.Button(description="move region"), W.Button(description="generate"), \
            W.Button(description="reset")
        live = W.Checkbox(value=True, description="live")
        stroke = []

        def draw():
            canvas.clear()
            arr = to_numpy_image(colorize(self.mask, self.palette)).repeat(up, 0).repeat(up, 1) * 255
            canvas.put_image_data(arr.astype("uint8"), 0, 0)

        def regenerate(*_):
            result.value = png_bytes(self.generate(self.mask).cpu(), img_up)

        def down(x, y):
            stroke[:] = [(x, y)]
            self.cls, self.radius = cls.value, brush.value
            self.paint(stroke)
            draw()

        def move(x, y):
            if stroke:
                self.paint([stroke[-1], (x, y)])
                stroke.append((x, y))
                draw()

        def release(x, y):
            stroke.clear()
            if live.value:
                regenerate()

        def do_move(_):
            self.move(cls.value, dy.value, dx.value)
            draw()
            regenerate()

        def reset(_):
            self.reset()
            draw()
            regenerate()

        canvas.on_mouse_down(down)
        canvas.on_mouse_move(move)
        canvas.on_mouse_up(release)
        move_b.on_click(do_move)
        gen_b.on_click(regenerate)
        reset_b.on_click(reset)
        draw()
        return W.VBox([W.HBox([cls, brush, live, gen_b, reset_b]), W.HBox([dy, dx, move_b]),
                       W.HBox([canvas, result])])
