# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Semantic image synthesis with an *unconditional* generator
#
# **Idea.** Conditional GANs for semantic image synthesis need thousands of image–mask pairs. Chae et
# al. (NeurIPS 2023) instead take a pre-trained **unconditional** StyleGAN2, freeze it, and split it
# at an intermediate resolution into $G_1$ (up to the feature map $F$) and $G_2$ (the rest).
#
# 1. **Proxy masks.** K-means on $F$ of 256 samples gives K = 25 centroids; the nearest centroid of
#    every pixel is that sample's *proxy mask*: a free, automatically paired annotation.
# 2. **Rearranger** $R$: a single-head cross-attention whose *query* is a target proxy mask and whose
#    *keys and values* are a source sample's features. $G_2(R(F_s, M_t))$ is the source's appearance
#    in the target's layout. Trained with $\mathcal L_{self}$, $\mathcal L_{mask}$, $\mathcal L_{adv}$.
# 3. **Semantic mapper**: an OASIS generator without noise that turns a user's label map into a proxy
#    mask, trained on a few labelled pairs. Only the mapper depends on the label set.
#
# *Source:* only the paper's **supplement** is available
# (`papers/chae2023_sis_unconditional_generator_supp.txt`, `[Lnn]` = its line nn). The main text,
# with the loss equations, is not. Everything rebuilt from `specs/chae_sis_unconditional.md` is
# marked **[INFER]**. No official code exists.
#
# **Scale.** The prior is the project's shipped reference StyleGAN2 `stylegan2_faces32` (32 px
# procedural faces, `cpu` config; loaded, never trained here). The split is at 16×16, the paper's is
# at 64×64 of a 256-px config-F generator.

# %% tags=["parameters"]
preset = "auto"
device = "auto"
seed = None
iterations = None
image_size = None
dataset = None
out_dir = "runs/latest/07_sis_unconditional_generator"

# %%
import copy
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from nbsyn import data, metrics, presets, reproduce, runtime, train, viz
from nbsyn.data import one_hot
from nbsyn.models import oasis
from nbsyn.models import sis_uncond as su
from nbsyn.models import stylegan2 as sg

NOTEBOOK = "07_sis_unconditional_generator"
cfg = presets.resolve(NOTEBOOK, preset, seed=seed, iterations=iterations, image_size=image_size, dataset=dataset)
if cfg.dataset not in data.DATASETS:
    raise ValueError(f"unknown dataset {cfg.dataset!r}: offline only the procedural datasets {data.DATASETS} exist; "
                     f"the paper's CelebAMask-HQ / LSUN come through data_scripts/prepare_celebamask_hq.py, "
                     f"prepare_lsun.py (paper preset)")
# one thread unless NBSYN_THREADS says otherwise (small convolutions; a shared CPU)
dev = runtime.setup(cfg.seed, device, threads=None if "NBSYN_THREADS" in os.environ else 1)
out = reproduce.resolve_out_dir(out_dir)  # a relative out_dir is taken from the repository root
out.mkdir(parents=True, exist_ok=True)
notebook_start = time.perf_counter()
AT = cfg.feature_res
print(cfg)

# %% [markdown]
# ## 1. The frozen prior, the real faces and the evaluation segmenter
#
# The generator is the shipped reference model (issue 9): trained once, for a fixed number of
# steps, by the project's own StyleGAN2 code; its pre-trained discriminator comes with it (the
# spec's default initialisation of $D$ for $\mathcal L_{adv}$). The **oracle** is a U-Net
# segmenter of real faces (the shipped `segmenter_faces32` when it is there, else trained here on
# real renders); it stands in for the paper's face parser: it labels generated images for the
# cluster purity and for every mIoU below.

# %%
G, D0 = su.load_prior(cfg, dev)
from nbsyn import pretrained  # noqa: E402

ref_steps = pretrained.read_manifest().get(cfg.reference, {}).get("steps", "?")
print(f"prior: {cfg.reference}, {ref_steps} training steps; G has {sg.count_parameters(G):,} parameters "
      f"(frozen: {not any(p.requires_grad for p in G.parameters())})")
real = data.make_dataset(cfg.dataset, cfg.n_real, cfg.image_size, seed=cfg.seed + 1)
NC, CLASS_NAMES, PALETTE = real.num_classes, real.class_names, real.palette
try:
    oracle = pretrained.load(f"segmenter_{cfg.dataset}{cfg.image_size}", dev).G
    oracle_source = f"shipped segmenter_{cfg.dataset}{cfg.image_size}"
except pretrained.PretrainedError:
    oracle = metrics.train_segmenter(real.images, real.labels, NC, cfg.oracle_steps, seed=cfg.seed, device=dev)
    oracle_source = f"U-Net trained here, {cfg.oracle_steps} steps on {len(real)} real faces"
held = data.make_dataset(cfg.dataset, 64, cfg.image_size, seed=cfg.seed + 2)
oracle_real = metrics.segmentation_scores(oracle, held.images.to(dev), held.labels, NC)
print(f"oracle: {oracle_source}; mIoU on 64 held-out real faces {oracle_real['miou']:.3f}")

samples = sg.sample(G, 16, seed=cfg.seed + 3)
fig, axes = plt.subplots(1, 3, figsize=(15, 2.6))
viz.show_images(real.images[:8], nrow=8, title="real procedural faces (D's real data)", ax=axes[0])
viz.show_images(samples[:8], nrow=8, title=f"samples of the frozen prior {cfg.reference}", ax=axes[1])
viz.show_images(torch.stack([viz.colorize(l, PALETTE) for l in metrics.segment(oracle, samples[:8].to(dev)).cpu()]),
                nrow=8, title="the oracle's labels of those samples", ax=axes[2])
viz.save(fig, out, "prior_samples")
plt.show()

# %% [markdown]
# ## 2. Splitting the skip generator: $G = G_2 \circ G_1$
#
# "intermediate feature maps of the pretrained Generator, especially size of 64" [L115]. StyleGAN2's
# generator is the *skip* architecture: the image is the running sum of every block's ToRGB output.
# At the split, $G_1$ therefore returns **two** things: the features $F$ of the split block (before
# its ToRGB) and the **partial RGB image** of the blocks below, upsampled to the split size.
# $G_2$ adds the split block's ToRGB of $F$ and runs the later blocks with the source's styles $w_s$
# ("one latent code for the proxy masks, the other for the style" [L54]). Check: resuming an
# unmodified split reproduces the generator exactly.

# %%
# NBVAL_CHECK_OUTPUT
with torch.no_grad():
    ws_chk = G.map(torch.randn(4, G.cfg.z_dim, generator=torch.Generator().manual_seed(0)).to(dev))
    f_chk, p_chk = su.split(G.synthesis, ws_chk, AT)
    diff = (su.resume(G.synthesis, f_chk, p_chk, ws_chk, AT) - G.synthesis(ws_chk, noise_mode="const")).abs().max()
FEAT_CH = f_chk.shape[1]
print(f"F = G1(w): {tuple(f_chk.shape)}, partial image: {tuple(p_chk.shape)}; max |G2(G1(w)) - G(w)| = {diff:.1e}")
assert diff < 1e-5

# %% [markdown]
# ## 3. Proxy masks: K-means on $G_1$'s features [L42, L82]
#
# "We prepare the proxy masks from the centroids obtained by clustering feature maps of 256 sample
# images ... K-means clustering [2]" [L42]; K = 25 [L82]. Reference [2] (Collins et al., Editing in
# Style) uses **spherical** K-means: pixel vectors and centroids on the unit sphere, similarity =
# cosine. The centroids are fitted **once** and frozen; the proxy mask of any sample is the
# per-pixel nearest centroid:
#
# $$M(p) = \arg\max_k \cos(F_{:,p}, \mu_k).$$
#
# How semantic are the clusters? **Purity**: each cluster is named by the true class most of its
# pixels have (the oracle's labels of the same samples, majority-pooled to the feature grid), and
# purity is the fraction of pixels whose class is their cluster's class. The majority baseline
# (every pixel = the most frequent class) is printed beside it.

# %%
# NBVAL_CHECK_OUTPUT
feats_k, _, _, imgs_k = su.sample_features(G, cfg.n_kmeans_samples, AT, seed=cfg.seed + 10)
vectors = feats_k.permute(0, 2, 3, 1).reshape(-1, FEAT_CH)
labels_k = su.majority_pool(metrics.segment(oracle, imgs_k.clamp(-1, 1)).to(dev), AT, NC).cpu()
proxies, purity = {}, {}
for K in sorted({6, 12, cfg.n_clusters}):
    C = su.spherical_kmeans(vectors, K, cfg.kmeans_iters, seed=cfg.seed, spherical=cfg.spherical)
    proxies[K] = su.ProxyMasks(C, cfg.spherical).to(dev)
    purity[K], major, counts = su.cluster_purity(proxies[K].assign(feats_k).cpu(), labels_k, K, NC)
proxy = proxies[cfg.n_clusters]
_, MAJOR, COUNTS = su.cluster_purity(proxy.assign(feats_k).cpu(), labels_k, cfg.n_clusters, NC)
majority_baseline = float(torch.bincount(labels_k.flatten(), minlength=NC).max() / labels_k.numel())
print(f"{cfg.n_kmeans_samples} samples x {AT}x{AT} = {vectors.shape[0]:,} vectors of {FEAT_CH} channels")
for K, p in purity.items():
    print(f"K = {K:>2}: purity {p:.3f}   (majority baseline {majority_baseline:.3f})")
CLUSTER_NAMES = [f"{CLASS_NAMES[int(MAJOR[k])]}" if COUNTS[k].sum() else "(empty)" for k in range(cfg.n_clusters)]
per_class = {CLASS_NAMES[c]: sum(1 for k in range(cfg.n_clusters) if int(MAJOR[k]) == c and COUNTS[k].sum())
             for c in range(NC)}
print("clusters per dominant class:", {k: v for k, v in per_class.items() if v})

# %%
KPAL = su.cluster_palette(cfg.n_clusters)
show = 6
fig, axes = plt.subplots(1 + 1 + len(proxies), show, figsize=(1.6 * show, 1.7 * (2 + len(proxies))))
for j in range(show):
    axes[0, j].imshow(viz.to_numpy_image(imgs_k[j].clamp(-1, 1).cpu()))
    axes[1, j].imshow(viz.to_numpy_image(viz.colorize(labels_k[j], PALETTE)), interpolation="nearest")
    for r, (K, pm) in enumerate(proxies.items()):
        axes[2 + r, j].imshow(viz.to_numpy_image(viz.colorize(pm.assign(feats_k[j:j + 1])[0].cpu(),
                                                              su.cluster_palette(K))), interpolation="nearest")
        axes[2 + r, 0].set_ylabel(f"K={K}\npurity {purity[K]:.2f}")
axes[0, 0].set_ylabel("G(z)")
axes[1, 0].set_ylabel(f"oracle\n{AT}x{AT}")
for a in axes.flat:
    a.set_xticks([])
    a.set_yticks([])
fig.suptitle("proxy masks: spherical K-means on the frozen generator's features (cluster colours are arbitrary)")
viz.save(fig, out, "proxy_masks")
plt.show()

# %% [markdown]
# ## 4. The rearranger [L23, L28, L80] and the skip-image trap (spec 4.2-4.3)
#
# "a single head cross-attention module, which is surrounded by two 4-layer residual blocks on
# either side ... an attention matrix from the query (the proxy mask) and the key (feature maps)
# ... enables the value (feature maps) to be rearranged (through a weighted sum)" [L23, L28]; a
# sinusoidal position encoding is added "before the residual block that precedes the module" [L28].
# [INFER] equations (spec 4.2):
#
# $$Q = W_q\,\mathrm{Res}_4^{pre}(E\,\mathrm{onehot}(M_t) + P),\quad K = W_k(W_{in}F_s + P),\quad V = W_vF_s,$$
# $$A = \mathrm{softmax}_{keys}(Q^\top K/\sqrt d),\qquad F' = W_{out}\,\mathrm{Res}_4^{post}(VA^\top).$$
#
# No path from $F_s$ to $F'$ bypasses the attention (a residual would carry the source layout).
#
# **The skip-image trap** (spec 4.3; the supplement is silent). The partial RGB image that $G_1$
# returns already holds the *source's* coarse layout. Passed unchanged to $G_2$, it leaves a ghost
# of the source under every output. So its 3 channels are appended to $V$ and moved **with the same
# attention** $A$; they bypass $\mathrm{Res}^{post}$ and become $G_2$'s incoming skip image. The
# check below verifies both outputs against $A$ directly.
#
# `key_mask` (an [INFER] deviation, spec 4.2 / 12.9, exposed as a switch): also add the *source's*
# own proxy-mask embedding $E\,\mathrm{onehot}(M_s)$ to the keys, so that "cluster c here" matches
# "cluster c there" from step 0. The preset's `key_mask` is printed below; section 6 trains the
# other setting as an arm.

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(cfg.seed)
R_demo = su.build_rearranger(cfg, FEAT_CH).to(dev)
with torch.no_grad():
    m_demo = proxy.assign(f_chk)
    f_out, rgb_out, A = R_demo(f_chk, m_demo.roll(1, 0), p_chk, m_demo, return_attention=True)
    moved_rgb = torch.einsum("bqk,bck->bcq", A, p_chk.flatten(2)).reshape_as(p_chk)
print(f"rearranger: {sg.count_parameters(R_demo):,} parameters (width {cfg.width}, K {cfg.n_clusters}, "
      f"{cfg.blocks_per_side} ResBlock4 per side, key_pe={cfg.key_pe}, key_mask={cfg.key_mask})")
print(f"F' {tuple(f_out.shape)}, skip image {tuple(rgb_out.shape)}, A {tuple(A.shape)}; "
      f"rows of A sum to 1: {bool(torch.allclose(A.sum(-1), torch.ones_like(A.sum(-1)), atol=1e-5))}; "
      f"skip image = A-weighted source skip image: {bool(torch.allclose(rgb_out, moved_rgb, atol=1e-5))}")

# %% [markdown]
# ## 5. Losses and the training schedule [L40-L46] ([INFER] formulas, spec 5.2)
#
# * **Self iteration** (even steps): the target is the sample's *own* mask, randomly flipped ("to
#   prevent shortcuts of self-reconstruction loss, we apply a random horizontal flip" [L42]):
#   $\mathcal L_{self} = \|R(F_s, \phi(M_s)) - \phi(F_s)\|_1 + \|\mathrm{rgb}' - \phi(\tilde x_s)\|_1$.
# * **Cross iteration** (odd steps): the mask of another sample ("we alternate training with a proxy
#   mask generated from the same noise ... and a proxy mask generated from random noise" [L42]).
# * **Mask loss** (both): the output's features must fall into the requested clusters,
#   $\mathcal L_{mask} = -\frac1{HW}\sum_p \log\mathrm{softmax}_k(\cos(F'_p,\mu_k)/\tau)_{M_t(p)}$, τ = 0.1.
# * **Adversarial**: non-saturating loss on $G_2(F')$ from a StyleGAN2 $D$ (the prior's, fine-tuned
#   alongside), lazy $R_1$ with γ = 10 [L40].
# * Weights $\lambda_{self} = 10$, $\lambda_{mask} = 1$, $\lambda_{adv} = 1$ [L42, L46]; Adam lr 0.002
#   [L40]. $\mathcal L_{adv}$ every 5th iteration for the first 5/7 of training, every iteration
#   after (100k + 40k at 256 px [L44]).
#
# The unit tests check these on hand-computed cases (`tests/test_sis_uncond.py`).

# %% [markdown]
# ## 6. The key experiment: training the rearranger, with the loss ablation of B.1
#
# Every trained arm runs **the same fixed number of steps** from the same prior, centroids and data
# order (seeded); none is cut by a clock.
#
# | arm | what |
# |---|---|
# | full | $\lambda_{self}=10, \lambda_{mask}=1, \lambda_{adv}=1$ (`n_seeds` seeds) |
# | no L_mask | $\lambda_{mask}=0$: B.1's "$\mathcal L_{adv}+\mathcal L_{self}$" [L54-L58] |
# | no L_self | $\lambda_{self}=0$ |
# | other keys | the full losses with the other `key_mask` setting (literal vs deviation) |
#
# The evaluation pairs $(z_s, z_t)$ are fixed: the requested layout is the proxy mask of $G_1(z_t)$,
# the appearance comes from $z_s$. **Mask-following** = mIoU between the oracle's labels of the
# output and the oracle's labels of $G(z_t)$ (the requested layout in true classes), over
# `n_eval_sets` disjoint sets of pairs (the spread).
#
# **Does the literal design learn at this scale?** The spec's own pilot (a 346-step $G$, 300 steps)
# saw $\mathcal L_{mask}$ stay at ln 25 ≈ 3.2 and listed fixes to try in order: (1) a fully
# pre-trained $G$, (2) `key_mask=True`, (3) lr 2e-4. *Developer's pilot while writing this notebook*
# (not this run's numbers; 700 steps, one thread, a 1250-step stand-in of the reference $G$):
# with fix (1) alone the literal keys already learn ($\mathcal L_{mask}$ 3.2 → 1.8, proxy accuracy
# 0.43); `key_mask=True` learns a little faster (→ 1.6, 0.52); lr 2e-4 was slower over 300 steps.
# So this preset keeps the literal keys (`key_mask=False`) and trains `key_mask=True` as an arm.
# Note that $\mathcal L_{mask}$ rises again when $\mathcal L_{adv}$ starts to run every step
# (phase 2): the adversarial gradient pulls against the mask loss at γ = 10.

# %%
gen_pairs = torch.Generator().manual_seed(cfg.seed + 100)
n_pairs = cfg.n_eval_pairs * cfg.n_eval_sets
z_s = torch.randn(n_pairs, G.cfg.z_dim, generator=gen_pairs)
z_t = torch.randn(n_pairs, G.cfg.z_dim, generator=gen_pairs)
F_s, P_s, W_s, X_s = su.sample_features(G, n_pairs, AT, 0, z=z_s)
F_t, P_t, W_t, X_t = su.sample_features(G, n_pairs, AT, 0, z=z_t)
X_s, X_t = X_s.clamp(-1, 1), X_t.clamp(-1, 1)
M_s, M_t = proxy.assign(F_s), proxy.assign(F_t)
L_s, L_t = metrics.segment(oracle, X_s).to(dev), metrics.segment(oracle, X_t).to(dev)  # oracle labels, 32x32
sets = [slice(i * cfg.n_eval_pairs, (i + 1) * cfg.n_eval_pairs) for i in range(cfg.n_eval_sets)]
STYLE_CLASSES = [CLASS_NAMES.index(c) for c in ("background", "skin", "hair", "clothes")]


def miou_sets(images, requested=None):
    """mIoU of the oracle's labels of ``images`` vs the requested labels, per evaluation set."""
    requested = L_t if requested is None else requested
    pred = metrics.segment(oracle, images).to(dev)
    return [metrics.miou_and_accuracy(pred[s], requested[s], NC)["miou"] for s in sets]


def style_scores(images):
    """Mean class-colour L1 distance to the style source and to the mask source; share closer to the source."""
    lab = metrics.segment(oracle, images).to(dev)
    d_src = su.style_distance(images, lab, X_s, L_s, STYLE_CLASSES)
    d_tgt = su.style_distance(images, lab, X_t, L_t, STYLE_CLASSES)
    ok = ~(torch.isnan(d_src) | torch.isnan(d_tgt))
    return float(d_src[ok].mean()), float(d_tgt[ok].mean()), float((d_src[ok] < d_tgt[ok]).float().mean())


def render(R, rgb_mode="rearranged", idx=slice(None)):
    R.eval()
    return su.rearrange_render(G, R, F_s[idx], P_s[idx], W_s[idx], M_t[idx], AT, M_s[idx], rgb_mode)


@torch.no_grad()
def proxy_accuracy(R):
    return float(np.mean([float((proxy.assign(R(F_s[s], M_t[s], P_s[s], M_s[s])[0]) == M_t[s]).float().mean())
                          for s in sets]))


floor = miou_sets(X_s)
print(f"{n_pairs} evaluation pairs in {cfg.n_eval_sets} sets; floor (G(z_s) itself vs the requested layout): "
      f"mIoU {np.mean(floor):.3f} ± {np.std(floor):.3f}")

# %%
ARMS = {"full": {}, "no L_mask": dict(lambda_mask=0.0), "no L_self": dict(lambda_self=0.0),
        f"key_mask={not cfg.key_mask}": dict(key_mask=not cfg.key_mask)}
real_images = real.images.to(dev)
first = sets[0]


def train_arm(name, over, arm_seed):
    c = {**cfg.as_dict(), **over}
    torch.manual_seed(arm_seed)
    R = su.build_rearranger(c, FEAT_CH).to(dev)
    D = copy.deepcopy(D0).to(dev).requires_grad_(True)
    step, opts = su.make_rearranger_step(G, D, R, proxy, real_images, c,
                                         generator=torch.Generator().manual_seed(arm_seed))
    curve = []

    def evaluate(steps_done, _hist):
        with torch.no_grad():
            x = su.rearrange_render(G, R.eval(), F_s[first], P_s[first], W_s[first], M_t[first], AT, M_s[first])
        pred = metrics.segment(oracle, x).to(dev)
        curve.append((steps_done, metrics.miou_and_accuracy(pred, L_t[first], NC)["miou"]))
        R.train()

    evaluate(0, None)
    hist = train.fit(step, cfg.iterations, {"R": R, "D": D, **opts}, time_budget_s=cfg.time_budget_s,
                     desc=f"{name} (seed {arm_seed})", callback=evaluate, callback_every=cfg.eval_every)
    if hist.stopped_by_budget:
        print(f"WARNING: {name} was cut by the time guard at {hist.steps} steps: its result is INCOMPLETE")
    return dict(R=R.eval(), D=D, hist=hist, curve=curve, steps=hist.steps, seconds=hist.seconds)


runs = {}
t0 = time.perf_counter()
for s in range(cfg.n_seeds):
    runs[("full", s)] = train_arm("full", {}, cfg.seed + s)
for name, over in list(ARMS.items())[1:]:
    runs[(name, 0)] = train_arm(name, over, cfg.seed)
train_seconds = time.perf_counter() - t0
print(f"trained {len(runs)} rearrangers x {cfg.iterations} steps in {train_seconds:.0f} s; steps reached: "
      + ", ".join(f"{k[0]}/{k[1]}={v['steps']}" for k, v in runs.items()))

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 3.5))
lnk = float(np.log(cfg.n_clusters))
for (name, s), r in runs.items():
    lab = f"{name} (seed {s})"
    lm = r["hist"].losses.get("loss_mask", [])
    axes[0].plot(viz.smooth(lm, 10), label=lab)
    axes[1].plot(viz.smooth(r["hist"].losses.get("proxy_acc", []), 10), label=lab)
    st, mi = zip(*r["curve"])
    axes[2].plot(st, mi, marker="o", label=lab)
axes[0].axhline(lnk, color="k", ls=":", lw=1, label="ln K (uniform)")
axes[0].set_title("L_mask per step (smoothed)")
axes[1].set_title("proxy-mask accuracy of F' per step (training batch)")
axes[2].axhline(np.mean(floor), color="k", ls="--", lw=1, label="floor: G(z_s)")
axes[2].set_title("mask-following mIoU vs steps (eval set 1)")
for a in axes:
    a.set_xlabel("step")
axes[2].legend(fontsize=7)
axes[0].legend(fontsize=7)
viz.save(fig, out, "training_curves")
plt.show()

# %% [markdown]
# ### The latent-optimisation baseline (LinearGAN's semantic-conditional sampling)
#
# The same supervision without a rearranger: for each requested proxy mask, keep the best of
# `scs_inits` random $z$ by pixel agreement, then optimise $z$ with Adam on
# CE(soft proxy assignment of $G_1(z)$, $M_t$) + $10^{-3}\|z - z_0\|^2$ (spec 9.1). Its output has no
# style source (the appearance comes from wherever $z$ lands).

# %%
score_fn = lambda z: proxy.logits(G.features(z, AT), cfg.tau)  # noqa: E731
z_scs, scs_losses = su.latent_optimisation(G, score_fn, M_t, cfg.scs_inits, cfg.scs_steps, cfg.scs_lr,
                                           seed=cfg.seed + 200)
with torch.no_grad():
    X_scs = torch.cat([G(z_scs[i:i + 64], noise_mode="const") for i in range(0, n_pairs, 64)]).clamp(-1, 1)
print(f"latent optimisation: loss {scs_losses[0]:.3f} -> {scs_losses[-1]:.3f} over {cfg.scs_steps} steps")

# %% [markdown]
# ### Results at equal steps

# %%
# NBVAL_CHECK_OUTPUT
rows = {}


def add_row(name, images, proxy_acc=None, style=True):
    m = miou_sets(images)
    rows[name] = dict(miou=m, proxy_acc=proxy_acc, style=style_scores(images) if style else None)


add_row("floor: G(z_s), no rearrangement", X_s, float((M_s == M_t).float().mean()))
for (name, s), r in runs.items():
    add_row(f"{name} (seed {s})", render(r["R"]), proxy_accuracy(r["R"]))
R_full = runs[("full", 0)]["R"]
add_row("full, skip image NOT moved (trap)", render(R_full, "source"))
add_row("full, skip sum restarted at split", render(R_full, "restart"))
add_row("latent optimisation (SCS)", X_scs, float((proxy.assign(G.features(z_scs, AT)) == M_t).float().mean()),
        style=False)
print(f"{'arm':<38} {'mIoU mean ± std over sets':>26} {'proxy-acc':>9} {'d(src)':>7} {'d(tgt)':>7} {'closer src':>10}")
for name, r in rows.items():
    st = r["style"] or (float("nan"),) * 3
    pa = f"{r['proxy_acc']:.3f}" if r["proxy_acc"] is not None else "-"
    print(f"{name:<38} {np.mean(r['miou']):>18.3f} ± {np.std(r['miou']):.3f} {pa:>9} {st[0]:>7.3f} {st[1]:>7.3f} "
          f"{st[2]:>10.2f}")

# %% [markdown]
# **Columns.** mIoU: oracle(output) vs oracle($G(z_t)$) at 32×32, mean ± std over the disjoint
# evaluation sets. proxy-acc: the share of feature pixels whose nearest centroid is the requested
# one (what $\mathcal L_{mask}$ optimises). d(src) / d(tgt): mean L1 distance of the per-class mean
# colours (background, skin, hair, clothes) to the style source $G(z_s)$ / to the mask source
# $G(z_t)$; "closer src" is the share of pairs nearer the style source. The reading below is
# computed from these numbers.

# %%
full_keys = [k for k in rows if k.startswith("full (seed")]
full_m = [np.mean(rows[k]["miou"]) for k in full_keys]
spread = max([np.std(rows[k]["miou"]) for k in full_keys] + [np.std(full_m) if len(full_m) > 1 else 0.0])
f_mean, fl = float(np.mean(full_m)), float(np.mean(floor))
noskip = float(np.mean(rows["full, skip image NOT moved (trap)"]["miou"]))
nomask = float(np.mean(rows["no L_mask (seed 0)"]["miou"]))
noself = float(np.mean(rows["no L_self (seed 0)"]["miou"]))
scs = float(np.mean(rows["latent optimisation (SCS)"]["miou"]))
other_key = [k for k in rows if k.startswith("key_mask=")][0]
other = float(np.mean(rows[other_key]["miou"]))
lm_end = float(np.mean(runs[("full", 0)]["hist"].losses["loss_mask"][-20:]))


def cmp(a, b):
    return "above" if a - b > spread else ("below" if b - a > spread else "within the spread of")


print(f"spread (largest std over sets or seeds of the full arm): {spread:.3f}")
print(f"1. Mask following: full {f_mean:.3f} is {cmp(f_mean, fl)} the floor {fl:.3f} "
      f"(gain {f_mean - fl:+.3f}) and {cmp(f_mean, scs)} latent optimisation {scs:.3f}.")
print(f"   L_mask of the full arm ends at {lm_end:.2f} vs ln K = {lnk:.2f}: "
      + ("the rearranger learned to place the requested clusters in feature space"
         + (", but G2 does not turn them into faces the oracle segments as requested (mIoU below the floor)."
            if f_mean < fl - spread else ".") if lm_end < 0.7 * lnk else
         "it did NOT fall well below ln K: attention stayed close to uniform (the spec's negative pilot)."))
st_full = rows["full (seed 0)"]["style"]
print(f"2. Appearance: the full arm's class colours are {st_full[0]:.3f} from the style source and {st_full[1]:.3f} "
      f"from the mask source; closer to the style source in {100 * st_full[2]:.0f}% of pairs "
      + ("(the source's look is kept)." if st_full[2] > 0.5 else "(the source's look is NOT kept)."))
print(f"3. Ablation (B.1): no L_mask {nomask:.3f} is {cmp(nomask, f_mean)} full; "
      + ("it is near the floor: without L_mask the rearranger restores its source, as the paper says [L56]."
         if abs(nomask - fl) <= max(spread, 0.05) else
         ("it is far below the floor too: it neither follows the mask nor restores its source (the paper's "
          "'restores its original state' does not show; the outputs collapse)." if fl - nomask > max(spread, 0.05)
          else "the paper's 'disregards the mask' effect does not show at this scale."))
      + f" No L_self {noself:.3f} is {cmp(noself, f_mean)} full (the paper: slower convergence, Fig. S2).")
print(f"4. Skip-image trap: with the partial image NOT moved, mIoU {noskip:.3f} is {cmp(noskip, f_mean)} the "
      f"full arm's {f_mean:.3f}" + (": the source's coarse layout leaks through, as spec 4.3 predicts."
                                     if f_mean - noskip > spread else "."))
print(f"5. Keys: {other_key} reaches {other:.3f} vs {f_mean:.3f} with key_mask={cfg.key_mask} "
      f"({cmp(other, f_mean)}).")

# %% [markdown]
# **The committed reference `cpu` run** (shipped 12k-step prior, 700 steps per arm, one thread,
# 2026-11-29 on the shared 2-core machine at load ≈ 12; the cell above prints *this* run's numbers):
# L_mask of the full arm fell from ln 25 ≈ 3.2 to 1.17 and its proxy accuracy rose to 0.61, with
# sharp attention rows; the outputs keep the style source's colours (closer to it in 99 % of pairs).
# But the rendered images are distorted faces: mask-following mIoU **0.363** (two seeds 0.367 / 0.360)
# is far **below** the no-rearrangement floor 0.693 (procedural faces share much of their layout)
# and below latent optimisation 0.776. No L_mask collapsed to flat blobs (0.093) rather than
# restoring its source; no L_self 0.189; `key_mask=True` 0.197 (its L_mask jumped at step ~400 and
# never recovered); moving the skip image or not changed nothing measurable (0.377 vs 0.363). **The
# paper's central effect does not show at this scale**: the feature-level objective is met, the
# image-level one is not. The `gpu` preset (8000 steps) is where to look next.

# %%
n_show = 6
fig, axes = plt.subplots(2 + len(runs) + 2, n_show, figsize=(1.5 * n_show, 1.55 * (4 + len(runs))))
rows_img = [("style source G(z_s)", X_s[:n_show]), ("mask source G(z_t)", X_t[:n_show])]
rows_img += [(f"{k[0]} s{k[1]}", render(r["R"], idx=slice(0, n_show))) for k, r in runs.items()]
rows_img += [("full, skip NOT moved", render(R_full, "source", slice(0, n_show))), ("latent opt.", X_scs[:n_show])]
for i, (name, imgs) in enumerate(rows_img):
    for j in range(n_show):
        axes[i, j].imshow(viz.to_numpy_image(imgs[j].cpu()))
        axes[i, j].set_xticks([])
        axes[i, j].set_yticks([])
    axes[i, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right")
fig.suptitle("appearance from the style source, layout from the mask source")
viz.save(fig, out, "rearranged_samples")
plt.show()

# %% [markdown]
# **Where does each output pixel come from?** A row of $A$ for a query pixel is a distribution over
# the source's pixels. Near-uniform rows mean the output is an average (no rearrangement).

# %%
with torch.no_grad():
    _, _, A_full = R_full(F_s[:1], M_t[:1], P_s[:1], M_s[:1], return_attention=True)
queries = [(AT // 4, AT // 2), (AT // 2, AT // 2 - AT // 6), (AT - 2, AT // 2)]
fig, axes = plt.subplots(1, 2 + len(queries), figsize=(2.4 * (2 + len(queries)), 2.6))
axes[0].imshow(viz.to_numpy_image(X_s[0].cpu()))
axes[0].set_title("style source")
axes[1].imshow(viz.to_numpy_image(X_t[0].cpu()))
axes[1].set_title("mask source (query)")
for i, (qy, qx) in enumerate(queries):
    row = A_full[0, qy * AT + qx].reshape(AT, AT).cpu()
    axes[2 + i].imshow(row, cmap="magma")
    axes[2 + i].set_title(f"A row, query ({qy},{qx})\nmax {row.max():.2f} (uniform {1 / AT ** 2:.3f})", fontsize=8)
    axes[1].plot(qx * cfg.image_size / AT, qy * cfg.image_size / AT, "c+", ms=10)
for a in axes:
    a.axis("off")
viz.save(fig, out, "attention_rows")
plt.show()

# %% [markdown]
# ## 7. The semantic mapper: user label maps → proxy masks, from a few labelled pairs [L36, L46]
#
# "we adopt the architecture of OASIS [9], which takes the input condition and generates a 64²
# resolution output proxy mask, except input noise" [L36]. The mapper is trained on **generated**
# samples whose proxy masks are known; their label maps come from a segmenter trained on the few
# labelled real pairs (spec 6.2; Tritrong et al.'s one-shot part segmentation plays that role in
# the paper [L130]). Recipe [L46]: CE with weight 10 for most steps, then a short phase adding
# $\mathcal L_{adv}$ (the soft mask goes through the frozen rearranger and $G_2$ to the
# discriminator) with the CE weight raised to 100.
#
# **Baseline: OASIS trained on the same `n_shots` real pairs** (`nbsyn.models.oasis.train_variant`,
# a fixed number of steps). Both are scored on held-out real label maps with the oracle.

# %%
shots = data.make_dataset(cfg.dataset, cfg.n_shots, cfg.image_size, seed=cfg.seed + 7)
test_maps = data.make_dataset(cfg.dataset, cfg.n_eval_pairs, cfg.image_size, seed=cfg.seed + 8).labels.to(dev)
data.check_labels(shots.labels, NC)
if len(shots) < cfg.n_shots:
    raise ValueError(f"asked for {cfg.n_shots} labelled pairs, only {len(shots)} exist")
fewshot_seg = metrics.train_segmenter(shots.images, shots.labels, NC, cfg.fewshot_seg_steps, seed=cfg.seed,
                                      device=dev)
Fp, Pp, Wp, Xp = su.sample_features(G, cfg.n_pseudo, AT, seed=cfg.seed + 300)
pseudo = su.majority_pool(metrics.segment(fewshot_seg, Xp.clamp(-1, 1)).to(dev), AT, NC)
proxy_p = proxy.assign(Fp)
torch.manual_seed(cfg.seed)
mapper = su.build_mapper(NC, cfg.n_clusters, cfg.mapper_width, cfg.mapper_blocks).to(dev)
D_full = runs[("full", 0)]["D"].requires_grad_(False)
gen_adv = torch.Generator().manual_seed(cfg.seed + 400)


def mapper_adv(soft, idx):
    """L_adv of the mapper: its soft mask as the frozen rearranger's query, rendered by G2, judged by D."""
    j = torch.randint(cfg.n_pseudo, (soft.shape[0],), generator=gen_adv)
    f, rgb = R_full(Fp[j], soft, Pp[j], proxy_p[j])
    return sg.g_nonsaturating_loss(D_full(su.resume(G.synthesis, f, rgb, Wp[j], AT)))


R_full.requires_grad_(False)
mapper_hist = su.train_mapper(mapper, pseudo, proxy_p, NC, cfg.mapper_iterations, cfg.batch_size,
                              lambda_recon=cfg.lambda_recon, seed=cfg.seed, adv_iterations=cfg.mapper_adv_iterations,
                              lambda_recon_adv=cfg.lambda_recon_adv, adv_fn=mapper_adv)
mapper.eval()


@torch.no_grad()
def ours_from_labels(label_maps, zs_seed):
    small = su.majority_pool(label_maps, AT, NC)
    pm = mapper(one_hot(small, NC).float()).argmax(1)
    f, p, w, _ = su.sample_features(G, label_maps.shape[0], AT, seed=zs_seed)
    return su.rearrange_render(G, R_full, f, p, w, pm, AT, proxy.assign(f)), pm


X_ours, PM_ours = ours_from_labels(test_maps, cfg.seed + 500)
oasis_cfg = {**oasis.PRESETS["cpu"], "iterations": cfg.oasis_iterations, "time_budget_s": None,
             "image_size": cfg.image_size, "checkpoint_every": 0}
shots_set = shots  # the same few labelled pairs
oasis_run = oasis.train_variant(oasis_cfg, "OASIS", shots_set, cfg.seed, device=dev)
oasis.recalibrate_ema(oasis_run, shots_set, oasis_cfg, NC, seed=cfg.seed)
X_oasis = oasis.generate(oasis_run.ema.module.eval(), test_maps, NC).clamp(-1, 1)
X_rand = su.sample_features(G, test_maps.shape[0], AT, seed=cfg.seed + 500)[3].clamp(-1, 1)

# %%
# NBVAL_CHECK_OUTPUT
part_d = {}
for name, imgs in [("ours: mapper + rearranger", X_ours), (f"OASIS on the {cfg.n_shots} pairs", X_oasis),
                   ("floor: unconditional G(z)", X_rand)]:
    part_d[name] = metrics.miou_and_accuracy(metrics.segment(oracle, imgs).to(dev), test_maps, NC)
mapper_acc = float((mapper(one_hot(pseudo, NC).float()).argmax(1) == proxy_p).float().mean())
print(f"mapper: CE {mapper_hist['recon'][0]:.3f} -> {mapper_hist['recon'][-1]:.3f} "
      f"({cfg.mapper_iterations} + {cfg.mapper_adv_iterations} adversarial steps); proxy accuracy on its training "
      f"pairs {mapper_acc:.3f}")
print(f"OASIS: {oasis_run.history.steps} steps on {cfg.n_shots} pairs")
for name, sc in part_d.items():
    print(f"{name:<32} mIoU {sc['miou']:.3f}  accuracy {sc['accuracy']:.3f}")

# %%
ours_d, oasis_d = part_d["ours: mapper + rearranger"]["miou"], part_d[f"OASIS on the {cfg.n_shots} pairs"]["miou"]
print(f"With {cfg.n_shots} labelled pairs, ours reaches mIoU {ours_d:.3f} and OASIS {oasis_d:.3f} (floor "
      f"{part_d['floor: unconditional G(z)']['miou']:.3f}): "
      + ("ours is ahead of OASIS, the direction of the paper's 1-shot table" if ours_d > oasis_d else
         "OASIS is ahead here; the paper's 1-shot advantage (+7.6 mIoU) does not show at this scale")
      + ("; ours is above the floor." if ours_d > part_d['floor: unconditional G(z)']['miou'] else
         "; ours does not even beat the unconditional floor: the mapper / rearranger chain fails at this budget."))
n_show = 6
fig, axes = plt.subplots(4, n_show, figsize=(1.5 * n_show, 6.4))
for j in range(n_show):
    for i, im in enumerate([viz.colorize(test_maps[j].cpu(), PALETTE),
                            viz.colorize(F.interpolate(PM_ours[j:j + 1, None].float(), size=cfg.image_size,
                                                       mode="nearest")[0, 0].long().cpu(), KPAL),
                            X_ours[j].cpu(), X_oasis[j].cpu()]):
        axes[i, j].imshow(viz.to_numpy_image(im), interpolation="nearest")
        axes[i, j].set_xticks([])
        axes[i, j].set_yticks([])
for i, name in enumerate(["user label map", "mapper → proxy mask", "ours", f"OASIS ({cfg.n_shots} pairs)"]):
    axes[i, 0].set_ylabel(name, fontsize=8)
viz.save(fig, out, "label_maps_to_images")
plt.show()

# %% [markdown]
# **Reference `cpu` run** (same run as quoted in section 6): the mapper's CE fell 3.22 → 0.79
# (proxy accuracy 0.70 on its pseudo-labelled pairs); on 128 held-out real label maps ours reached
# mIoU 0.314 and OASIS trained 500 steps on the same 16 pairs 0.259, but an *unconditional* sample
# scores 0.375 against a random label map of these look-alike faces: neither conditional pipeline
# beats that floor at this budget, so the ordering ours > OASIS is not evidence for the paper's claim.

# %% [markdown]
# ## 8. Widget: edit a proxy mask and regenerate
#
# Paint clusters with the mouse, or pick a cluster (named by its dominant true class) and move it
# by (dy, dx); the image on the right is $G_2(R(F_s, M))$: the same source appearance in the edited
# layout. Run it in JupyterLab; the static figure after it shows programmatic edits.

# %%
src = 0
base_mask = M_s[src].cpu()


@torch.no_grad()
def regenerate(mask):
    m = mask.to(dev)[None]
    return su.rearrange_render(G, R_full, F_s[src:src + 1], P_s[src:src + 1], W_s[src:src + 1], m, AT,
                               M_s[src:src + 1])[0].cpu()


panel = su.ProxyMaskPanel(base_mask, CLUSTER_NAMES, KPAL, regenerate)
try:
    from nbsyn.widgets import frame

    display(frame(panel.widget(), "edit the proxy mask (paint a cluster, or move one by dy, dx), then regenerate: "  # noqa: F821
                  "same source, new layout", legend=([f"c{k:02d} · {n}" for k, n in enumerate(CLUSTER_NAMES)], KPAL)))
except Exception as exc:  # noqa: BLE001 - no widget front-end (papermill): the static figure follows
    print(f"(widget not shown: {type(exc).__name__})")

# %%
def cluster_of(cls_name):
    """The largest cluster of the source mask whose dominant class is ``cls_name`` (or None)."""
    ks = [k for k in base_mask.unique().tolist() if CLUSTER_NAMES[k] == cls_name]
    return max(ks, key=lambda k: int((base_mask == k).sum())) if ks else None


edits = [("source mask", base_mask), ("mirror flip", base_mask.flip(-1))]
for cls_name, dy, dx in [("eyes", -2, 0), ("hair", 0, 3), ("skin", 0, 2)]:
    k = cluster_of(cls_name)
    if k is not None:
        edits.append((f"{cls_name} (c{k}) moved ({dy},{dx})", su.move_region(base_mask, k, dy, dx)))
k_hair = cluster_of("hair")
if k_hair is not None:
    grown = base_mask.clone()
    grown[AT // 2:, : AT // 5] = k_hair
    grown[AT // 2:, -AT // 5:] = k_hair
    edits.append(("long hair painted", grown))
k_eye = cluster_of("eyes")
if k_eye is not None:
    from nbsyn.widgets import paint_disc

    edits.append(("third eye painted", paint_disc(base_mask, AT * 0.22, AT / 2, AT / 16, k_eye)))
fig, axes = plt.subplots(2, len(edits), figsize=(2.6 * len(edits), 5.6))
for j, (name, m) in enumerate(edits):
    axes[0, j].imshow(viz.to_numpy_image(viz.colorize(m, KPAL)), interpolation="nearest")
    axes[0, j].set_title(name, fontsize=7)
    axes[1, j].imshow(viz.to_numpy_image(regenerate(m)))
for a in axes.flat:
    a.axis("off")
fig.suptitle("programmatic proxy-mask edits (top) and G2(R(F_s, edited mask)) (bottom), same source")
viz.save(fig, out, "mask_edits")
plt.show()

# %% [markdown]
# ## 9. Results beside the paper's numbers
#
# The paper's numbers are at 256 px with 140k rearranger iterations and a CelebAMask-HQ face parser;
# ours at 32 px, `iterations` steps, procedural faces and a small U-Net oracle. Only directions are
# comparable.

# %%
def mean_or_none(v):
    return None if v is None else float(np.mean(v))


table_rows = [
    {"experiment": "proxy masks", "metric": f"cluster purity K={cfg.n_clusters} (majority baseline "
     f"{majority_baseline:.2f})", "ours": purity[cfg.n_clusters], "paper": "-", "note": "Fig. S4 qualitative only"},
]
for name, r in rows.items():
    table_rows.append({"experiment": "rearranger", "metric": f"mask-following mIoU: {name}",
                       "ours": float(np.mean(r["miou"])), "paper": "-", "tol": float(spread),
                       "note": f"± {np.std(r['miou']):.3f} over {cfg.n_eval_sets} sets"})
table_rows.append({"experiment": "rearranger", "metric": "share of pairs closer to the style source (full)",
                   "ours": rows["full (seed 0)"]["style"][2], "paper": "-", "note": "style from z_s [L54]"})
for name, sc in part_d.items():
    paper = {"ours: mapper + rearranger": "53.1 (1-shot, CelebAMask-HQ)",
             f"OASIS on the {cfg.n_shots} pairs": "45.5 (1-shot)"}.get(name, "-")
    table_rows.append({"experiment": f"{cfg.n_shots} labelled pairs", "metric": f"mIoU vs label map: {name}",
                       "ours": float(sc["miou"]), "paper": paper, "note": "page table qual_sup"})
complete = not any(r["hist"].stopped_by_budget for r in runs.values())
path = reproduce.record_results(out, NOTEBOOK, cfg, table_rows, complete=complete, device=dev)
for row in table_rows:
    print(f"{row['experiment']:>18} | {row['metric']:<66} | {row['ours']:.3f} | {row['paper']}")
print(f"saved {path}; whole notebook: {time.perf_counter() - notebook_start:.0f} s")

# %% [markdown]
# ## 10. What we simplified
#
# * **Scale.** A 32-px `cpu`-config StyleGAN2 (the shipped reference, 32 channels at 16×16) instead
#   of config-F at 256–1024 px; the split at 16×16 instead of 64×64; hundreds of rearranger steps
#   instead of 140k. The `paper` preset builds config-F (30,034,338 / 30,276,583 / 30,370,060
#   parameters at 256 / 512 / 1024, pinned in the tests) and the rearranger / mapper at the paper
#   widths, but needs a pre-trained checkpoint and the prepared datasets.
# * **Reconstructed equations [INFER].** $\mathcal L_{self}$ (feature space plus the moved skip image),
#   $\mathcal L_{mask}$ (cross-entropy of cosine logits, τ = 0.1), the attention with the position
#   encoding on queries and keys, "one 4-layer block per side", and the alternation (even self, odd
#   cross, the cross mask from the next sample in the batch) are readings of the supplement; the
#   main text with the formulas was not available. $\mathcal L_{adv}$ is applied on the scheduled
#   iterations of either kind.
# * **The skip image** is moved with the same attention (spec 4.3); the trap is shown as an
#   evaluation-time switch, not a separately trained arm.
# * **`key_mask`** is a named deviation (the source's own proxy-mask embedding added to the keys),
#   exposed as an option; the other setting is trained as an arm with the same steps.
# * **Evaluation.** The "face parser" is a small U-Net; no FID (Inception weights are not
#   downloaded here) — mIoU, proxy accuracy and a class-colour style check instead.
# * **Mapper.** Trained on generated samples labelled by a few-shot U-Net (a stand-in for Tritrong et
#   al.); its adversarial phase uses the full arm's discriminator frozen. Segmentation-map input only
#   (no sketch / HED / depth U-Net variant). No latent-optimisation baseline in the few-pair part.
