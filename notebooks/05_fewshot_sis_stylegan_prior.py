# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Few-shot semantic image synthesis with a StyleGAN prior
#
# **Idea.** With only one or five labelled (mask, photo) pairs, a semantic image synthesis model
# either over-fits (pSp trained on the pairs ignores the input layout) or looks bad (SPADE follows
# the layout but has seen five photos). Endo & Kanamori keep a StyleGAN2 **pre-trained without
# labels** frozen and turn its features into an unlimited supply of labelled data:
#
# 1. the few labelled photos give one *representative vector* per class from StyleGAN's feature
#    map (masked average pooling, Eq. 1);
# 2. every fresh sample $G(z)$ gets a *pseudo label map* by cosine nearest neighbour (Eq. 2), or,
#    for scribbles and landmarks, by top-$k$ matching with a threshold;
# 3. a pSp encoder learns pseudo-label $\mapsto$ latent with an L2 loss in latent space (Eq. 3);
#    at test time $G(\bar w + E(x))$, and resampling the latents from layer $l$ on gives several
#    images per layout.
#
# Table 2's reading: pSp on a few pairs ignores the layout (mIoU 24.8 at one shot on CelebAMask-HQ);
# pixel-aligned SPADE follows it (64.8) but looks bad (FID 79.3); the pseudo-labels get a usable
# layout (38.3) with the best images (FID 59.1).
#
# Our procedural scenes have **exact labels**, which the paper never had, so this notebook also
# measures the pseudo-labels themselves.
#
# *Reference:* Y. Endo and Y. Kanamori, "Few-shot Semantic Image Synthesis Using StyleGAN Prior",
# arXiv 2103.14877 (2021). `[Lnnn]` are lines of `papers/endo2021_fewshot_sis_stylegan_prior.txt`;
# § are sections of `specs/endo_fewshot_sis.md`.

# %% tags=["parameters"]
preset = "auto"
device = "auto"
seed = None
iterations = None
image_size = None
dataset = None
out_dir = "runs/latest/05_fewshot_sis_stylegan_prior"

# %%
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from nbsyn import data, metrics, presets, pretrained, reproduce, runtime, viz, widgets
from nbsyn.models import fewshot_sis as fs
from nbsyn.models import oasis

NOTEBOOK = "05_fewshot_sis_stylegan_prior"
cfg = presets.resolve(NOTEBOOK, preset, seed=seed, iterations=iterations, image_size=image_size, dataset=dataset)
if cfg.dataset not in data.DATASETS:  # the paper's datasets: clear errors before any work
    from nbsyn.data import fewshot_smis

    fewshot_smis.check_paper_inputs(cfg.dataset, cfg.prior)
dev = runtime.setup(cfg.seed, device, threads=None if "NBSYN_THREADS" in os.environ else 1)
out = Path(out_dir)
notebook_start = time.perf_counter()
print(cfg)

# %% [markdown]
# ## 1. The prior: a frozen StyleGAN2 trained without labels
#
# The paper uses public StyleGAN2 checkpoints (FFHQ, LSUN church / car / cat) [L174]. Ours is the
# project's shipped reference model `stylegan2_scenes32`: StyleGAN2 at the `cpu` configuration of
# `nbsyn.models.stylegan2` (32 px, $z = w = 64$, 4 mapping layers, 8 ws), trained on procedural
# scene *images only* for a fixed number of steps by `python -m nbsyn.pretrained train`. It is
# loaded, never trained here, and frozen (`requires_grad` False). The shipped U-Net segmenter of
# real renders (`segmenter_scenes32`) is **evaluation machinery only**: it plays the paper's
# external parser (UPerNet / face parser, L216) and labels nothing any method arm trains on,
# except the "oracle labels" upper bound (arm O), which says so.

# %%
prior = pretrained.load(cfg.prior, device=dev)
G = prior.G
fs.check_prior_matches(cfg, G)
segmenter = prior.companion(f"segmenter_{cfg.dataset}{cfg.image_size}").G
assert all(not p.requires_grad for p in G.parameters())
print(f"prior {cfg.prior}: {prior.entry['steps']} training steps, G {fs.count_parameters(G):,} parameters, "
      f"num_ws {G.num_ws}, w_dim {G.cfg.w_dim}")
if prior.entry["steps"] < prior.config["steps"]:
    print(f"WARNING: this prior was trained for {prior.entry['steps']} of its {prior.config['steps']} steps "
          "(a short development copy?): its features are weaker than the shipped model's.")
with torch.no_grad():
    z_show = torch.randn(16, G.cfg.z_dim, generator=torch.Generator(device=dev).manual_seed(1), device=dev)
    img_show, feats_show = G(z_show, noise_mode="const", return_features=True)
    img_show = img_show.clamp(-1, 1)
print("feature maps (the candidates for the paper's '64 x 64' layer):",
      {r: tuple(f.shape[1:]) for r, f in feats_show.items()})
fig, axes = plt.subplots(2, 1, figsize=(12, 3.4))
viz.show_images(img_show.cpu(), nrow=16, title="samples of the frozen prior G", ax=axes[0])
viz.show_images(viz.colorize(metrics.segment(segmenter, img_show.cpu()), data.make_dataset(cfg.dataset, 1, 8).palette),
                nrow=16, title="the evaluation segmenter's labels of those samples (never shown to arms P, F, S)",
                ax=axes[1])
viz.save(fig, out, "prior_samples")
plt.show()

# %% [markdown]
# ## 2. Data: the shots, the test maps, and two references
#
# * **Shot draws.** The paper does not say how its $N_l$ pairs were chosen [L174]; results depend
#   on the choice, so we draw `n_draws` sets of five renders (procedural seeds `seed + 100 + d`);
#   the 1-shot set is the first of the five (nested shots).
# * **Test maps.** `n_test` held-out renders (seed `seed + 1`); their label maps are the inputs.
# * **Layout-blind floor:** the first shot's map predicted for every test map. A method that ignores
#   its input scores about this (the pSp rows of Table 2 behave this way, L189).
# * **Segmenter ceiling:** the segmenter on the real test renders.

# %%
test = data.make_dataset(cfg.dataset, cfg.n_test, cfg.image_size, seed=cfg.seed + 1)
C, names, palette = test.num_classes, list(test.class_names), test.palette
draws = [data.make_dataset(cfg.dataset, max(cfg.shots), cfg.image_size, seed=cfg.seed + 100 + d)
         for d in range(cfg.n_draws)]
if any(len(d) < max(cfg.shots) for d in draws):
    raise ValueError(f"a draw has fewer than the {max(cfg.shots)} shots asked for")
ceiling = fs.layout_scores(segmenter, test.images, test.labels, C)
floor = [metrics.miou_and_accuracy(d.labels[0].expand_as(test.labels), test.labels, C) for d in draws]
for d, shots in enumerate(draws):
    for n in cfg.shots:
        present = sorted({names[int(c)] for c in shots.labels[:n].unique()})
        print(f"draw {d}, {n}-shot: classes {present}")

# %%
# NBVAL_CHECK_OUTPUT
print(f"segmenter ceiling on {cfg.n_test} real test renders: mIoU {ceiling['miou']:.3f}, "
      f"accuracy {ceiling['accuracy']:.3f}")
print("layout-blind floor (first shot's map for every test map): mIoU "
      + ", ".join(f"{f['miou']:.3f}" for f in floor) + " (per draw)")

# %%
fig, axes = plt.subplots(cfg.n_draws + 1, 1, figsize=(10, 1.9 * (cfg.n_draws + 1)), squeeze=False)
for d, shots in enumerate(draws):
    viz.show_images(torch.cat([shots.images, viz.colorize(shots.labels, palette)]), nrow=max(cfg.shots),
                    title=f"draw {d}: the five shots and their maps (the 1-shot set is the first)", ax=axes[d, 0])
viz.show_images(viz.colorize(test.labels[:10], palette), nrow=10, title="test label maps (inputs)",
                ax=axes[-1, 0])
viz.save(fig, out, "data")
plt.show()

# %% [markdown]
# ## 3. Inverting the labelled photos (route (a) of L106)
#
# The labelled photo $\mathbf y$ is inverted into W+ "via optimization" [L106]; its feature map is
# then read by a forward pass. The official code runs 2000 Ranger steps at lr 1 on L2 + 0.8 LPIPS
# (§2.1); we run `invert_steps` Adam steps on the pixel L2 (LPIPS needs weights this machine may not
# have) with constant noise, and keep each image's best latent. All draws' shots and `n_inv` more
# held-out renders (for measuring the pseudo-labels, §4) are inverted in one batch.
#
# **The inversion bounds the prototypes**: they are pooled over the reconstruction's features, with
# the photo's mask. The segmenter's score of the reconstructions against the photos' true maps
# measures that error.

# %%
inv_set = data.make_dataset(cfg.dataset, cfg.n_inv, cfg.image_size, seed=cfg.seed + 2)
to_invert = torch.cat([torch.cat([d.images for d in draws]), inv_set.images]).to(dev)
t0 = time.perf_counter()
ws_all, inv_err = fs.invert(G, to_invert, cfg.invert_steps, cfg.invert_lr,
                            torch.Generator(device=dev).manual_seed(cfg.seed))
n_shot_imgs = cfg.n_draws * max(cfg.shots)
ws_shots = ws_all[:n_shot_imgs].view(cfg.n_draws, max(cfg.shots), G.num_ws, G.cfg.w_dim)
ws_inv = ws_all[n_shot_imgs:]
with torch.no_grad():
    recon = G.synthesis(ws_all, noise_mode="const").clamp(-1, 1).cpu()
true_maps = torch.cat([torch.cat([d.labels for d in draws]), inv_set.labels])
inv_layout = metrics.miou_and_accuracy(metrics.segment(segmenter, recon), true_maps, C)
print(f"inverted {len(to_invert)} images in {time.perf_counter() - t0:.0f} s")

# %%
# NBVAL_CHECK_OUTPUT
print(f"inversion: pixel MSE {inv_err.mean():.4f} (mean over {len(inv_err)} images); the segmenter on the "
      f"reconstructions vs the photos' true maps: mIoU {inv_layout['miou']:.3f}, accuracy {inv_layout['accuracy']:.3f}")

# %%
fig = viz.show_images(torch.cat([to_invert[:8].cpu(), recon[:8]]), nrow=8,
                      title="shots of draw 0-1 (top) and their W+ inversions (bottom)")
viz.save(fig, out, "inversion")
plt.show()

# %% [markdown]
# ## 4. Representative vectors (Eq. 1) and dense pseudo-labels (Eq. 2)
#
# With $\mathbf F_i$ the feature map of shot $i$ and $\mathbf x'_i$ its mask resized (nearest) to
# the feature size [L106-108]:
#
# $$\mathbf v_c=\frac{1}{N_l}\sum_{i=1}^{N_l}\frac{\sum_{x,y}\mathbf F_i^{x,y}\,\mathbb I[\mathbf x_i'^{(c,x,y)}=1]}{\sum_{x,y}\mathbb I[\mathbf x_i'^{(c,x,y)}=1]},
# \qquad c^{(x,y)}=\operatorname{argmax}_{c}\cos(\mathbf v_c,\mathbf F'^{(x,y)}) \;\; \text{[L114]}.$$
#
# As in the official code, a class is averaged over the shots that contain it and $\mathbf v_c$ is
# L2-normalised (which makes the divisor irrelevant); a class absent from every shot gets a zero
# vector and can hardly ever be predicted — "a class unseen in the shots cannot be generated" (L251).
# The check: two shots, class 1 only in shot 0, class 2 nowhere.

# %%
# NBVAL_CHECK_OUTPUT
f_toy = torch.zeros(2, 2, 2, 2)
f_toy[0, 0, 0, :] = torch.tensor([1.0, 3.0])  # shot 0, class 0: features (1, 0) and (3, 0)
f_toy[0, 1, 1, :] = 2.0  # shot 0, class 1: (0, 2) twice
f_toy[1, 1] = 1.0  # shot 1: everything class 0, features (0, 1)
l_toy = torch.tensor([[[0, 0], [1, 1]], [[0, 0], [0, 0]]])
v_toy, present_toy = fs.representative_vectors(f_toy, l_toy, 3)
print("v_0 =", [round(v, 4) for v in v_toy[0].tolist()], "(mean of (2, 0) and (0, 1), normalised: (0.8944, 0.4472))")
print("v_1 =", v_toy[1].tolist(), "| v_2 =", v_toy[2].tolist(), "| present:", present_toy.tolist())
print("labels of four pixels:", fs.dense_pseudo_labels(torch.tensor([[[[1.0, 0.0, 5.0, 0.1]], [[0.0, 1.0, 1.0, 1.0]]]]),
                                                        v_toy).tolist())

# %% [markdown]
# **Which feature map.** The paper takes the 64×64 map, "the layer closest to the output" with that
# resolution [L112], which is $1/4$ of a 256-px generator and $1/16$ at 1024 px. At 32 px there is no
# analogue, so we measure. The spec's pilot, with a weakly trained prior, found the 8×8 map best
# (§10.9); with the shipped prior this sweep put 16×16 above 8×8 on both measures in our first `cpu`
# run (32×32 was marginally ahead only against exact truth at 5 shots), which is why the `cpu` preset
# uses `feat_res = 16` (the table below is this run's). Two measurements of the
# pseudo-labels, both impossible in the paper:
#
# * **(b) exact truth.** The `n_inv` held-out renders are inverted; the pseudo-labels of their
#   reconstructions' features are compared with the renderer's exact maps. This includes the
#   inversion's own error (printed above).
# * **(a) random samples.** Pseudo-labels of fresh $G(z)$ against the segmenter's labels of the
#   samples (a proxy truth), beside a **fixed-map baseline**: the first shot's map for every sample.

# %%
z_pl = torch.randn(cfg.n_pl, G.cfg.z_dim, generator=torch.Generator(device=dev).manual_seed(cfg.seed + 3), device=dev)
with torch.no_grad():
    img_pl, feats_pl = G(z_pl, noise_mode="const", return_features=True)
    feats_inv = G.synthesis(ws_inv, noise_mode="const", return_features=True)[1]
    feats_shots = {r: [G.synthesis(ws_shots[d], noise_mode="const", return_features=True)[1][r]
                       for d in range(cfg.n_draws)] for r in cfg.feat_res_sweep}
oracle_pl = metrics.segment(segmenter, img_pl.clamp(-1, 1).cpu())
protos = {}  # (draw, N_l, feature resolution) -> (C, Z) representative vectors
pl_exact, pl_samples = {}, {}
for r in cfg.feat_res_sweep:
    for d, shots in enumerate(draws):
        for n in cfg.shots:
            protos[d, n, r] = fs.representative_vectors(feats_shots[r][d][:n], shots.labels[:n].to(dev), C)[0]
            pred = fs.dense_pseudo_labels(feats_inv[r], protos[d, n, r], cfg.image_size).cpu()
            pl_exact[d, n, r] = metrics.miou_and_accuracy(pred, inv_set.labels, C)
            pred = fs.dense_pseudo_labels(feats_pl[r], protos[d, n, r], cfg.image_size).cpu()
            pl_samples[d, n, r] = metrics.miou_and_accuracy(pred, oracle_pl, C)
fixed_map = [metrics.miou_and_accuracy(d.labels[0].expand_as(oracle_pl), oracle_pl, C) for d in draws]
inv_truth = metrics.miou_and_accuracy(metrics.segment(segmenter, recon[n_shot_imgs:]), inv_set.labels, C)


def mean_std(values):
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    return t.mean().item(), (t.std().item() if len(t) > 1 else 0.0)


# %%
# NBVAL_CHECK_OUTPUT
print(f"(b) exact truth on {cfg.n_inv} inverted held-out renders; the inversion alone (segmenter on the "
      f"reconstructions): mIoU {inv_truth['miou']:.3f}, accuracy {inv_truth['accuracy']:.3f}")
print(f"(a) agreement with the segmenter on {cfg.n_pl} samples; fixed-map baseline: mIoU "
      f"{mean_std(f['miou'] for f in fixed_map)[0]:.3f}, accuracy {mean_std(f['accuracy'] for f in fixed_map)[0]:.3f}")
print(f"{'features':>9} {'N_l':>4} | {'(b) mIoU':>15} {'(b) accuracy':>15} | {'(a) mIoU':>15} {'(a) accuracy':>15}")
for r in cfg.feat_res_sweep:
    for n in cfg.shots:
        cells = [mean_std(tab[d, n, r][key] for d in range(cfg.n_draws))
                 for tab in (pl_exact, pl_samples) for key in ("miou", "accuracy")]
        print(f"{r:>6}x{r:<2} {n:>4} | " + " ".join(f"{m:>8.3f} ± {s:.3f}" for m, s in cells[:2]) + " | "
              + " ".join(f"{m:>8.3f} ± {s:.3f}" for m, s in cells[2:]))

# %%
r0 = cfg.feat_res
fig, axes = plt.subplots(1, 2, figsize=(13, 3.2))
for i, n in enumerate(cfg.shots):
    per_class = torch.tensor([[float("nan") if v != v else v for v in pl_exact[d, n, r0]["per_class_iou"]]
                              for d in range(cfg.n_draws)])
    axes[0].bar(torch.arange(C) + 0.4 * i - 0.2, per_class.nanmean(0).nan_to_num(0), width=0.4,
                label=f"{n}-shot", yerr=(per_class.std(0).nan_to_num(0) if cfg.n_draws > 1 else None))
axes[0].set_xticks(range(C), names, rotation=30)
axes[0].set_title(f"pseudo-label IoU per class vs exact truth ({r0}x{r0} features, mean ± std over draws)")
axes[0].legend()
for n in cfg.shots:
    axes[1].plot(cfg.feat_res_sweep, [mean_std(pl_exact[d, n, r]["miou"] for d in range(cfg.n_draws))[0]
                                      for r in cfg.feat_res_sweep], "o-", label=f"{n}-shot, exact truth (b)")
    axes[1].plot(cfg.feat_res_sweep, [mean_std(pl_samples[d, n, r]["miou"] for d in range(cfg.n_draws))[0]
                                      for r in cfg.feat_res_sweep], "s--", label=f"{n}-shot, vs segmenter (a)")
axes[1].axhline(mean_std(f["miou"] for f in fixed_map)[0], color="grey", ls=":", label="fixed map (a)")
axes[1].set_xscale("log", base=2)
axes[1].set_xlabel("feature resolution")
axes[1].set_ylabel("mIoU")
axes[1].set_title("which feature map")
axes[1].legend(fontsize=7)
fig.tight_layout()
viz.save(fig, out, "pseudo_label_accuracy")
plt.show()

# %% [markdown]
# **Pseudo-labels as the paper shows them (Fig. 3a):** samples, their pseudo-labels from the 1- and
# 5-shot vectors of draw 0, and the segmenter's labels.

# %%
n_fig = 10
rows = [img_pl[:n_fig].clamp(-1, 1).cpu()]
titles = ["samples G(z)"]
for n in cfg.shots:
    rows.append(viz.colorize(fs.dense_pseudo_labels(feats_pl[r0][:n_fig], protos[0, n, r0], cfg.image_size).cpu(),
                             palette))
    titles.append(f"dense pseudo-labels, {n}-shot vectors (draw 0)")
rows.append(viz.colorize(oracle_pl[:n_fig], palette))
titles.append("segmenter's labels (proxy truth)")
fig, axes = plt.subplots(len(rows), 1, figsize=(11, 1.5 * len(rows)))
for ax, row, title in zip(axes, rows, titles):
    viz.show_images(row, nrow=n_fig, title=title, ax=ax)
fig.legend(handles=viz.legend_handles(names, palette), loc="center right", fontsize=8, frameon=False)
viz.save(fig, out, "pseudo_labels")
plt.show()

# %% [markdown]
# **The gate** (§10.6, risk 1): do the pseudo-labels beat a fixed label map? If not, the prior's
# features do not separate the classes at this scale and the method has nothing to work with; the
# oracle-label arm O still shows the encoder-on-samples idea.

# %%
pl5 = mean_std(pl_samples[d, max(cfg.shots), r0]["miou"] for d in range(cfg.n_draws))[0]
fixed = mean_std(f["miou"] for f in fixed_map)[0]
gate_passed = pl5 > fixed
if gate_passed:
    print(f"Pseudo-labels (5-shot, {r0}x{r0}) agree with the segmenter at mIoU {pl5:.3f} against the fixed map's "
          f"{fixed:.3f}: the prior's features carry layout.")
else:
    print(f"**The prior's features do not separate the classes at this scale** (pseudo-label mIoU {pl5:.3f} vs "
          f"fixed map {fixed:.3f}): the method has nothing to work with; see arm O.")

# %% [markdown]
# ## 5. Sparse pseudo-labels (L123-L134)
#
# For scribbles and landmarks, one vector per class would give "dense clusters of semantic labels";
# instead **every annotated pixel keeps its own vector** and claims its top-$k$ most similar
# positions if the cosine exceeds $t$; contested positions go to the most similar annotation,
# everything else is "unknown" [L125]. $k = 3$, $t = 0.5$ in all the paper's results [L127, L316].
# Our scribbles are `nbsyn.data.scribbles` of the shots' maps (a cross through each class).
# Precision = agreement with the segmenter on the labelled positions; coverage = labelled share.

# %%
scrib = torch.stack([data.scribbles(m) for m in draws[0].labels])
vec, vec_cls = fs.sparse_vectors(feats_shots[r0][0], scrib.to(dev), C)


def sparse_scores(k, t):
    pred = fs.sparse_pseudo_labels(feats_pl[r0], vec, vec_cls, C, k=k, t=t, out_size=cfg.image_size).cpu()
    known = pred != data.IGNORE_INDEX
    precision = (pred[known] == oracle_pl[known]).float().mean().item() if known.any() else float("nan")
    return pred, precision, known.float().mean().item()


# %%
# NBVAL_CHECK_OUTPUT
print(f"{len(vec)} annotated pixel vectors from the 5 shots' scribbles of draw 0 (features {r0}x{r0})")
for k, t in ((1, 0.5), (cfg.sparse_k, cfg.sparse_t), (10, 0.5), (cfg.sparse_k, 0.3), (cfg.sparse_k, 0.7)):
    _, precision, coverage = sparse_scores(k, t)
    print(f"k = {k:>2}, t = {t}: precision {precision:.3f}, coverage {coverage:.3f}")

# %% [markdown]
# ## 6. The encoder (pSp GradualStyleEncoder, §2.5) and the arms
#
# The paper adopts the pSp encoder [L87]: an IR-SE-50 body, a feature pyramid, and one "map2style"
# head per $w$ (coarse heads read the 16×16 map, middle the 32×32, fine the 64×64), output added
# to $\bar w$. `StyleEncoder.paper(19, 18)` builds that size (the tests pin the counts of §11.3);
# the notebook trains the same structure with three narrow stages.

# %%
# NBVAL_CHECK_OUTPUT
with torch.device("meta"):
    for label_nc, style_num, what in ((19, 18, "CelebAMask-HQ"), (151, 14, "LSUN church"), (5, 16, "LSUN car")):
        print(f"paper encoder, {what} (label_nc {label_nc}, {style_num} ws): "
              f"{fs.count_parameters(fs.StyleEncoder.paper(label_nc, style_num)):,} parameters")
E_probe = fs.build_encoder(cfg, C, G)
print(f"this run's encoder: {fs.count_parameters(E_probe):,} parameters; heads per source: "
      f"{cfg.enc_coarse} coarse, {cfg.enc_middle} middle, {G.num_ws - cfg.enc_coarse - cfg.enc_middle} fine; "
      f"output {tuple(E_probe(torch.zeros(2, C, cfg.image_size, cfg.image_size, device=dev)).shape)}")
del E_probe

# %% [markdown]
# **Eq. 3** [L142]: $\mathcal L=\mathbb E_{\mathbf w\sim f(\mathbf z)}\|\hat{\mathbf w}-\mathbf w\|_2^2$,
# with a fresh $z$, fresh noise and a fresh pseudo-label every step (Algorithm 1, L150-164); the
# code's mean reduction and one $w$ repeated over the layers as the target; "backpropagation does
# not go through the pre-trained StyleGAN generator" [L144] (the step asserts it). The arms, all with
# the same frozen $G$, the same test maps and, within P / F / O, the same encoder, optimiser, batch
# and **the same fixed number of steps** (`iterations`):
#
# | arm | trained on | paper analogue |
# |---|---|---|
# | **P** (the method) | unlimited pseudo-labelled samples, Eq. 2 with the draw's vectors | "Ours" |
# | **F** (few pairs only) | the $N_l$ real pairs: their maps and inverted latents | pSp on the few pairs, with the method's latent loss |
# | **O** (oracle labels) | the same fresh samples, labelled by the evaluation segmenter | upper bound of the pseudo-label route (new) |
# | **S** (pixel-aligned) | the 5 real pairs, flipped and zoomed: OASIS generator + SPADE's PatchGAN D + feature matching (`oasis.train_variant`) | "SPADE", 5 shots |

# %%
arms, histories = {}, {}
t0 = time.perf_counter()
for d, shots in enumerate(draws):
    for n in cfg.shots:
        run_seed = cfg.seed + 1000 * d + n  # P and F of one (draw, N_l) start from the same encoder
        if "P" in cfg.arms:
            src = fs.pseudo_source(G, protos[d, n, r0], r0, cfg.image_size,
                                   torch.Generator(device=dev).manual_seed(run_seed))
            arms["P", n, d], histories["P", n, d] = fs.train_encoder(cfg, G, C, src, run_seed, f"P {n}-shot draw {d}")
        if "F" in cfg.arms:
            src = fs.pairs_source(shots.labels[:n].to(dev), ws_shots[d, :n],
                                  torch.Generator(device=dev).manual_seed(run_seed))
            arms["F", n, d], histories["F", n, d] = fs.train_encoder(cfg, G, C, src, run_seed, f"F {n}-shot draw {d}")
if "O" in cfg.arms:
    src = fs.oracle_source(G, segmenter, torch.Generator(device=dev).manual_seed(cfg.seed))
    arms["O", 0, 0], histories["O", 0, 0] = fs.train_encoder(cfg, G, C, src, cfg.seed, "O (oracle labels)")
print(f"encoder arms: {len(arms)} runs of {cfg.iterations} steps in {time.perf_counter() - t0:.0f} s")

# %%
s_runs, s_shot_scores = {}, {}
if "S" in cfg.arms:
    base_cfg = fs.baseline_config(cfg)
    n_s = max(cfg.shots)
    t0 = time.perf_counter()
    for d, shots in enumerate(draws):
        few = fs.repeated_pairs(data.SemanticDataset(shots.images[:n_s], shots.labels[:n_s], names, palette),
                                cfg.baseline_repeat, torch.Generator().manual_seed(cfg.seed + d))
        run = oasis.train_variant(base_cfg, "SPADE D + FM", few, cfg.seed + d, device=dev)
        oasis.recalibrate_ema(run, few, base_cfg, C, seed=cfg.seed + d)
        s_runs[n_s, d] = run.ema.module.eval()
        noise = oasis.sample_noise(n_s, run.G.z_dim, cfg.image_size, torch.Generator().manual_seed(0)).to(dev)
        fake = oasis.generate(s_runs[n_s, d], shots.labels[:n_s].to(dev), C, noise).clamp(-1, 1).cpu()
        s_shot_scores[d] = fs.layout_scores(segmenter, fake, shots.labels[:n_s], C)["miou"]
    print(f"arm S: {cfg.n_draws} runs of {cfg.baseline_iterations} steps in {time.perf_counter() - t0:.0f} s; "
          f"mIoU on its own training maps: " + ", ".join(f"{v:.3f}" for v in s_shot_scores.values()))

# %%
keys = [k for k in histories if k[0] in ("P", "F")][:4] + [k for k in histories if k[0] == "O"]
fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.6), squeeze=False)
for ax, key in zip(axes[0], keys):
    viz.plot_losses(histories[key], keys=["loss"], ax=ax, title=f"{key[0]} {key[1]}-shot draw {key[2]}"
                    if key[0] != "O" else "O (oracle labels)")
    ax.set_yscale("log")
fig.tight_layout()
viz.save(fig, out, "encoder_losses")
plt.show()

# %% [markdown]
# ## 7. Results: does the image follow the input map?
#
# The paper's protocol [L216, L223]: generate from the test maps, segment the outputs with the
# external parser, compare with the input: mIoU, pixel accuracy, fwIoU (church / ADE20K). Two
# variants for the encoder arms: **encoder only** (all ws from $E$; deterministic) and **l-mixed**
# (ws from `mix_from` on taken from a random $z$, the paper's inference, L363; mean over
# `n_mix_seeds` draws of $z$). Arm S gets one noise sample per map.

# %%
def evaluate_encoder(E):
    only = fs.layout_scores(segmenter, fs.synthesize(E, G, test.labels.to(dev)).cpu(), test.labels, C)
    mixed = []
    for s in range(cfg.n_mix_seeds):
        zm = torch.randn(cfg.n_test, G.cfg.z_dim, generator=torch.Generator(device=dev).manual_seed(500 + s),
                         device=dev)
        img = fs.synthesize(E, G, test.labels.to(dev), cfg.mix_from, zm).cpu()
        mixed.append(fs.layout_scores(segmenter, img, test.labels, C)["miou"])
    return {"miou": only["miou"], "accuracy": only["accuracy"], "fwiou": only["fwiou"],
            "miou_mixed": sum(mixed) / len(mixed), "per_class_iou": only["per_class_iou"]}


def s_images(Gs, labels, seed=0):
    noise = oasis.sample_noise(labels.shape[0], Gs.z_dim, cfg.image_size, torch.Generator().manual_seed(seed)).to(dev)
    return oasis.generate(Gs, labels.to(dev), C, noise).clamp(-1, 1).cpu()


scores = {key: evaluate_encoder(E) for key, E in arms.items()}
for key, Gs in s_runs.items():
    sc = fs.layout_scores(segmenter, s_images(Gs, test.labels), test.labels, C)
    scores["S", *key] = {"miou": sc["miou"], "accuracy": sc["accuracy"], "fwiou": sc["fwiou"],
                         "miou_mixed": None, "per_class_iou": sc["per_class_iou"]}


def summary(arm, n, key="miou"):
    vals = [scores[a, nn, d][key] for (a, nn, d) in scores if a == arm and nn == n]
    return mean_std(vals), vals


# %%
# NBVAL_CHECK_OUTPUT
print(f"layout fidelity on {cfg.n_test} test maps (the segmenter's mIoU / accuracy / fwIoU), mean ± std over "
      f"{cfg.n_draws} draws of the shots; per-draw mIoU in brackets")
print(f"{'arm':>18} | {'mIoU':>15} | {'accuracy':>15} | {'fwIoU':>15} | {'mIoU l-mixed':>15} | per draw")
rows_printed = [("P", n) for n in cfg.shots] + [("F", n) for n in cfg.shots] + [("S", max(cfg.shots)), ("O", 0)]
for arm, n in rows_printed:
    (m, s), vals = summary(arm, n)
    if not vals:
        continue
    cells = [summary(arm, n, k)[0] for k in ("accuracy", "fwiou")]
    mixed = summary(arm, n, "miou_mixed")[0] if arm != "S" else None
    label = f"{arm} {n}-shot" if arm != "O" else "O (oracle labels)"
    print(f"{label:>18} | {m:>7.3f} ± {s:.3f} | " + " | ".join(f"{a:>7.3f} ± {b:.3f}" for a, b in cells)
          + f" | {(f'{mixed[0]:>7.3f} ± {mixed[1]:.3f}' if mixed else '-'):>15} | "
          + ", ".join(f"{v:.3f}" for v in vals))
print(f"{'floor (fixed map)':>18} | {mean_std(f['miou'] for f in floor)[0]:>7.3f}   ({cfg.n_draws} draws)")
print(f"{'ceiling (real)':>18} | {ceiling['miou']:>7.3f}")

# %% [markdown]
# **The key effect** (§10.4): method minus few-pairs-only at the same $N_l$, per draw (same shots,
# same encoder initialisation, same steps), against the spread across draws. We call it shown when
# the mean gap exceeds twice the larger standard deviation of the two arms across draws.

# %%
effects = {}
for n in cfg.shots:
    (mp, sp), vp = summary("P", n)
    (mf, sf), vf = summary("F", n)
    if vp and vf:
        diffs = [a - b for a, b in zip(vp, vf)]
        effects[n] = dict(mean=mean_std(diffs)[0], std=mean_std(diffs)[1], diffs=diffs, spread=max(sp, sf),
                          shown=mean_std(diffs)[0] > 2 * max(sp, sf) and cfg.n_draws > 1)

# %%
# NBVAL_CHECK_OUTPUT
for n, e in effects.items():
    print(f"{n}-shot: mIoU(P) - mIoU(F) = {e['mean']:+.3f} ± {e['std']:.3f} over draws "
          f"(per draw: {', '.join(f'{v:+.3f}' for v in e['diffs'])}); larger spread of the two arms {e['spread']:.3f} "
          f"-> {'shown' if e['shown'] else 'NOT shown'} by the 2-sigma rule")

# %%
fig, ax = plt.subplots(figsize=(9, 3.4))
bars = [(f"{a} {n}" if a != "O" else "O", summary(a, n)) for a, n in rows_printed if summary(a, n)[1]]
for i, (label, ((m, s), vals)) in enumerate(bars):
    ax.bar(i, m, yerr=s, color={"P": "C0", "F": "C1", "S": "C2", "O": "C3"}[label[0]], alpha=0.8)
    ax.plot([i] * len(vals), vals, "k.", ms=4)
ax.axhline(mean_std(f["miou"] for f in floor)[0], color="grey", ls=":", label="layout-blind floor")
ax.axhline(ceiling["miou"], color="k", ls="--", label="segmenter ceiling (real renders)")
ax.set_xticks(range(len(bars)), [b[0] for b in bars])
ax.set_ylabel("mIoU (encoder only; S: one noise)")
ax.set_title("layout fidelity per arm and N_l: bars = mean over draws, dots = draws")
ax.legend(fontsize=8)
viz.save(fig, out, "layout_fidelity")
plt.show()

# %%
n_fig = 8
maps = test.labels[:n_fig].to(dev)
rows = {"input map": viz.colorize(maps.cpu(), palette), "real render": test.images[:n_fig]}
for a, n in rows_printed:
    if (a, n, 0) in arms:
        rows[f"{a} {n}-shot" if a != "O" else "O (oracle labels)"] = fs.synthesize(arms[a, n, 0], G, maps).cpu()
if s_runs:
    rows[f"S {max(cfg.shots)}-shot"] = s_images(s_runs[max(cfg.shots), 0], maps)
fig, axes = plt.subplots(len(rows), 1, figsize=(9, 1.45 * len(rows)))
for ax, (title, imgs) in zip(axes, rows.items()):
    viz.show_images(imgs, nrow=n_fig, title=title + (" (draw 0, encoder only)" if title[0] in "PFO" else ""), ax=ax)
fig.tight_layout()
viz.save(fig, out, "results_samples")
plt.show()

# %% [markdown]
# **Quality.** FID needs the Inception weights; without them `nbsyn.metrics.fid` says so, and no
# number from random weights is printed. Small-sample FID is biased: compare arms at equal $n$ only.

# %%
n5 = max(cfg.shots)
quality = {"prior G (unconditional)": img_pl[:cfg.n_test].clamp(-1, 1).cpu()}
if ("P", n5, 0) in arms:
    zq = torch.randn(cfg.n_test, G.cfg.z_dim, generator=torch.Generator(device=dev).manual_seed(700), device=dev)
    quality[f"P {n5}-shot (l-mixed)"] = fs.synthesize(arms["P", n5, 0], G, test.labels.to(dev), cfg.mix_from, zq).cpu()
    quality[f"F {n5}-shot (l-mixed)"] = fs.synthesize(arms["F", n5, 0], G, test.labels.to(dev), cfg.mix_from, zq).cpu()
if s_runs:
    quality[f"S {n5}-shot"] = s_images(s_runs[n5, 0], test.labels)
fid_scores = {name: metrics.fid(test.images, imgs, device=dev) for name, imgs in quality.items()}
for name, result in fid_scores.items():
    print(f"FID vs the {cfg.n_test} real test renders, {name}: {result}")

# %% [markdown]
# ## 8. Multi-modality: resampling the free latents (L361-L368)
#
# "We fed latent codes encoded from an input layout to the first $l$ layers of the generator and
# random noise vectors to the other layers" [L363]; $l = 8$ of 18 in the paper. Ours has 8 ws;
# `mix_from` resamples the last block (§10.8). Smaller $l$ changes coarser structure.

# %%
E_show = arms.get(("P", n5, 0))
map0 = test.labels[:1].to(dev)


def mixing_row(l_value, seeds=range(6), labels=map0):
    zz = torch.randn(len(seeds), G.cfg.z_dim, generator=torch.Generator(device=dev).manual_seed(900), device=dev)
    return fs.synthesize(E_show, G, labels.expand(len(seeds), -1, -1), l_value, zz).cpu()


if E_show is not None:
    ls = sorted({G.num_ws, cfg.mix_from, 3, 1}, reverse=True)
    fig, axes = plt.subplots(len(ls), 1, figsize=(7, 1.6 * len(ls)))
    for ax, l_value in zip(axes, ls):
        viz.show_images(torch.cat([viz.colorize(map0.cpu(), palette), mixing_row(l_value)]), nrow=7,
                        title=f"l = {l_value}: input map, then 6 random z for ws[{l_value}:]", ax=ax)
    fig.tight_layout()
    viz.save(fig, out, "style_mixing")
    plt.show()
    spread = {l_value: mixing_row(l_value).std(0).mean().item() for l_value in ls}
    print("pixel std across the 6 outputs, by l:", {k: round(v, 3) for k, v in spread.items()})

# %% [markdown]
# ## 9. Widgets
#
# **Paint a label map, see the synthesised image.** Pick a class, drag on the left canvas; the right
# image is $G(\bar w + E(x))$ of arm P (5-shot, draw 0) with the last block's latents fixed. A class
# id outside the dataset or a map of the wrong size is refused with a clear error.

# %%
z_fixed = torch.randn(1, G.cfg.z_dim, generator=torch.Generator(device=dev).manual_seed(42), device=dev)


def paint_generate(labels):
    if labels.shape != (cfg.image_size, cfg.image_size):
        raise ValueError(f"the painted map must be {cfg.image_size}x{cfg.image_size}, got {tuple(labels.shape)}")
    return fs.synthesize(E_show, G, labels[None].to(dev), cfg.mix_from, z_fixed)[0].cpu()


painter = widgets.MaskPainter(test.labels[0], names, palette, paint_generate)
painter.widget()

# %%
edits = {"original": test.labels[0]}
edits["lake painted"] = widgets.paint_disc(test.labels[0], cfg.image_size * 0.8, cfg.image_size * 0.5,
                                           cfg.image_size / 5, names.index("water") if "water" in names else 1)
edits["+ road"] = widgets.paint_stroke(edits["lake painted"], [(cfg.image_size - 1, cfg.image_size * 0.3),
                                                               (cfg.image_size * 0.6, cfg.image_size * 0.5)],
                                       cfg.image_size / 12, names.index("road") if "road" in names else 2)
cols = []
for name, m in edits.items():
    cols += [viz.colorize(m, palette), paint_generate(m)]
    if s_runs:
        cols.append(s_images(s_runs[n5, 0], m[None])[0])
per = 3 if s_runs else 2
fig = viz.show_images(torch.stack(cols), nrow=per, scale=2.4,
                      title="rows: " + ", ".join(edits) + "\nmap | P 5-shot" + (" | S 5-shot" if s_runs else ""))
viz.save(fig, out, "paint_edits")
plt.show()

# %% [markdown]
# **Resample the free latents** with a slider for $l$ (and one for the random seed).

# %%
def resample_render(l, seed):
    zz = torch.randn(6, G.cfg.z_dim, generator=torch.Generator(device=dev).manual_seed(seed), device=dev)
    return viz.grid(torch.cat([viz.colorize(map0.cpu(), palette),
                               fs.synthesize(E_show, G, map0.expand(6, -1, -1), l, zz).cpu()]), 7)


resample_panel = fs.SliderPanel(resample_render, {"l": (0, G.num_ws, 1, cfg.mix_from), "seed": (0, 999, 1, 0)})
widgets.frame(resample_panel.widget(), "free latents ws[l:] resampled; l = num_ws keeps the encoder's ws "
              "(first tile: the label map)", legend=(names, palette, map0.unique().tolist()))

# %%
fig, axes = plt.subplots(3, 1, figsize=(11, 6.6))
for ax, l_value in zip(axes, (G.num_ws, cfg.mix_from, 2)):
    viz.show_images(resample_panel.render(l=l_value, seed=3)[None], nrow=1, title=f"l = {l_value}, seed 3", ax=ax)
viz.save(fig, out, "resample_panel")
plt.show()

# %% [markdown]
# **Pseudo-label explorer** (Figs. 3a and 14): a seed picks $G(z)$; the panel shows the sample, its
# dense pseudo-label (5-shot vectors of draw 0), its sparse pseudo-label from the shots' scribbles
# with the $k$ and $t$ sliders (unknown in black), and the segmenter's labels.

# %%
sparse_palette = list(palette) + [(0, 0, 0)]


def explorer_render(seed, k, t):
    z = torch.randn(1, G.cfg.z_dim, generator=torch.Generator(device=dev).manual_seed(seed), device=dev)
    with torch.no_grad():
        img, feats = G(z, noise_mode="const", return_features=True)
    dense = fs.dense_pseudo_labels(feats[r0], protos[0, n5, r0], cfg.image_size).cpu()
    sparse = fs.sparse_pseudo_labels(feats[r0], vec, vec_cls, C, k=k, t=t, out_size=cfg.image_size).cpu()
    sparse = torch.where(sparse == data.IGNORE_INDEX, torch.full_like(sparse, C), sparse)
    truth = metrics.segment(segmenter, img.clamp(-1, 1).cpu())
    return viz.grid(torch.cat([img.clamp(-1, 1).cpu(), viz.colorize(dense, palette),
                               viz.colorize(sparse, sparse_palette), viz.colorize(truth, palette)]), 4)


explorer = fs.SliderPanel(explorer_render, {"seed": (0, 999, 1, 0), "k": (1, 20, 1, cfg.sparse_k),
                                            "t": (-1.0, 1.0, 0.05, cfg.sparse_t)})
widgets.frame(explorer.widget(), "sample | dense pseudo-label | sparse pseudo-label (k, t; unknown in black) | segmenter",
              legend=(list(names) + ["unknown"], sparse_palette))

# %%
ks, ts = (1, 3, 10), (0.3, 0.5, 0.7)
fig, axes = plt.subplots(len(ks), len(ts), figsize=(15, 5.5))
for i, k in enumerate(ks):
    for j, t in enumerate(ts):
        viz.show_images(explorer.render(seed=5, k=k, t=t)[None], nrow=1, title=f"k = {k}, t = {t}", ax=axes[i, j])
fig.tight_layout()
viz.save(fig, out, "sparse_explorer")
plt.show()

# %% [markdown]
# ## 10. Results beside the paper (Table 2)
#
# The paper: CelebAMask-HQ at 256 px (FFHQ 1024-px StyleGAN2, IR-SE-50 encoder, 100k steps), mIoU by
# a face parser. Ours: procedural scenes at 32 px, a small shipped StyleGAN2 and a small encoder,
# mIoU by our U-Net. **Compare orderings, not values.** Our "F" is the paper's pSp row with the
# method's latent loss instead of pSp's image loss (§10.3).

# %%
scale = (f"{cfg.preset}: {cfg.dataset} {cfg.image_size}px, prior {cfg.prior} ({prior.entry['steps']} steps), "
         f"{cfg.iterations} encoder steps, {cfg.n_draws} draws")
result_rows = []
for arm, n in rows_printed:
    (m, s), vals = summary(arm, n)
    if not vals:
        continue
    paper_key = {"P": ("Ours", n), "F": ("pSp", n), "S": ("SPADE", n)}.get(arm)
    paper = fs.PAPER_TABLE_2.get(paper_key, {}).get("miou", "-") if paper_key else "-"
    label = {"P": "Ours (P)", "F": "few pairs only (F, ~pSp)", "S": "SPADE-style (S)", "O": "oracle labels (O)"}[arm]
    result_rows.append({"experiment": f"{label}, N_l = {n}" if arm != "O" else label,
                        "metric": "mIoU % (segmenter on G(E(x)) vs input map)", "ours": round(100 * m, 2),
                        "paper": paper, "note": f"± {100 * s:.1f} over draws; {scale}"})
for n, e in effects.items():
    paper_gap = round(fs.PAPER_TABLE_2["Ours", n]["miou"] - fs.PAPER_TABLE_2["pSp", n]["miou"], 1)
    result_rows.append({"experiment": f"P - F, N_l = {n}", "metric": "mIoU gap (points)",
                        "ours": round(100 * e["mean"], 2), "paper": paper_gap,
                        "note": f"± {100 * e['std']:.1f} over draws; {'shown' if e['shown'] else 'not shown'}"
                        f" (2-sigma rule); paper: Ours - pSp"})
pl = mean_std(pl_exact[d, n5, r0]["miou"] for d in range(cfg.n_draws))
result_rows.append({"experiment": f"dense pseudo-labels, N_l = {n5}", "metric": "mIoU % vs exact truth",
                    "ours": round(100 * pl[0], 2), "paper": "-", "note": f"± {100 * pl[1]:.1f}; not measurable in the paper"})
paper_fid_row = {"P": ("Ours", n5), "F": ("pSp", n5), "S": ("SPADE", n5)}
for name, result in fid_scores.items():
    paper_fid = fs.PAPER_TABLE_2.get(paper_fid_row.get(name[0]), {}).get("fid", "-")
    result_rows.append({"experiment": name, "metric": "FID (test renders)",
                        "ours": result.value if result.available else None, "paper": paper_fid,
                        "note": "" if result.available else result.unavailable_reason})
path = reproduce.record_results(out, NOTEBOOK, cfg, result_rows)
print(f"{'experiment':>34} | {'metric':<44} | {'ours':>11} | paper")
for row in result_rows:
    ours = "unavailable" if row["ours"] is None else f"{row['ours']:.2f}"
    print(f"{row['experiment']:>34} | {row['metric']:<44} | {ours:>11} | {row['paper']}")
print(f"saved {path}; whole notebook {time.perf_counter() - notebook_start:.0f} s")

# %% [markdown]
# **Reading of this run** (printed from its numbers):

# %%
lines = []
if gate_passed:
    lines.append(f"- The prior's features carry layout: 5-shot pseudo-labels reach mIoU {pl[0]:.3f} against exact "
                 f"truth on inverted renders (fixed-map baseline on samples {fixed:.3f}).")
else:
    lines.append(f"- The pseudo-labels did not beat a fixed label map (mIoU {pl5:.3f} vs {fixed:.3f}): the prior's "
                 "features do not separate the classes at this scale, so arm P has little to learn from.")
for n, e in effects.items():
    (mp, _), _ = summary("P", n)
    (mf, _), _ = summary("F", n)
    lines.append(f"- {n}-shot: P {mp:.3f} vs F {mf:.3f} mIoU, gap {e['mean']:+.3f} ± {e['std']:.3f} over draws: "
                 + ("the paper's effect shows (gap > 2x the spread across draws)." if e["shown"] else
                    "the paper's effect does NOT show by the 2-sigma rule at this scale."))
if ("O", 0, 0) in scores and effects:
    (mo, _), _ = summary("O", 0)
    lines.append(f"- Oracle labels (O) reach {mo:.3f}: the gap to P ({summary('P', n5)[0][0]:.3f}, {n5}-shot) is "
                 "what pseudo-label noise costs.")
if s_runs:
    (ms, _), _ = summary("S", n5)
    lines.append(f"- The pixel-aligned baseline S ({n5} pairs, {cfg.baseline_iterations} steps) scores {ms:.3f}"
                 + (" — above P, as SPADE is above 'Ours' in Table 2." if ms > summary("P", n5)[0][0] else
                    " — below P, unlike Table 2 (SPADE 64.8 > Ours 41.5); it may be under-trained: its mIoU on its "
                    f"own training maps is {sum(s_shot_scores.values()) / len(s_shot_scores):.3f}."))
if all(not r.available for r in fid_scores.values()):
    lines.append("- FID is unavailable here (no Inception weights), so the paper's quality claim is not tested.")
print("\n".join(lines))

# %% [markdown]
# **Our reference `cpu` run** (2026-11-29, seed 0, one thread, on a shared 2-core machine at load
# ≈ 12: 53 min wall, 6 min of CPU time) is *not* this run's output, only a guide to what to expect:
# 5-shot P beat F on every draw (+5.2 ± 2.2 mIoU points; shown by the 2-sigma rule), 1-shot P beat
# F on two of three draws (+4.0 ± 5.6; not shown); the ordering S (40.7) > O (32.4) > P (29.4) >
# F (24.2) > floor (19.8) matches Table 2's SPADE > Ours > pSp; l-mixing at l = 5 left the mIoU
# unchanged. In the sample figure F ignores the map (nearly one image for every input, like pSp in
# Fig. 7), P keeps the prior's look and follows the large regions only loosely, S follows the layout
# but is blurry. FID was unavailable, so the quality half of the paper's claim is untested here.

# %% [markdown]
# ## 11. What we simplified
#
# * **Prior and scale.** A shipped 32-px StyleGAN2 (cpu config, ~197k parameters, trained on
#   procedural scenes) instead of FFHQ / LSUN config-f checkpoints; prototypes and pseudo-labels
#   from the 16×16 block at `cpu` (half the image size; the paper's 64×64 is a quarter of 256 px),
#   chosen by the sweep in §4, not by the paper's absolute "64×64".
# * **Encoder.** The pSp structure (IR-SE units, FPN, one head per w, output + $\bar w$) at three
#   narrow stages; the IR-SE-50 size is built at `paper` and its parameter counts are pinned in the
#   tests. Adam instead of Ranger; batch 8 and `iterations` steps instead of batch 2 and 100k.
# * **Inversion.** Adam on pixel L2 with constant noise, `invert_steps` steps; the code uses Ranger at
#   lr 1, L2 + 0.8 LPIPS and random noise for 2000 steps.
# * **Baselines.** pSp's own image-space objective is replaced by arm F (the same encoder and latent
#   loss on the real pairs' inverted latents), which isolates the pseudo-data; SPADE is the project's
#   OASIS generator with SPADE's two-scale PatchGAN + feature matching (no VGG loss), at a fixed,
#   short step count. pix2pixHD++, the "*" rows and full-shot pSp are not run.
# * **Evaluation.** Our U-Net segmenter plays the paper's external parsers; FID only with cached
#   Inception weights. Sparse pseudo-labels are shown and measured, but no sparse encoder is trained.
# * **Choices the text leaves open (§8):** shots drawn from procedural seeds, nested 1 ⊂ 5; W (one
#   $w$ repeated) as the target, as in the code; prototypes averaged over the shots that contain the
#   class, then normalised; constant noise for the shots' and test features, random noise while
#   training; mean-reduced MSE.
