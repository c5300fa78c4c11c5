"""Smoothness similarity regularisation (SSR) for few-shot GAN adaptation (thesis ch. 7, appendix E).

A generator G_s pre-trained on a large source domain is fine-tuned into G_t on 10 target images.
Two ideas [L1972]:

* **L_SS** (Eqs. 7.1-7.2, [L1982-1986]): make G_t's *local* latent-to-feature behaviour equal to
  G_s's. With G^l the features after block l (at 32x32 in the paper [L2019]) and a Gaussian probe y
  of the shape of G^l(z),

      J^T_{G^l}(z) y = grad_z <G^l(z), y>                                            (7.1)
      L_SS = lambda_SS E_{z,y} || grad_z <G_s^l(z), y> - grad_z <G_t^l(z), y> ||_2     (7.2)

  with the same z and the same y for both generators, only G_t updated, lambda_SS = 5.
* **L_all** (Eq. 7.3, [L2005-2007]): a real/fake head s^i after *every* discriminator block and the
  unweighted mean of the pre-training loss over blocks, L_all = 1/N sum_i L_D[s^i(D^i(x))].

Baselines with the same budget: TGAN (plain fine-tuning of G and D [L623]) and FreezeD (the
earliest D layers frozen [L623-625]); the ablation arm "L_SS with the plain D" reproduces the
second row of Table 7.3. CDC (Ojha et al. 2021), the strongest prior method of Table 7.1 in
LPIPS, is included from its own paper's description (the thesis does not restate it).

The StyleGAN2 backbone is ``nbsyn.models.stylegan2``. ``PRESETS`` serves notebook
``04_stylegan2_ssr``.
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

from nbsyn.models import stylegan2 as sg
from nbsyn.nn.heads import DecisionHead, per_block_bce

LAMBDA_SS = 5.0  # [L2019]
SS_RESOLUTION_PAPER = 32  # features G^l at 32x32 for 256x256 images [L2019]

# ---------------------------------------------------------------------------------------------
# presets of notebook 04_stylegan2_ssr
# ---------------------------------------------------------------------------------------------
_COMMON = dict(
    dataset="faces",  # source domain (stands in for FFHQ / LSUN-Church [L2017])
    target_dataset="scenes",  # target domain, structurally dissimilar (stands in for Anime / Shells)
    n_shots=10,  # 10-shot adaptation [L2017]
    lr=0.002,  # adaptation: StyleGAN2 / CDC Adam lr, betas (0, 0.99) [L2019 "follow CDC"]
    pretrain_lr=0.002,  # pre-training the stand-in source G_s (the paper uses published checkpoints)
    r1_every=16,  # lazy R1 (StyleGAN2 default)
    mixing_prob=0.9,  # style mixing regularisation (StyleGAN2 default) during pre-training
    lambda_ss=LAMBDA_SS,  # lambda_SS = 5 [L2019]
    diffaug_policy="translation,flip",  # DA on real and fake [L918-927]; Ch. 7 does not name its DA
    diffaug_p=0.5,
    arms=("TGAN", "FreezeD", "CDC", "L_SS (plain D)", "L_all", "L_all + L_SS", "L_all + L_SS (λ=1)"),
)

PRESETS = {
    "smoke": dict(
        # the cpu model size, so that smoke also adapts the shipped reference G_s (stylegan2_faces32)
        _COMMON, seed=0, image_size=32, model="cpu", batch_size=4, iterations=4, time_budget_s=None,
        pretrain_iterations=6, pretrain_time_budget_s=None, n_source=64, r1_gamma=0.01, ema_decay=0.9,
        adapt_ema_decay=0.5,
        ss_resolution=16, freeze_d_blocks=1, n_eval=20, n_heldout=20, n_interp_pairs=2, interp_steps=6,
        arms=("TGAN", "CDC", "L_all + L_SS"),
    ),
    "cpu": dict(
        _COMMON, seed=0, image_size=32, model="cpu", batch_size=8, iterations=200, time_budget_s=None,
        pretrain_iterations=3000, pretrain_time_budget_s=None, n_source=1000,
        pretrain_lr=0.004,  # ours: 2x StyleGAN2's lr so that G_s makes faces within CPU minutes
        r1_gamma=0.0128,  # StyleGAN2 heuristic gamma = 0.0002 * res^2 / batch (32 px, batch 16)
        ema_decay=0.995,
        adapt_ema_decay=0.97,  # CDC: 0.5 ** (32 / 10k) ~ 0.998 over 5k steps; same half-life fraction here
        ss_resolution=16, freeze_d_blocks=1, n_eval=200, n_heldout=200, n_interp_pairs=20,
        interp_steps=16,
    ),
    "gpu": dict(
        _COMMON, seed=0, image_size=64, model="gpu", batch_size=16, iterations=3000, time_budget_s=None,
        pretrain_iterations=30000, pretrain_time_budget_s=None, n_source=20000, r1_gamma=0.05,
        ema_decay=0.999, adapt_ema_decay=0.99, ss_resolution=16, freeze_d_blocks=2, n_eval=1000, n_heldout=1000,
        n_interp_pairs=50, interp_steps=16,
    ),
    "paper": dict(
        _COMMON, seed=0, image_size=256, model="paper",
        batch_size=4,  # CDC's batch size (the thesis follows CDC [L2019])
        iterations=30000,  # "30k epochs" for dissimilar pairs [L2023] (most likely iterations)
        time_budget_s=None, pretrain_iterations=0,  # the paper starts from official checkpoints [L2017]
        pretrain_time_budget_s=None, n_source=0, dataset="ffhq", target_dataset="anime_face_10shot",
        r1_gamma=10.0,  # CDC's default r1 = 10 (specs C.3, [EXT])
        ema_decay=0.999,
        adapt_ema_decay=0.9978,  # CDC: 0.5 ** (32 / 10_000) [EXT]
        ss_resolution=SS_RESOLUTION_PAPER, freeze_d_blocks=4, n_eval=5000, n_heldout=5000, n_interp_pairs=50,
        interp_steps=16,
    ),
}

# The adaptation arms: which discriminator loss, how many D blocks frozen, whether L_SS is on.
ARMS = {
    "TGAN": dict(d_loss="last", freeze=False, use_ss=False),  # naive fine-tuning [L623]
    "FreezeD": dict(d_loss="last", freeze=True, use_ss=False),  # first D layers frozen [L623-625]
    "L_SS (plain D)": dict(d_loss="last", freeze=False, use_ss=True),  # Table 7.3, row 2
    "L_all": dict(d_loss="all", freeze=False, use_ss=False),  # Table 7.3, row 5
    "L_all + L_SS": dict(d_loss="all", freeze=False, use_ss=True),  # the thesis' method, row 6
    # Table 7.4's lambda sweep: the same method with lambda_SS = 1 instead of 5
    "L_all + L_SS (λ=1)": dict(d_loss="all", freeze=False, use_ss=True, lambda_ss=1.0),
    # CDC (Ojha et al. 2021) [L627, L910]: distance consistency + anchor / patch discriminator
    "CDC": dict(d_loss="cdc", freeze=False, use_ss=False, cdc=True),
}

# CDC settings (not in the thesis; [EXT] from the CDC paper and its released defaults)
CDC_LAMBDA = 1000.0  # weight of the distance-consistency KL
CDC_ANCHOR_EVERY = 4  # every 4th step samples z near an anchor and uses the image-level D
CDC_ANCHOR_STD = 0.05  # spread of z around an anchor


# ---------------------------------------------------------------------------------------------
# L_SS: Eqs. 7.1 and 7.2
# ---------------------------------------------------------------------------------------------
def jacobian_transpose_probe(feature_fn, z: torch.Tensor, y: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Eq. 7.1: J^T(z) y = grad_z <G^l(z), y>, one backward pass of the scalar <G^l(z), y>.

    ``feature_fn(z) -> G^l(z)``; ``y`` has the shape of G^l(z). ``create_graph=True`` keeps the graph
    so that a loss on the result can be back-propagated into the generator (double backward).
    """
    if not z.requires_grad:
        z = z.detach().requires_grad_(True)
    feats = feature_fn(z)
    if feats.shape != y.shape:
        raise ValueError(f"probe y has shape {tuple(y.shape)} but G^l(z) has shape {tuple(feats.shape)}")
    (grad,) = torch.autograd.grad((feats * y).sum(), z, create_graph=create_graph)
    return grad


def smoothness_similarity_loss(G_s: sg.Generator, G_t: sg.Generator, z: torch.Tensor, resolution: int,
                               lambda_ss: float = LAMBDA_SS, y: torch.Tensor | None = None,
                               noise_mode: str = "const") -> torch.Tensor:
    """Eq. 7.2: lambda_SS * mean_b || J_s^T y - J_t^T y ||_2 with the same z and y for both generators.

    G_s is treated as a constant (its Jacobian-probe product is detached; its parameters get no
    gradient); G_t's side keeps the graph. The per-sample norm is ``torch.linalg.vector_norm``,
    whose gradient at exactly 0 is 0: at the first fine-tuning step G_t = G_s and the loss is 0 with
    a finite gradient, where a hand-written sqrt(sum(v**2)) would give NaN.
    ``noise_mode='const'`` makes both generators use their (identical) stored noise inputs.
    """
    z = z.detach().requires_grad_(True)
    flags = [p.requires_grad for p in G_s.parameters()]
    G_s.requires_grad_(False)  # G_s is frozen [L1988]; the graph still reaches z
    try:
        feats_s = G_s.features(z, resolution, noise_mode)
        if y is None:
            y = torch.randn_like(feats_s)  # one Gaussian probe, shared by both generators
        g_s = jacobian_transpose_probe(lambda _: feats_s, z, y).detach()  # Eq. 7.1 for G_s
    finally:
        for p, f in zip(G_s.parameters(), flags):
            p.requires_grad_(f)

    def feats_t(zz):
        return G_t.features(zz, resolution, noise_mode)

    g_t = jacobian_transpose_probe(feats_t, z, y, create_graph=True)
    return lambda_ss * torch.linalg.vector_norm(g_s - g_t, dim=1).mean()


# ---------------------------------------------------------------------------------------------
# L_all: per-block discriminator heads, Eq. 7.3
# ---------------------------------------------------------------------------------------------
class PerBlockDiscriminator(nn.Module):
    """A pre-trained StyleGAN2 D plus a new real/fake head s^i after every block (Eq. 7.3).

    ``forward(x)`` returns the list of logit maps [s^1(D^1(x)), ..., s^{N-1}(D^{N-1}(x)), l^N(x)]: the
    new 1x1 heads on the residual blocks' outputs (patch logits) and, last, the original D's own
    logit (its epilogue, mini-batch std + conv + FC, is the N-th block). The heads are new layers,
    initialised from scratch [specs C.8.4]; the thesis does not give their design [specs C.9].
    """

    def __init__(self, D: sg.Discriminator):
        super().__init__()
        self.D = D
        self.heads = nn.ModuleList(DecisionHead(c, spectral=False) for c in D.block_channels)

    @property
    def num_blocks(self) -> int:
        return len(self.heads) + 1

    def forward(self, x: torch.Tensor, mode: str = "all") -> list[torch.Tensor]:
        """``mode='all'``: every block's logits (L_all); ``mode='last'``: only the original logit;
        ``mode='patch'``: only the head of the middle block (a PatchGAN decision at k < N, as CDC)."""
        if mode == "last":
            return [self.D(x)]
        if mode not in ("all", "patch"):
            raise ValueError(f"mode must be 'all', 'last' or 'patch', got {mode!r}")
        logits, feats = self.D(x, return_features=True)
        if mode == "patch":
            k = self.patch_block
            return [self.heads[k](feats[k])]
        return [head(f) for head, f in zip(self.heads, feats)] + [logits]

    @property
    def patch_block(self) -> int:
        """Index of the block whose head makes the patch-level decision (the middle one)."""
        return (len(self.heads) - 1) // 2

    def freeze_early_layers(self, n_blocks: int) -> list[str]:
        """FreezeD (Mo et al. 2020): freeze FromRGB and the first ``n_blocks`` blocks of D.

        Returns the names of the frozen parameters."""
        if not 0 <= n_blocks <= len(self.D.blocks):
            raise ValueError(f"n_blocks must be in [0, {len(self.D.blocks)}], got {n_blocks}")
        frozen = []
        modules = [("fromrgb", self.D.fromrgb)] + [(f"blocks.{i}", self.D.blocks[i]) for i in range(n_blocks)]
        for prefix, m in modules:
            for name, p in m.named_parameters():
                p.requires_grad_(False)
                frozen.append(f"D.{prefix}.{name}")
        return frozen


def d_loss_all(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 7.3: the pre-training (NS-GAN cross-entropy) loss of D averaged over the N blocks."""
    return per_block_bce(real_logits, real=True) + per_block_bce(fake_logits, real=False)


def g_loss_all(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """The matching non-saturating generator loss, averaged over the same N heads."""
    return per_block_bce(fake_logits, real=True)


# ---------------------------------------------------------------------------------------------
# CDC baseline (Ojha et al. 2021), the thesis' main prior method [L627, L910]
# ---------------------------------------------------------------------------------------------
def distance_consistency_loss(G_s: sg.Generator, G_t: sg.Generator, z: torch.Tensor,
                              lambda_cdc: float = CDC_LAMBDA) -> torch.Tensor:
    """CDC's cross-domain distance consistency: for every synthesis block l and sample i, the
    softmax over j != i of the cosine similarities between the features of samples i and j must be
    the same in G_t as in G_s; KL(p_s || p_t), averaged over entries as in CDC's code, summed over
    blocks. It needs a batch of at least 2 latents. A *non-gradient* constraint on image
    similarities, the kind the thesis argues breaks for dissimilar domains [L3918]."""
    b = z.shape[0]
    if b < 2:
        raise ValueError("the distance-consistency loss needs a batch of at least 2 latents")
    off_diagonal = ~torch.eye(b, dtype=torch.bool, device=z.device)
    with torch.no_grad():
        _, feats_s = G_s(z, noise_mode="const", return_features=True)
    _, feats_t = G_t(z, noise_mode="const", return_features=True)
    loss = z.new_zeros(())
    for res in feats_s:
        sims = []
        for feats in (feats_s[res], feats_t[res]):
            f = F.normalize(feats.flatten(1), dim=1)
            sims.append((f @ f.t())[off_diagonal].view(b, b - 1))
        log_p_s, log_p_t = sims[0].log_softmax(dim=1), sims[1].log_softmax(dim=1)
        loss = loss + (log_p_s.exp() * (log_p_s - log_p_t)).mean()  # KL(p_s || p_t), mean over entries
    return lambda_cdc * loss


# ---------------------------------------------------------------------------------------------
# adaptation
# ---------------------------------------------------------------------------------------------
def setup_arm(arm: str, G_source: sg.Generator, D_source: sg.Discriminator, *, freeze_d_blocks: int, lr: float,
              r1_every: int):
    """Copies of the source G and D prepared for one adaptation arm, with their optimisers.

    Returns dict(G_t, D (PerBlockDiscriminator), opt_g, opt_d, spec, frozen).
    """
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    spec = ARMS[arm]
    G_t = copy.deepcopy(G_source).train().requires_grad_(True)
    D = PerBlockDiscriminator(copy.deepcopy(D_source).train().requires_grad_(True))
    D.to(next(G_t.parameters()).device)
    frozen = D.freeze_early_layers(freeze_d_blocks) if spec["freeze"] else []
    opt_g, opt_d = sg.make_optimizers(G_t, D, lr=lr, r1_every=r1_every)
    return dict(G_t=G_t, D=D, opt_g=opt_g, opt_d=opt_d, spec=spec, frozen=frozen)


def make_adapt_step(G_s: sg.Generator, G_t: sg.Generator, D: PerBlockDiscriminator, opt_g, opt_d,
                    shots: torch.Tensor, spec: dict, *, batch_size: int, r1_gamma: float, r1_every: int,
                    lambda_ss: float, ss_resolution: int, augment=None, ema=None,
                    generator: torch.Generator | None = None):
    """One fine-tuning step for ``nbsyn.train.fit``.

    D: ``L_all`` (Eq. 7.3) or the last-block loss, plus lazy R1 on the augmented shots.
    G: the matching non-saturating loss, plus ``L_SS`` (Eq. 7.2) if the arm uses it, weighted by
    ``lambda_ss`` unless the arm's spec fixes its own. The CDC arm instead alternates anchor steps
    (z near one of ``n_shots`` anchors, image-level D) with patch-level steps, and adds the
    distance-consistency loss.

    ``generator`` (a CPU ``torch.Generator``) draws the shot indices and every latent, so two arms
    given equally seeded generators see the same batches and latents whatever ran before them; the
    L_SS probes, the augmentation and StyleGAN's noise inputs use the global RNG (seed it per arm).
    """
    device = next(G_t.parameters()).device
    aug = augment or (lambda x: x)
    lambda_ss = spec.get("lambda_ss", lambda_ss)  # an arm may fix its own lambda (Table 7.4)
    cdc = spec.get("cdc", False)
    z_dim = G_t.cfg.z_dim
    if cdc:  # CDC's anchors: one latent region per shot, seeded so that every run gets the same ones
        anchors = torch.randn(shots.shape[0], z_dim, generator=torch.Generator().manual_seed(0)).to(device)

    def randn() -> torch.Tensor:  # latents from ``generator`` (on the CPU, then moved), else the global RNG
        return torch.randn(batch_size, z_dim, generator=generator).to(device)

    def sample_z(i: int) -> tuple[torch.Tensor, str]:
        """Latents and the D mode of this step (CDC alternates anchor/image-level and patch-level)."""
        if not cdc:
            return randn(), spec["d_loss"]
        if i % CDC_ANCHOR_EVERY == 0:
            pick = torch.randint(anchors.shape[0], (batch_size,), generator=generator).to(device)
            return anchors[pick] + CDC_ANCHOR_STD * randn(), "last"
        return randn(), "patch"
    g_params = [p for p in G_t.parameters() if p.requires_grad]
    d_params = [p for p in D.parameters() if p.requires_grad]
    G_s.requires_grad_(False).eval()

    def set_grad(params, flag):
        for p in params:
            p.requires_grad_(flag)

    def step(i: int) -> dict[str, float]:
        idx = torch.randint(shots.shape[0], (batch_size,), generator=generator)
        real = shots[idx].to(device)
        set_grad(g_params, False)
        set_grad(d_params, True)
        z, mode = sample_z(i)
        with torch.no_grad():
            fake = G_t(z)
        loss_d = d_loss_all(D(aug(real), mode), D(aug(fake), mode))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        out = {"loss_d": loss_d.item()}
        if r1_gamma > 0 and r1_every > 0 and i % r1_every == 0:
            r1 = sg.r1_penalty(lambda x: torch.stack([l.reshape(l.shape[0], -1).mean(1) for l in D(x, mode)]).sum(0),
                               aug(real).detach())
            opt_d.zero_grad(set_to_none=True)
            (r1_gamma / 2 * r1 * r1_every).backward()
            opt_d.step()
        set_grad(g_params, True)
        set_grad(d_params, False)
        z, mode = sample_z(i)
        loss_g = g_loss_all(D(aug(G_t(z)), mode))
        total = loss_g
        if cdc:
            loss_cdc = distance_consistency_loss(G_s, G_t, randn())
            total = total + loss_cdc
            out["loss_cdc"] = loss_cdc.item()
        if spec["use_ss"]:
            loss_ss = smoothness_similarity_loss(G_s, G_t, z, ss_resolution, lambda_ss)
            total = total + loss_ss
            out["loss_ss"] = loss_ss.item()
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
        set_grad(d_params, True)
        if ema is not None:
            ema.update(G_t)
        out["loss_g"] = loss_g.item()
        return out

    return step


# ---------------------------------------------------------------------------------------------
# evaluation without pretrained networks (specs C.10)
# ---------------------------------------------------------------------------------------------
def nearest_shot(samples: torch.Tensor, shots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and RMSE to the nearest training shot for each sample (pixel space, [-1, 1] units)."""
    d = torch.cdist(samples.flatten(1).double(), shots.flatten(1).double()) / samples[0].numel() ** 0.5
    best, idx = d.min(1)
    return idx, best.float()


def intra_cluster_diversity(samples: torch.Tensor, shots: torch.Tensor, pair_distance=None) -> float:
    """Intra-cluster diversity (CDC's intra-LPIPS protocol [L2023]): assign every sample to its nearest
    shot, average the pairwise distance inside each cluster, then over clusters with >= 2 members.

    ``pair_distance(a, b) -> (P,)``; default the mean absolute pixel difference (a pixel-space proxy
    of LPIPS, labelled as such in the notebook). Returns nan if no cluster has two members."""
    pair_distance = pair_distance or (lambda a, b: (a - b).abs().flatten(1).mean(1))
    idx, _ = nearest_shot(samples, shots)
    values = []
    for k in range(shots.shape[0]):
        members = samples[idx == k]
        if members.shape[0] < 2:
            continue
        i, j = zip(*itertools.combinations(range(members.shape[0]), 2))
        values.append(pair_distance(members[list(i)], members[list(j)]).mean())
    return float(torch.stack(values).mean()) if values else float("nan")


@torch.no_grad()
def interpolation_frames(G: sg.Generator, z0: torch.Tensor, z1: torch.Tensor, steps: int,
                         noise_mode: str = "const") -> torch.Tensor:
    """Images along the straight line z0 -> z1 (``steps`` frames each): (P, steps, 3, R, R)."""
    t = torch.linspace(0, 1, steps, device=z0.device)
    z = z0[:, None] + t[None, :, None] * (z1 - z0)[:, None]
    imgs = G(z.flatten(0, 1), noise_mode=noise_mode).clamp(-1, 1)
    return imgs.view(z0.shape[0], steps, *imgs.shape[1:])


def staircase_index(frames: torch.Tensor) -> torch.Tensor:
    """Per path: largest step / mean step of the image change along an interpolation (specs C.10).

    About 1 = smooth, >> 1 = a "staircase" that jumps between a few modes [L1976]. frames (P, S, ...)."""
    steps = (frames[:, 1:] - frames[:, :-1]).abs().flatten(2).mean(2)  # (P, S-1)
    return steps.max(1).values / steps.mean(1).clamp_min(1e-12)
