# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · A small StyleGAN2, and few-shot adaptation with smoothness similarity regularisation
#
# **Idea.** A GAN trained from scratch on 10 images collapses. The usual remedy is to *fine-tune*
# a generator $G_s$ pre-trained on a large source domain, but when the target is structurally
# different (faces → anime, churches → shells) plain fine-tuning memorises the 10 shots and
# its latent walks become "staircases" that jump from one shot to the next. The thesis proposes
# two changes (ch. 7 and appended paper E):
#
# 1. **Smoothness similarity** $\mathcal L_{SS}$: make the target generator $G_t$ react to a small
#    latent step the way $G_s$ did, by matching Jacobian-vector products of intermediate features;
# 2. **$\mathcal L_{all}$**: a real/fake decision after *every* discriminator block, averaged, so the
#    discriminator cannot simply memorise the shots.
#
# This notebook first builds StyleGAN2 (Karras et al., CVPR 2020) from scratch — the thesis'
# backbone [thesis L2013-2019] — pre-trains it on a procedural source domain, then adapts it to 10
# images of a structurally different domain with the method and its baselines under the same budget.
#
# *Reference:* V. Sushko, PhD thesis (2024), ch. 7 "Smoothness similarity regularization for
# few-shot GAN adaptation" [L1940-2175], and paper E [L3870-4062]. Line numbers `[Lxxxx]` refer to
# `papers/sushko2024_thesis_oasis_sivgan_osmis_ssr.txt`. No official code was released.

# %% tags=["parameters"]
preset = "auto"
device = "auto"
seed = None
iterations = None
image_size = None
dataset = None
out_dir = "runs/latest/04_stylegan2_ssr"
pretrained = True  # start from the shipped reference G_s (stylegan2_faces32) where the preset's model matches it

# %%
import copy
import hashlib
import math
import os
import re
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from nbsyn import data, metrics, presets, pretrained as reference_models, reproduce, runtime, train, viz, widgets
from nbsyn.metrics.lpips import lpips_pairs
from nbsyn.models import ssr
from nbsyn.models import stylegan2 as sg
from nbsyn.nn.diffaug import diff_augment

NOTEBOOK = "04_stylegan2_ssr"
cfg = presets.resolve(NOTEBOOK, preset, seed=seed, iterations=iterations, image_size=image_size,
                      dataset=dataset)
# One thread unless NBSYN_THREADS says otherwise: on a shared, oversubscribed CPU two OpenMP threads
# made a training step of this small model ~25x slower than one (measured while writing this).
dev = runtime.setup(cfg.seed, device, threads=None if "NBSYN_THREADS" in os.environ else 1)
out = reproduce.resolve_out_dir(out_dir)
out.mkdir(parents=True, exist_ok=True)
# checkpoints are named after the configuration, so a changed setting never resumes a stale run
run_tag = hashlib.sha1(repr(sorted(cfg.as_dict().items())).encode()).hexdigest()[:8]
notebook_start = time.perf_counter()
print(cfg)

# %% [markdown]
# ## 1. Data: a source domain and a structurally different 10-shot target
#
# The paper adapts StyleGAN2 checkpoints pre-trained on FFHQ, LSUN-Church and LSUN-Horse to
# 10-shot subsets of Anime-Face, Shells and Pokemons [L2017]. Offline, we stand in with two
# procedural domains of `nbsyn.data`:
#
# * **source** = `faces` (a centred head on a coloured background; plenty of images, like FFHQ);
# * **target** = 10 images of `scenes` (sky, mountains, grass, trees, a road or lake): a different
#   layout, different shapes and a different palette — a "structurally dissimilar" pair in the sense
#   of Church → Shells, not a close pair like Face → Sketch [L2017, L2064].
#
# A **held-out** set of target images (a different generator seed, never shown to any model)
# plays the role of the paper's validation set for FID [L2023] and calibrates the memorisation test.

# %%
if cfg.dataset not in data.DATASETS or cfg.target_dataset not in data.DATASETS:
    raise ValueError(
        f"preset {cfg.preset!r} asks for source {cfg.dataset!r} and target {cfg.target_dataset!r}; offline only the "
        f"procedural datasets {data.DATASETS} exist (the paper's FFHQ / Anime-Face are not shipped)")
source = data.make_dataset(cfg.dataset, cfg.n_source, cfg.image_size, seed=cfg.seed)
target_pool = data.make_dataset(cfg.target_dataset, cfg.n_shots + cfg.n_heldout, cfg.image_size, seed=cfg.seed + 1)
shots = target_pool.images[: cfg.n_shots]
heldout = target_pool.images[cfg.n_shots :]
data.check_images(shots, cfg.image_size)
fig, axes = plt.subplots(1, 2, figsize=(12, 2.8))
viz.show_images(source.images[:16], nrow=8, title=f"source '{cfg.dataset}' ({len(source)} images)", ax=axes[0])
viz.show_images(shots, nrow=5, title=f"target: the {cfg.n_shots} shots of '{cfg.target_dataset}'", ax=axes[1])
viz.save(fig, out, "data")
plt.show()

# %% [markdown]
# ## 2. StyleGAN2 from scratch
#
# `nbsyn.models.stylegan2` follows the StyleGAN2 paper's defaults (config F):
#
# * a **mapping network** $z \mapsto w$ (8 fully connected layers, learning rate × 0.01);
# * a **learned constant** 4×4 input; per resolution two **modulated 3×3 convolutions**, per-pixel
#   **noise** with a learned strength, a leaky ReLU, and a **ToRGB** layer whose outputs are summed
#   across resolutions (**skip generator**);
# * a **residual discriminator** with minibatch standard deviation;
# * the non-saturating logistic loss (thesis Eq. 3.5 [L780]) with **lazy R1** [L860], **style
#   mixing**, the **truncation trick** and an **EMA** of the generator weights.
#
# The heart is the modulated convolution (StyleGAN2 Eqs. 1-3, drawn in thesis Fig. 3.3 [L880-882]):
# the style $s = A(w)$ scales the input channels of the weights, and *demodulation* rescales each
# output channel so that unit-variance inputs give unit-variance outputs:
#
# $$w'_{ijk} = s_i\, w_{ijk}, \qquad w''_{ijk} = \frac{w'_{ijk}}{\sqrt{\sum_{i,k} {w'_{ijk}}^2 + \epsilon}}.$$
#
# The check below compares the batched ("fused", one grouped convolution) implementation with a
# direct per-sample computation, and measures the output variance.

# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(0)
x = torch.randn(4, 32, 24, 24, generator=g, dtype=torch.float64)
w = torch.randn(16, 32, 3, 3, generator=g, dtype=torch.float64)
s = torch.rand(4, 32, generator=g, dtype=torch.float64) * 3 + 0.2
blur = sg.make_blur_kernel().double()
for up in (False, True):
    fused = sg.modulated_conv2d(x, w, s, up=up, blur_kernel=blur, fused=True)
    unfused = sg.modulated_conv2d(x, w, s, up=up, blur_kernel=blur, fused=False)
    direct = sg.modulated_conv2d_reference(x, w, s, up=up, blur_kernel=blur)
    assert torch.allclose(fused, direct) and torch.allclose(unfused, direct)
    print(f"up={up}: output {tuple(fused.shape)}, fused = unfused = direct per-sample computation")
y = sg.modulated_conv2d(x, w, s)[:, :, 1:-1, 1:-1]
print(f"input std 1.00 -> demodulated output std {y.std():.2f} "
      f"(without demodulation: {sg.modulated_conv2d(x, w, s, demodulate=False).std():.1f})")

# %% [markdown]
# **Parameter counts.** The thesis uses StyleGAN2 at 256×256 with CDC's settings [L2019], i.e.
# config F. Our `paper` configuration reproduces the official implementation's published per-layer
# table (e.g. 2,622,465 parameters for a 512→512 modulated conv, 262,656 per mapping layer); its
# generator totals **30,034,338** parameters. The notebook trains a small configuration of the
# *same* architecture (fewer channels, 4 mapping layers, 32×32 at the `cpu` preset).

# %%
# NBVAL_CHECK_OUTPUT
G_paper, D_paper = sg.build("paper")
print(f"paper config (256x256, config F): G {sg.count_parameters(G_paper):,}  D {sg.count_parameters(D_paper):,}"
      f"  num_ws {G_paper.num_ws}")
assert sg.count_parameters(G_paper) == 30_034_338
del G_paper, D_paper
model_cfg = sg.make_config(cfg.model, image_size=cfg.image_size)
G_src, D_src = sg.build(model_cfg)
G_src, D_src = G_src.to(dev), D_src.to(dev)
print(f"this run ({cfg.model}): G {sg.count_parameters(G_src):,}  D {sg.count_parameters(D_src):,}  "
      f"channels per resolution { {r: model_cfg.channels(r) for r in model_cfg.resolutions} }")
z = torch.randn(2, model_cfg.z_dim, device=dev)
img, feats = G_src(z, return_features=True)
print("image", tuple(img.shape), "| features", {r: tuple(f.shape[1:]) for r, f in feats.items()})

# %% [markdown]
# `G(z, return_features=True)` returns the output of every synthesis block by resolution, and
# `G.features(z, r)` computes only up to the r×r block. Notebooks 05 and 07 use these features; here
# they are the $G^l(z)$ of the smoothness regulariser.
#
# ## 3. The source generator $G_s$
#
# The paper starts from published checkpoints (FFHQ, LSUN). We do the same with our own: the
# project trained a StyleGAN2 of this `cpu` configuration on 4,000 procedural faces once, for a fixed
# number of steps (printed below; lr 0.004, lazy R1 γ = 0.0128, style mixing 0.9, translation + flip DiffAugment
# [L918-927] on real and fake, EMA 0.999), and ships it as the reference model `stylegan2_faces32`
# (`python -m nbsyn.pretrained list`; `python -m nbsyn.pretrained train stylegan2_faces32` remakes it,
# bit-identically). $G_s$ is its EMA generator and the adaptation starts from its discriminator.
#
# With `pretrained=False`, or at a preset whose model is not the shipped one (`gpu`), this cell
# pre-trains $G_s$ here instead for `pretrain_iterations` steps with the same recipe (the short run
# that earlier versions of this notebook used: it shows the dynamics but draws rough faces).

# %%
def augment(x):
    return diff_augment(x, policy=cfg.diffaug_policy, p=cfg.diffaug_p)


REFERENCE = "stylegan2_faces32"
ref_spec = reference_models.entry(REFERENCE)
use_reference = pretrained and (cfg.model, cfg.image_size, cfg.dataset) == (
    ref_spec.settings["config"], ref_spec.image_size, ref_spec.dataset)
pretrain_history = None
if use_reference:
    reference = reference_models.load(REFERENCE, dev)
    G_s, D_src = reference.G, reference.D
    print(f"G_s = reference model {REFERENCE}: {reference.entry['steps']} steps on {reference.entry['device']}, "
          f"{reference.entry['wall_seconds'] / 60:.0f} min, commit {reference.entry['commit'][:10]}")
else:
    if pretrained:
        print(f"no shipped reference model matches this preset ({cfg.model}, {cfg.image_size}px): pre-training G_s here")
    opt_g, opt_d = sg.make_optimizers(G_src, D_src, lr=cfg.pretrain_lr, r1_every=cfg.r1_every)
    ema_src = train.EMA(G_src, cfg.ema_decay)
    pretrain_step = sg.make_train_step(G_src, D_src, opt_g, opt_d, source.images, batch_size=cfg.batch_size,
                                       r1_gamma=cfg.r1_gamma, r1_every=cfg.r1_every, mixing_prob=cfg.mixing_prob,
                                       ema=ema_src, augment=augment)
    pretrain_history = train.fit(pretrain_step, cfg.pretrain_iterations,
                                 {"G": G_src, "D": D_src, "opt_g": opt_g, "opt_d": opt_d, "ema": ema_src},
                                 ckpt_path=out / f"pretrain_source_{run_tag}.pt", ckpt_every=500,
                                 time_budget_s=cfg.pretrain_time_budget_s, desc="pre-train G_s")
    print(f"{pretrain_history.steps} steps in {pretrain_history.seconds:.0f} s")
    G_s = ema_src.module  # the source generator used from here on: the EMA weights, frozen
    G_s.requires_grad_(False).eval()
complete = pretrain_history is None or not pretrain_history.stopped_by_budget
fig, axes = plt.subplots(1, 2, figsize=(14, 3.4))
if pretrain_history is not None and pretrain_history.steps:
    viz.plot_losses(pretrain_history, keys=["loss_d", "loss_g"], ax=axes[0], title="pre-training losses")
else:
    axes[0].set_axis_off()
    axes[0].text(0, 0.5, f"G_s: the shipped reference model {REFERENCE}\n({ref_spec.steps} steps, trained once by"
                 f"\npython -m nbsyn.pretrained train {REFERENCE})", fontsize=10)
viz.show_images(sg.sample(G_s, 16, seed=1), nrow=8, title="G_s samples (EMA)", ax=axes[1])
viz.save(fig, out, "source_generator")
plt.show()

# %% [markdown]
# **How good is $G_s$?** Measured now, in this cell, not quoted: the spherical K-means purity of its
# 16×16 features against a segmenter's labels of its samples (do the features "know" the face
# parts? the majority baseline is what a single cluster would score), the mean pairwise MS-SSIM of
# its samples (lower = more diverse) and the RMSE to the nearest of 512 training faces (near 0 would
# mean copying). Notebooks 05 and 07 build on these same features.

# %%
# NBVAL_CHECK_OUTPUT
if use_reference:
    source_quality = reference_models.RECIPES["stylegan2"].evaluate(ref_spec, reference, dev)
    for key, value in source_quality.items():
        print(f"{key:>18}: {value:.3f}   (manifest: {reference.metrics.get(key, float('nan')):.3f})")

# %% [markdown]
# ## 4. Smoothness similarity regularisation $\mathcal L_{SS}$
#
# How $G^l$, the features after block $l$, change under a small latent step is described by the
# Jacobian $J_{G^l}(z) = \partial G^l(z)/\partial z$ [L1980]. Full Jacobians are expensive; their
# product with a Gaussian probe $y$ of the shape of $G^l(z)$ costs one backward pass
# (Eq. 7.1 [L1982-1984]):
#
# $$J^T_{G^l}(z)\, y = \mathbb E_{y\sim\mathcal N(0,1)} \nabla_z \langle G^l(z), y\rangle .$$
#
# The regulariser asks the target generator to have the source's Jacobian, probed with **the same
# $z$ and the same $y$** (Eq. 7.2 [L1986]); only $G_t$ is updated:
#
# $$\mathcal L_{SS} = \lambda_{SS}\, \mathbb E_{z,y}\, \big\| \nabla_z\langle G_s^l(z), y\rangle - \nabla_z\langle G_t^l(z), y\rangle \big\|_2,
# \qquad \lambda_{SS}=5 \text{ [L2019]}.$$
#
# `ssr.smoothness_similarity_loss` computes it with `create_graph=True` on the $G_t$ side (so the
# loss back-propagates into $G_t$: a double backward through the whole generator, mapping network
# included, since we differentiate with respect to $z$ as written). **A trap:** at the first
# fine-tuning step $G_t = G_s$ and the difference is exactly zero; the gradient of a hand-written
# $\sqrt{\sum v^2}$ there is $0/0 =$ NaN, which would kill training at step 0.
# `torch.linalg.vector_norm` defines it as 0. The check below shows both.

# %%
# NBVAL_CHECK_OUTPUT
G_probe = copy.deepcopy(G_s).requires_grad_(True)
z = torch.randn(4, model_cfg.z_dim, generator=torch.Generator().manual_seed(0)).to(dev)
loss_ss = ssr.smoothness_similarity_loss(G_s, G_probe, z, cfg.ss_resolution, cfg.lambda_ss)
loss_ss.backward()
grads_finite = all(torch.isfinite(p.grad).all() for p in G_probe.parameters() if p.grad is not None)
print(f"G_t = G_s: L_SS = {loss_ss.item()}, gradient finite: {grads_finite}")
v = torch.zeros(3, requires_grad=True)
torch.sqrt((v**2).sum()).backward()
print(f"hand-written sqrt(sum(v**2)) at v = 0: gradient {v.grad.tolist()}")
del G_probe

# %% [markdown]
# **Which features, which resolution.** The paper takes $G^l$ at 32×32 for 256×256 images, the
# middle of the synthesis network [L2019]; Table 7.4 shows that lower resolutions transfer less
# and higher ones leak fine source details [L2097]. At our image size the corresponding middle
# block is `ss_resolution` (printed in the configuration above). We take the output of that
# synthesis block and differentiate with respect to $z$ (the text leaves $z$ vs. $w$ open; specs C.9).
#
# ## 5. The discriminator loss at every block, $\mathcal L_{all}$
#
# A standard discriminator decides after its last block, $l = s^N\circ D^N(x)$, and memorises 10
# images; a PatchGAN decision at an earlier block adapts colours and textures but not shapes
# [L2001]. The thesis attaches a head $s^i$ after **every** block and averages the pre-training
# loss (cross-entropy for StyleGAN2) over blocks (Eq. 7.3 [L2005-2007]):
#
# $$\mathcal L_{all}(x) = \frac1N \sum_{i=1}^N \mathcal L_D\big[l^i(x)\big], \qquad l^i(x) = s^i\circ D^i(x).$$
#
# `ssr.PerBlockDiscriminator` keeps the pre-trained D and adds new 1×1 heads on each residual
# block's output (patch logits, each averaged over its positions); the original epilogue is the
# $N$-th head. The generator is trained against the same heads.

# %%
# NBVAL_CHECK_OUTPUT
probe_d = ssr.PerBlockDiscriminator(copy.deepcopy(D_src))
with torch.no_grad():
    logits = probe_d(shots[:2].to(dev))
print(f"N = {probe_d.num_blocks} decisions per image:", [tuple(l.shape[1:]) for l in logits])
del probe_d

# %% [markdown]
# ## 6. Adaptation to 10 shots: the method and its baselines, the same steps
#
# Every arm starts from the same $G_s$ and pre-trained $D$, sees the same 10 shots with the same
# augmentation, and runs exactly the same number of steps (`iterations`):
#
# | arm | D loss | $\mathcal L_{SS}$ | what it is |
# |---|---|---|---|
# | TGAN | last block | – | plain fine-tuning of G and D (Wang et al. 2018) [L623] |
# | FreezeD | last block, early D layers frozen | – | Mo et al. 2020 [L623-625] |
# | CDC | image-level D near 10 anchor latents, else a patch-level head | – | Ojha et al. 2021 [L627, L910]: plus a cross-domain distance-consistency loss |
# | L_SS (plain D) | last block | ✓ | Table 7.3 row 2 |
# | L_all | every block (Eq. 7.3) | – | Table 7.3 row 5 |
# | L_all + L_SS | every block | ✓ | **the thesis' method**, $\lambda_{SS}=5$ |
# | L_all + L_SS (λ=1) | every block | ✓, $\lambda_{SS}=1$ | a row of the $\lambda$ sweep, Table 7.4 |
#
# The paper trains 30k steps at batch 4 (CDC's settings [L2019, L2023]) and picks the checkpoint with
# the best FID; we cannot afford either, so every arm is evaluated at its last step (EMA weights).

# %%
adapted, adapt_histories = {}, {}
for arm in cfg.arms:
    runtime.seed_everything(cfg.seed)
    parts = ssr.setup_arm(arm, G_s, D_src, freeze_d_blocks=cfg.freeze_d_blocks, lr=cfg.lr, r1_every=cfg.r1_every)
    ema_t = train.EMA(parts["G_t"], cfg.adapt_ema_decay)
    step_fn = ssr.make_adapt_step(G_s, parts["G_t"], parts["D"], parts["opt_g"], parts["opt_d"], shots,
                                  parts["spec"], batch_size=cfg.batch_size, r1_gamma=cfg.r1_gamma,
                                  r1_every=cfg.r1_every, lambda_ss=cfg.lambda_ss, ss_resolution=cfg.ss_resolution,
                                  augment=augment, ema=ema_t)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", arm).strip("_")
    adapt_histories[arm] = train.fit(step_fn, cfg.iterations,
                                     {"G_t": parts["G_t"], "D": parts["D"], "opt_g": parts["opt_g"],
                                      "opt_d": parts["opt_d"], "ema": ema_t},
                                     ckpt_path=out / f"adapt_{slug}_{run_tag}.pt", time_budget_s=cfg.time_budget_s,
                                     desc=f"adapt: {arm}")
    adapted[arm] = ema_t.module.eval()
    h = adapt_histories[arm]
    print(f"{arm:>16}: {h.steps} steps, {h.seconds:.0f} s")
    if h.stopped_by_budget:
        complete = False
        print(f"WARNING: the time guard cut {arm} at {h.steps} of {cfg.iterations} steps: results are incomplete")

# %%
fig, axes = plt.subplots(1, len(cfg.arms), figsize=(3.3 * len(cfg.arms), 2.6), squeeze=False)
for ax, arm in zip(axes[0], cfg.arms):
    losses = adapt_histories[arm].losses
    if adapt_histories[arm].steps:
        viz.plot_losses(losses, keys=["loss_d", "loss_g"], ax=ax, title=arm)
    for key in ("loss_ss", "loss_cdc"):  # the regularisers live on another scale: their own axis
        if key in losses:
            twin = ax.twinx()
            twin.plot(viz.smooth(losses[key], 10), color="C3", label=f"{key} (right axis)")
            twin.legend(loc="upper right", fontsize=7)
    ax.title.set_fontsize(9)
fig.tight_layout()
viz.save(fig, out, "adaptation_losses")
plt.show()

# %% [markdown]
# **Samples.** The same 16 latents through the source generator and every adapted generator. A
# memorising generator reproduces the 10 shots (compare with the target row in section 1); a useful
# one makes new scenes.

# %%
n_show = 16
rows = {"source G_s": sg.sample(G_s, n_show, seed=7)}
rows.update({arm: sg.sample(G, n_show, seed=7) for arm, G in adapted.items()})
fig, axes = plt.subplots(len(rows), 1, figsize=(12, 1.75 * len(rows)))
for ax, (name, imgs) in zip(axes, rows.items()):
    viz.show_images(imgs, nrow=n_show, title=name, ax=ax)
viz.save(fig, out, "samples")
plt.show()

# %% [markdown]
# ## 7. Results: quality, diversity, memorisation, smoothness
#
# The paper reports FID against a held-out set and intra-cluster LPIPS [L2023]. Both need
# pretrained networks (Inception, AlexNet) that `nbsyn.metrics` only uses when their weights are
# cached; otherwise they say "unavailable". The following always run (pixel-space, so read them as
# *proxies*, specs C.10):
#
# * **nearest-shot RMSE** and **copies**: the fraction of samples closer to a shot than 95 % of the
#   held-out real targets are (a held-out image is a *new* scene, so a sample closer than that copies);
# * **intra-cluster L1**: CDC's intra-LPIPS protocol with mean absolute pixel difference: samples are
#   assigned to their nearest shot, pairwise distances averaged within and then across clusters;
# * **MS-SSIM** between random pairs of samples (lower = more diverse);
# * **staircase index** along latent interpolations: largest image change per step over the mean
#   change (≈ 1 smooth, ≫ 1 jumps) — the quantitative side of Fig. 7.5 [L2084].
#
# Spread: the metrics are computed on three disjoint sets of latents (mean ± std over those). Every
# arm was trained once, from one seed; the spread over training seeds is not measured at this scale.

# %%
EVAL_SEEDS = (100, 200, 300)
threshold = torch.quantile(ssr.nearest_shot(heldout, shots)[1], 0.05).item()
lpips_ok = metrics.lpips_available() is None


def evaluate(G):
    per_seed = []
    for s in EVAL_SEEDS:
        imgs = sg.sample(G, cfg.n_eval, seed=s)
        _, d = ssr.nearest_shot(imgs, shots)
        z0 = torch.randn(cfg.n_interp_pairs, model_cfg.z_dim, generator=torch.Generator().manual_seed(s + 1))
        z1 = torch.randn(cfg.n_interp_pairs, model_cfg.z_dim, generator=torch.Generator().manual_seed(s + 2))
        frames = ssr.interpolation_frames(G, z0.to(dev), z1.to(dev), cfg.interp_steps).cpu()
        per_seed.append({
            "nearest-shot RMSE": d.mean().item(),
            "copies (%)": 100 * (d < threshold).float().mean().item(),
            "intra-cluster L1": ssr.intra_cluster_diversity(imgs, shots),
            "MS-SSIM": metrics.msssim_diversity(imgs[: min(60, len(imgs))]).value,
            "staircase index": ssr.staircase_index(frames).mean().item(),
        })
    keys = per_seed[0]
    return {k: (sum(p[k] for p in per_seed) / len(per_seed),
                torch.tensor([p[k] for p in per_seed]).std().item()) for k in keys}


generators = {"source G_s": G_s, **adapted}
results = {name: evaluate(G) for name, G in generators.items()}
fid_results, lpips_results = {}, {}
for name, G in generators.items():
    imgs = sg.sample(G, len(heldout), seed=999)
    fid_results[name] = metrics.fid(heldout, imgs, device=dev)
    if lpips_ok:
        lpips_results[name] = ssr.intra_cluster_diversity(
            imgs, shots, pair_distance=lambda a, b: lpips_pairs(a, b, device=dev))
print(f"copy threshold (5 % quantile of held-out-to-shot RMSE): {threshold:.3f}")
print(f"FID: {fid_results['source G_s']}  | intra-LPIPS: "
      f"{'computed' if lpips_ok else metrics.lpips_available()}")
header = f"{'':>18}" + "".join(f"{k:>22}" for k in results["source G_s"])
print(header)
for name, r in results.items():
    print(f"{name:>18}" + "".join(f"{m:>14.3f} ± {s:<5.3f}" for m, s in r.values()))

# %% [markdown]
# **Smoothness figure** (the analogue of Fig. 7.5 [L2084]): the same latent path through the source
# generator and every adapted one. The thesis reports "staircase" interpolations for plain
# fine-tuning and smooth ones, mimicking the source's transitions, with $\mathcal L_{SS}$.

# %%
zz = torch.randn(2, model_cfg.z_dim, generator=torch.Generator().manual_seed(11)).to(dev)
strips = {name: ssr.interpolation_frames(G, zz[:1], zz[1:], 10)[0].cpu() for name, G in generators.items()}
fig, axes = plt.subplots(len(strips), 1, figsize=(12, 1.8 * len(strips)))
for ax, (name, frames) in zip(axes, strips.items()):
    si = ssr.staircase_index(frames[None]).item()
    viz.show_images(frames, nrow=10, title=f"{name}  (staircase index of this path: {si:.2f})", ax=ax)
viz.save(fig, out, "interpolations")
plt.show()

# %%
names = list(results)
fig, axes = plt.subplots(1, 3, figsize=(14, 3.2))
for ax, key in zip(axes, ["copies (%)", "intra-cluster L1", "staircase index"]):
    means = [results[n][key][0] for n in names]
    stds = [results[n][key][1] for n in names]
    ax.bar(range(len(names)), means, yerr=stds, color=["grey"] + ["C%d" % i for i in range(len(names) - 1)])
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_title(key)
fig.tight_layout()
viz.save(fig, out, "metrics")
plt.show()

# %% [markdown]
# **Reading the results.** The thesis' claims, checked against *this* run's numbers: $\mathcal L_{SS}$
# keeps the adapted generator diverse (higher intra-cluster distance, the pixel proxy of the
# intra-LPIPS column of Tables 7.1 and 7.3) and stops it from copying the shots. The verdicts below
# compare the mean over the arms with $\mathcal L_{SS}$ against the mean over the plain fine-tuning
# arms (TGAN, FreezeD, $\mathcal L_{all}$), and call a gap real only when it exceeds the spread
# over evaluation latents; the spread over training seeds is not measured (one run per arm).

# %%
# NBVAL_CHECK_OUTPUT
def arm_mean(arms, key):
    return sum(results[a][key][0] for a in arms) / len(arms)


def arm_spread(arms, key):
    return max(results[a][key][1] for a in arms)


with_ss = [a for a in adapted if ssr.ARMS[a]["use_ss"]]
plain = [a for a in adapted if not ssr.ARMS[a]["use_ss"] and a != "CDC"]
if with_ss and plain:
    for key, higher_is_claimed in (("intra-cluster L1", True), ("copies (%)", False)):
        a, b = arm_mean(with_ss, key), arm_mean(plain, key)
        noise = arm_spread(with_ss + plain, key)
        direction = (a > b) == higher_is_claimed
        verdict = ("as the thesis says" if direction else "against the thesis") if abs(a - b) > noise else "within the spread"
        print(f"{key}: with L_SS {a:.3f}, plain fine-tuning {b:.3f}, source G_s {results['source G_s'][key][0]:.3f}"
              f" (spread {noise:.3f}) -> {verdict}")
    lss = adapt_histories[with_ss[0]].last(20)
    print(f"loss scale at the end ({with_ss[0]}): L_SS {lss.get('loss_ss', float('nan')):.2f} vs adversarial "
          f"loss_g {lss.get('loss_g', float('nan')):.2f}")
else:
    print("this preset's arms do not include both an L_SS arm and a plain fine-tuning arm")

# %% [markdown]
# What the numbers cannot say, whatever they are: **quality** needs FID (unavailable offline), so the
# samples above are the only evidence of it. When $\mathcal L_{SS}$ is much larger than the
# adversarial loss (the line above), the target keeps the *structure* of the source (a head-sized
# oval under scene colours), the "leakage" the thesis reports for large $\lambda_{SS}$ or high
# resolutions (Table 7.4 [L2097]): the paper's λ = 5 was chosen for 512-channel 32×32 features of a
# 256-px StyleGAN2, and the raw JVP norm depends on the architecture, so the same λ is not the same
# trade-off here. The **staircase index** separates the arms only when a generator has learned several
# target modes; a generator that collapsed onto one shot barely moves along a path at all.

# %% [markdown]
# ## 8. Interactive: source vs. adapted generator
#
# **Latent direction.** Move a latent along a random direction and watch the source generator and
# the adapted generators side by side: with $\mathcal L_{SS}$ the target should change in step
# with the source; a memorising generator stays on one shot and then jumps.

# %%
panel_arms = [a for a in ("TGAN", "L_all + L_SS") if a in adapted] or list(adapted)[:2]
z_centre = torch.randn(1, model_cfg.z_dim, generator=torch.Generator().manual_seed(21)).to(dev)
direction = torch.randn(1, model_cfg.z_dim, generator=torch.Generator().manual_seed(22)).to(dev)
direction = 2.0 * direction / direction.norm() * math.sqrt(model_cfg.z_dim)


@torch.no_grad()
def side_by_side(latent):
    gens = [G_s] + [adapted[a] for a in panel_arms]
    return torch.cat([G(latent, noise_mode="const").clamp(-1, 1).cpu() for G in gens])


direction_panel = widgets.InterpolationPanel(side_by_side, z_centre - direction / 2, z_centre + direction / 2,
                                             nrow=1 + len(panel_arms),
                                             title="one latent direction; columns: source G_s | " + " | ".join(panel_arms))
direction_panel.widget()

# %%
strip = direction_panel.strip(steps=8)  # (steps * generators, ...): regroup by generator
per_gen = strip.view(8, 1 + len(panel_arms), *strip.shape[1:]).transpose(0, 1).flatten(0, 1)
fig = viz.show_images(per_gen, nrow=8, title="rows: source G_s, " + ", ".join(panel_arms) + " — one latent direction")
viz.save(fig, out, "latent_direction")
plt.show()

# %% [markdown]
# **Resample** new latents for the source and the adapted generators (top row source, then one row
# per arm of the panel), and a **truncation** slider: $w = \bar w + \psi (w - \bar w)$ pulls every
# latent towards the average $\bar w$ (tracked during pre-training and copied into $G_t$).

# %%
@torch.no_grad()
def resample(seed_value, psi=1.0, n=8):
    z = torch.randn(n, model_cfg.z_dim, generator=torch.Generator().manual_seed(seed_value)).to(dev)
    gens = [G_s] + [adapted[a] for a in panel_arms]
    return torch.cat([G(z, truncation_psi=psi, noise_mode="const").clamp(-1, 1).cpu() for G in gens])


resample_panel = widgets.ResamplePanel(lambda sd: resample(sd), nrow=8, seed=3,
                                       title="resample the latents; rows: source G_s / " + " / ".join(panel_arms))
resample_panel.widget()

# %%
fig = viz.show_images(resample(3), nrow=8,
                      title="resampled (seed 3): source G_s, " + ", ".join(panel_arms))
viz.save(fig, out, "resample")
plt.show()


# %%
def truncation_widget():
    import ipywidgets as W

    image = widgets.image_widget(viz.grid(resample(5, 1.0), 8))
    slider = widgets.labelled(W.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05), "truncation psi")
    slider.observe(lambda ch: widgets.set_image(image, viz.grid(resample(5, ch["new"]), 8)), names="value")
    return widgets.frame(W.VBox([slider, image]), "truncation: w = w_avg + psi (w - w_avg); rows: source G_s / "
                         + " / ".join(panel_arms))


truncation_widget()

# %%
psis = (1.0, 0.7, 0.4, 0.0)
fig, axes = plt.subplots(2, 2, figsize=(13, 7))
for ax, psi in zip(axes.flat, psis):
    viz.show_images(resample(5, psi, n=4), nrow=4, title=f"truncation psi = {psi}", ax=ax)
viz.save(fig, out, "truncation")
plt.show()

# %% [markdown]
# ## 9. Results beside the paper
#
# The paper's numbers (Tables 7.1 and 7.3, Face → Anime, 256×256, 30k steps, pretrained FFHQ
# StyleGAN2) and ours (procedural faces → procedural scenes, `cpu` scale) measure different things
# at very different scales: compare the *ordering* of the arms, not the values. The "18 % FID"
# improvement claimed in the text [L2060] recomputes to 14.1 % from Table 7.1 (specs C.5).

# %%
# Face -> Anime: Table 7.1 (TGAN, FreezeD, ours), Table 7.3 (ablation rows), Table 7.4 (lambda = 1)
PAPER_FID = {"TGAN": 153.2, "FreezeD": 112.4, "CDC": 140.2, "L_SS (plain D)": 180.7, "L_all": 116.4,
             "L_all + L_SS": 97.3, "L_all + L_SS (λ=1)": 96.4}
PAPER_LPIPS = {"TGAN": 0.29, "FreezeD": 0.22, "CDC": 0.50, "L_SS (plain D)": 0.61, "L_all": 0.36,
               "L_all + L_SS": 0.57, "L_all + L_SS (λ=1)": 0.51}
scale = f"{cfg.preset}: {cfg.image_size}px, {cfg.dataset}->{cfg.target_dataset}, {cfg.n_shots} shots"
table_rows = []
for arm in adapted:
    steps = adapt_histories[arm].steps
    r = results[arm]
    fid_r = fid_results[arm]
    table_rows += [
        {"experiment": f"{arm}", "metric": "FID (held-out target)", "ours": fid_r.value if fid_r.available else None,
         "paper": PAPER_FID[arm], "note": f"Face->Anime, Tab. 7.1/7.3/7.4; ours {scale}, {steps} steps"
         + ("" if fid_r.available else f"; {fid_r.unavailable_reason}")},
        {"experiment": f"{arm}", "metric": "intra-LPIPS", "ours": lpips_results.get(arm),
         "paper": PAPER_LPIPS[arm], "note": "Face->Anime, Tab. 7.1/7.3/7.4" + ("" if lpips_ok else "; weights unavailable")},
        {"experiment": f"{arm}", "metric": "intra-cluster L1 (pixel proxy, higher = diverse)",
         "ours": f"{r['intra-cluster L1'][0]:.3f} ± {r['intra-cluster L1'][1]:.3f}", "paper": "-", "note": scale},
        {"experiment": f"{arm}", "metric": "copies of a shot (%)",
         "ours": f"{r['copies (%)'][0]:.1f} ± {r['copies (%)'][1]:.1f}", "paper": "-", "note": scale},
        {"experiment": f"{arm}", "metric": "staircase index (1 = smooth)",
         "ours": f"{r['staircase index'][0]:.2f} ± {r['staircase index'][1]:.2f}", "paper": "-",
         "note": "Fig. 7.5 shows it qualitatively"},
    ]
path = reproduce.record_results(out, NOTEBOOK, cfg, table_rows, complete=complete, device=dev)
print(f"{'arm':>16} | {'metric':<48} | {'ours':>16} | paper")
for row in table_rows:
    ours = row["ours"] if row["ours"] is not None else "unavailable"
    ours = f"{ours:.3f}" if isinstance(ours, float) else ours
    print(f"{row['experiment']:>16} | {row['metric']:<48} | {ours:>16} | {row['paper']}")
print(f"saved {path}; whole notebook: {time.perf_counter() - notebook_start:.0f} s")

# %% [markdown]
# ## 10. What we simplified
#
# * **Scale.** 32×32 images (`cpu`), a StyleGAN2 with 16-64 channels and 4 mapping layers instead of
#   config F at 256×256 (the `paper` configuration is built and its parameter count checked, but not
#   trained here); our own shipped reference StyleGAN2 (trained at twice StyleGAN2's learning rate)
#   instead of a published FFHQ checkpoint; 200 adaptation steps at batch 8 instead of 30k at batch 4, and no
#   best-FID checkpoint selection [L2023].
# * **Data.** Procedural faces → procedural scenes stand in for FFHQ → Anime-Face / Church → Shells.
# * **Metrics.** FID and intra-LPIPS need pretrained networks; without their cached weights they are
#   reported as unavailable, and pixel-space proxies (intra-cluster L1, copies, MS-SSIM, staircase
#   index) carry the comparison. These proxies are ours, not the paper's.
# * **Choices the text leaves open** (specs C.9): $G^l$ = the output of a synthesis block at the
#   middle resolution; differentiation with respect to $z$; one probe $y$ per sample per step, no
#   $1/\sqrt{HW}$ scaling, applied every step; per-block heads = 1×1 convolutions with their BCE
#   averaged over positions, the original D output as the last head; R1 kept during adaptation; no
#   path-length regularisation (not needed for the method, and omitted to save CPU time); DA =
#   translation + flips with p = 0.5; FreezeD freezes FromRGB and the first `freeze_d_blocks` blocks.
# * **Baselines.** TGAN, FreezeD and CDC are in. CDC follows its own paper, not the thesis (which does
#   not restate it): distance consistency on the features of every synthesis block with weight 1000,
#   anchor steps every 4th iteration with the image-level D, patch-level steps with the middle head
#   (these settings are from CDC's paper and code defaults, not verified here). RSSA, AdAM, PPL and
#   MixDL are not implemented.
# * **Seeds.** One training run per arm; the ± is over evaluation latents only.
