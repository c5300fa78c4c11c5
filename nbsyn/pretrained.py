"""Reference models: small networks the project trains once, for long enough, and ships.

A few CPU-minutes cannot train a good GAN; an hour can. Every model here is trained by this
library's own code for a fixed number of steps (no wall-clock budget), evaluated, and shipped in
``pretrained/`` with a manifest (config, steps, wall time, device, torch version, commit, sha256 and
the metrics measured at the end of training). Notebooks load them to study a trained model, to drive
the widgets and as the priors that later notebooks build on.

    python -m nbsyn.pretrained list                      # what is shipped, with steps and metrics
    python -m nbsyn.pretrained train NAME [--device cuda] [--resume] [--steps N] [--dir DIR]
    python -m nbsyn.pretrained evaluate NAME             # re-measure a shipped model's metrics

    from nbsyn import pretrained
    ref = pretrained.load("stylegan2_faces32")            # ref.G (EMA generator), ref.D, ref.entry

``load`` reads with ``weights_only=True`` and checks the file's sha256 against the manifest.
``NBSYN_PRETRAINED_DIR`` points ``load``/``list`` at another folder (e.g. a short local training).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nbsyn.metrics.weights import sha256_of
from nbsyn.train import GeneratorState

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "MANIFEST.json"


class PretrainedError(RuntimeError):
    """A reference model is missing, corrupt or unknown; the message names the command that makes it."""


# ---------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One named reference model: what it is, its data and seed, and its exact step count."""

    name: str
    kind: str  # a key of RECIPES
    dataset: str
    image_size: int
    steps: int
    description: str
    used_by: tuple[str, ...]
    seed: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "dataset": self.dataset, "image_size": self.image_size, "seed": self.seed,
                "steps": self.steps, **self.settings}


# StyleGAN2 at the `cpu` config of nbsyn.models.stylegan2 with notebook 04's recipe (lr 0.004, R1
# gamma 0.0128 every 16 steps, style mixing 0.9, translation + flip DiffAugment on real and fake).
_SG2 = dict(config="cpu", batch_size=8, lr=0.004, r1_gamma=0.0128, r1_every=16, mixing_prob=0.9,
            diffaug_policy="translation,flip", diffaug_p=0.5, ema_decay=0.999, n_train=4000,
            feature_resolution=16, kmeans_k=16, n_eval=128)
# OASIS generator at the `cpu` widths of nbsyn.models.oasis, 64 px; both discriminators.
_SIS = dict(preset="cpu", batch_size=8, ema_decay=0.999, n_train=2000, n_test=128, bn_batches=20)
# the evaluation segmenters (a small U-Net on real renders); they score the generators above
_SEG = dict(batch_size=8, width=16, lr=2e-3, n_train=2000, n_test=200)

REGISTRY: dict[str, Entry] = {e.name: e for e in [
    Entry("segmenter_scenes32", "segmenter", "scenes", 32, 3000,
          "U-Net segmenter of real 32 px scenes; labels the samples of stylegan2_scenes32", ("pretrained",),
          settings=_SEG),
    Entry("segmenter_faces32", "segmenter", "faces", 32, 3000,
          "U-Net segmenter of real 32 px faces; labels the samples of stylegan2_faces32", ("pretrained",),
          settings=_SEG),
    Entry("segmenter_scenes64", "segmenter", "scenes", 64, 3000,
          "U-Net segmenter of real 64 px scenes; the mIoU protocol for oasis_scenes64 / spade_scenes64",
          ("01_oasis", "06_class_affinity_transfer"), settings=_SEG),
    Entry("stylegan2_faces32", "stylegan2", "faces", 32, 12000,
          "StyleGAN2 (cpu config) on procedural faces: source G_s of 04, prior of 07",
          ("04_stylegan2_ssr", "07_sis_unconditional_generator"), settings=_SG2),
    Entry("stylegan2_scenes32", "stylegan2", "scenes", 32, 12000,
          "StyleGAN2 (cpu config) on procedural scenes: the prior of 05",
          ("05_fewshot_sis_stylegan_prior", "07_sis_unconditional_generator"), settings=_SG2),
    Entry("oasis_scenes64", "oasis", "scenes", 64, 3000,
          "OASIS (N+1 segmentation D + LabelMix) on 64 px scenes: 01's showcase, 06's source model",
          ("01_oasis", "06_class_affinity_transfer"), settings=dict(_SIS, variant="OASIS")),
    Entry("spade_scenes64", "oasis", "scenes", 64, 3000,
          "the same generator with the SPADE+ PatchGAN D (hinge, no VGG), same steps and data as oasis_scenes64",
          ("01_oasis",), settings=dict(_SIS, variant="SPADE+ D")),
    # issue 17: the same two set-ups on `streets` (23 classes, long tail, shared colours), same steps
    Entry("segmenter_streets64", "segmenter", "streets", 64, 3000,
          "U-Net segmenter of real 64 px streets; the mIoU protocol for oasis_streets64 / spade_streets64",
          ("pretrained",), settings=_SEG),
    Entry("oasis_streets64", "oasis", "streets", 64, 3000,
          "OASIS on 64 px streets (23 classes, long-tailed, classes sharing colours): 01's harder setting",
          ("01_oasis",), settings=dict(_SIS, variant="OASIS", rare_classes=True)),
    Entry("spade_streets64", "oasis", "streets", 64, 3000,
          "SPADE+ D on 64 px streets, same generator, steps and data as oasis_streets64",
          ("01_oasis",), settings=dict(_SIS, variant="SPADE+ D", rare_classes=True)),
    Entry("sivgan_balloons", "sivgan", "scene", 32, 4000,
          "SIV-GAN on notebook 02's single procedural scene (balloons and a house), cpu sizes",
          ("02_sivgan",), settings=dict(preset="cpu", ema_decay=0.999)),
    Entry("osmis_scenes", "osmis", "scenes", 32, 4000,
          "OSMIS (masked content attention) on notebook 03's single image + mask, cpu sizes",
          ("03_osmis",), settings=dict(preset="cpu", ema_decay=0.999)),
]}


def entry(name: str) -> Entry:
    if name not in REGISTRY:
        raise PretrainedError(f"unknown reference model {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def shipped_dir() -> Path:
    return Path(os.environ.get("NBSYN_PRETRAINED_DIR") or ROOT / "pretrained")


def read_manifest(folder: Path | None = None) -> dict[str, dict]:
    path = (folder or shipped_dir()) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest(manifest: Mapping[str, dict], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    os.replace(tmp, folder / MANIFEST)


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
@dataclass
class Reference:
    """A loaded reference model: its modules (eval mode, frozen) and its manifest entry."""

    name: str
    modules: dict[str, nn.Module]
    entry: dict[str, Any]
    folder: Path | None = None

    def companion(self, name: str) -> Reference:
        """Another reference model from the same folder (e.g. the segmenter that scores this one)."""
        return load(name, next(self.G.parameters()).device, self.folder)

    @property
    def G(self) -> nn.Module:
        return self.modules["G"]

    @property
    def D(self) -> nn.Module | None:
        return self.modules.get("D")

    @property
    def config(self) -> dict[str, Any]:
        return self.entry["config"]

    @property
    def metrics(self) -> dict[str, float]:
        return self.entry.get("metrics", {})


def _train_hint(name: str) -> str:
    return f"make it with: python -m nbsyn.pretrained train {name}"


def load(name: str, device: str | torch.device = "cpu", folder: Path | None = None) -> Reference:
    """Load a shipped reference model (fp32, eval mode, no gradients), checking its sha256."""
    spec = entry(name)
    folder = Path(folder) if folder is not None else shipped_dir()
    record = read_manifest(folder).get(name)
    path = folder / f"{name}.pt"
    if record is None or not path.exists():
        raise PretrainedError(f"reference model {name!r} is not in {folder} ({'no manifest entry' if record is None else 'file missing'}); "
                              + _train_hint(name))
    digest = sha256_of(path)
    if digest != record["sha256"]:
        raise PretrainedError(f"{path} is corrupt: sha256 {digest[:12]}... does not match the manifest's "
                              f"{record['sha256'][:12]}...; re-checkout the file or " + _train_hint(name))
    try:
        states = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling error means the same thing to the user
        raise PretrainedError(f"{path} cannot be read ({type(exc).__name__}: {exc}); " + _train_hint(name)) from exc
    modules = RECIPES[spec.kind].build(spec)
    for key, module in modules.items():
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in states[key].items()})
        module.to(device).eval().requires_grad_(False)
    return Reference(name, modules, record, folder)


def available(folder: Path | None = None) -> list[str]:
    """Names whose file and manifest entry exist (no hash check)."""
    folder = folder or shipped_dir()
    manifest = read_manifest(folder)
    return [n for n in REGISTRY if n in manifest and (folder / f"{n}.pt").exists()]


# ---------------------------------------------------------------------------------------------
# recipes: how each kind is built, trained, shipped and evaluated
# ---------------------------------------------------------------------------------------------
def _data(spec: Entry, n: int, seed: int):
    from nbsyn.data import make_dataset

    return make_dataset(spec.dataset, n, spec.image_size, seed=seed)


def _eval_data(spec: Entry):
    """A held-out set of real renders (seed 10_000 + the model's seed: never trained on)."""
    return _data(spec, spec.settings.get("n_test", 200), 10_000 + spec.seed)


class SegmenterRecipe:
    @staticmethod
    def build(spec: Entry) -> dict[str, nn.Module]:
        from nbsyn.nn.unet import UNet

        from nbsyn.data import make_dataset

        classes = make_dataset(spec.dataset, 1, spec.image_size, seed=0).num_classes
        return {"G": UNet(3, classes, width=spec.settings["width"], depth=3)}

    @staticmethod
    def trainer(spec: Entry, modules, device):
        from nbsyn.metrics.segmenter import make_segmenter_step

        data = _data(spec, spec.settings["n_train"], spec.seed)
        net = modules["G"].to(device)
        opt = torch.optim.Adam(net.parameters(), lr=spec.settings["lr"])
        gen = torch.Generator().manual_seed(spec.seed)
        step = make_segmenter_step(net, opt, data.images, data.labels, gen, spec.settings["batch_size"], device=device)
        return step, {"G": net, "opt": opt, "sampler": GeneratorState(gen)}

    @staticmethod
    def shipped(objects) -> dict[str, nn.Module]:
        return {"G": objects["G"].eval()}

    @staticmethod
    def evaluate(spec: Entry, ref: Reference, device) -> dict[str, float]:
        from nbsyn.metrics import segmentation_scores

        data = _eval_data(spec)
        scores = segmentation_scores(ref.G.to(device), data.images, data.labels, data.num_classes)
        return {"miou_real": scores["miou"], "accuracy_real": scores["accuracy"]}

    @staticmethod
    def figures(spec: Entry, ref: Reference, out: Path) -> None:
        from nbsyn import viz
        from nbsyn.metrics import segment

        data = _eval_data(spec)
        pred = segment(ref.G, data.images[:8])
        fig = viz.show_pairs(torch.cat([data.images[:8], data.images[:8]]), torch.cat([data.labels[:8], pred]),
                             data.class_names, data.palette, n=16, title=f"{spec.name}: truth (left 8) and prediction")
        viz.save(fig, out, "samples")


class StyleGAN2Recipe:
    @staticmethod
    def build(spec: Entry) -> dict[str, nn.Module]:
        from nbsyn.models import stylegan2 as sg

        G, D = sg.build(spec.settings["config"], image_size=spec.image_size)
        return {"G": G, "D": D}

    @staticmethod
    def trainer(spec: Entry, modules, device):
        from nbsyn.models import stylegan2 as sg
        from nbsyn.nn.diffaug import diff_augment
        from nbsyn.train import EMA

        s = spec.settings
        G, D = modules["G"].to(device), modules["D"].to(device)
        images = _data(spec, s["n_train"], spec.seed).images
        opt_g, opt_d = sg.make_optimizers(G, D, lr=s["lr"], r1_every=s["r1_every"])
        ema = EMA(G, s["ema_decay"])
        gen = torch.Generator().manual_seed(spec.seed)
        step = sg.make_train_step(G, D, opt_g, opt_d, images, batch_size=s["batch_size"], r1_gamma=s["r1_gamma"],
                                  r1_every=s["r1_every"], mixing_prob=s["mixing_prob"], ema=ema, generator=gen,
                                  augment=lambda x: diff_augment(x, policy=s["diffaug_policy"], p=s["diffaug_p"]))
        return step, {"G": G, "D": D, "opt_g": opt_g, "opt_d": opt_d, "ema": ema, "sampler": GeneratorState(gen)}

    @staticmethod
    def shipped(objects) -> dict[str, nn.Module]:
        return {"G": objects["ema"].module, "D": objects["D"]}  # EMA copies buffers (w_avg) each step

    @staticmethod
    def samples(ref: Reference, n: int, seed: int = 0) -> torch.Tensor:
        from nbsyn.models import stylegan2 as sg

        return sg.sample(ref.G, n, seed=seed)

    @staticmethod
    def evaluate(spec: Entry, ref: Reference, device) -> dict[str, float]:
        """K-means purity of G's features against a segmenter's labels of the samples, diversity, copying."""
        from nbsyn.metrics import msssim_diversity, nn_distance, segment
        from nbsyn.metrics.clusters import assign_clusters, cluster_purity, majority_share, spherical_kmeans

        s = spec.settings
        n, res = s["n_eval"], s["feature_resolution"]
        z = torch.randn(n, ref.G.cfg.z_dim, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            images, feats = ref.G(z.to(device), noise_mode="const", return_features=True)
        images, feats = images.clamp(-1, 1).cpu(), feats[res].cpu()
        segmenter = ref.companion(f"segmenter_{spec.dataset}{spec.image_size}").G
        labels = segment(segmenter, images)
        step = spec.image_size // res
        labels = labels[:, step // 2::step, step // 2::step]  # the label at each feature cell's centre
        vectors = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
        assign = assign_clusters(vectors, spherical_kmeans(vectors, s["kmeans_k"], seed=0))
        classes = int(segmenter.head.out_channels)
        train = _data(spec, 512, spec.seed).images
        return {
            "kmeans_purity": cluster_purity(assign, labels.flatten(), s["kmeans_k"], classes)[0],
            "majority_baseline": majority_share(labels, classes),
            "msssim_diversity": msssim_diversity(images[:32]).value,
            "nn_rmse_train": nn_distance(images[:64], train).value,
        }

    @staticmethod
    def figures(spec: Entry, ref: Reference, out: Path) -> None:
        from nbsyn import viz

        fig = viz.show_images(StyleGAN2Recipe.samples(ref, 64), nrow=8, title=f"{spec.name}: 64 samples (EMA G)")
        viz.save(fig, out, "samples")


class OASISRecipe:
    """OASIS or SPADE+ D (``settings['variant']``), trained by ``nbsyn.models.oasis.train_variant``."""

    @staticmethod
    def cfg(spec: Entry) -> dict:
        from nbsyn.models import oasis

        s = spec.settings
        return {**oasis.PRESETS[s["preset"]], "image_size": spec.image_size, "iterations": spec.steps,
                "batch_size": s["batch_size"], "ema_decay": s["ema_decay"], "time_budget_s": None,
                "bn_batches": s["bn_batches"], "checkpoint_every": 0}

    @staticmethod
    def build(spec: Entry) -> dict[str, nn.Module]:
        from nbsyn.data import make_dataset
        from nbsyn.models import oasis

        from nbsyn.models.spade_baseline import build_baseline_discriminator

        classes = make_dataset(spec.dataset, 1, spec.image_size, seed=0).num_classes
        cfg = OASISRecipe.cfg(spec)
        patch = oasis.VARIANTS[spec.settings["variant"]]["discriminator"] == "patch"
        D = build_baseline_discriminator(cfg, classes) if patch else oasis.build_discriminator(cfg, classes)
        return {"G": oasis.build_generator(cfg, classes), "D": D}  # D: the source D that notebook 06 fine-tunes

    @staticmethod
    def trainer(spec: Entry, modules, device):
        from nbsyn.models import oasis

        # train_variant owns its loop; expose it as a resumable step function through fit's objects
        return oasis.variant_trainer(OASISRecipe.cfg(spec), spec.settings["variant"],
                                     _data(spec, spec.settings["n_train"], spec.seed), spec.seed, device=device)

    @staticmethod
    def shipped(objects) -> dict[str, nn.Module]:
        return {"G": objects["ema"].module, "D": objects["D"]}

    @staticmethod
    def finish(spec: Entry, objects) -> None:
        """[CODE] re-estimate the EMA generator's batch-norm statistics before shipping it."""
        from nbsyn.data import one_hot

        data = _data(spec, spec.settings["n_train"], spec.seed)
        batches = data.batches(spec.settings["batch_size"], torch.Generator().manual_seed(spec.seed))
        device = next(objects["G"].parameters()).device
        objects["ema"].recalibrate_bn(lambda m: m(one_hot(next(batches)[1], data.num_classes).to(device)),
                                      spec.settings["bn_batches"])

    @staticmethod
    def samples(ref: Reference, labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
        from nbsyn.models import oasis

        noise = oasis.sample_noise(labels.shape[0], ref.G.z_dim, labels.shape[-2:],
                                   torch.Generator().manual_seed(seed))
        return oasis.generate(ref.G, labels, ref.G.num_classes, noise.to(next(ref.G.parameters()).device)).clamp(-1, 1).cpu()

    @staticmethod
    def evaluate(spec: Entry, ref: Reference, device) -> dict[str, float]:
        """mIoU of the shipped segmenter on images generated from held-out label maps; diversity."""
        from nbsyn.metrics import mean_iou_over, msssim_diversity, nn_distance, rare_classes, segmentation_scores

        data = _eval_data(spec)
        fake = OASISRecipe.samples(ref, data.labels)
        segmenter = ref.companion(f"segmenter_{spec.dataset}{spec.image_size}").G
        scores = segmentation_scores(segmenter, fake, data.labels, data.num_classes)
        one_map = data.labels[:1].expand(16, -1, -1)
        train = _data(spec, 512, spec.seed)
        result = {"miou": scores["miou"], "accuracy": scores["accuracy"],
                  "msssim_diversity_one_map": msssim_diversity(OASISRecipe.samples(ref, one_map, seed=1)).value,
                  "nn_rmse_train": nn_distance(fake[:64], train.images).value}
        if spec.settings.get("rare_classes"):  # mIoU over the rarest third of the classes (by training pixels)
            rare = rare_classes(train.labels, data.num_classes)
            result["miou_rare"] = mean_iou_over(scores["per_class_iou"], rare)
        return result

    @staticmethod
    def figures(spec: Entry, ref: Reference, out: Path) -> None:
        from nbsyn import viz

        data = _eval_data(spec)
        fake = OASISRecipe.samples(ref, data.labels[:8])
        images = torch.cat([viz.colorize(data.labels[:8], data.palette), fake, data.images[:8]])
        fig = viz.show_images(images, nrow=8, title=f"{spec.name}: label map / generated / real render")
        viz.save(fig, out, "samples")


class OneShotRecipe:
    """SIV-GAN on one image (``kind="sivgan"``) or OSMIS on one image + mask (``kind="osmis"``), at the
    `cpu` preset of their notebook (02 / 03) with a longer, fixed step count."""

    @staticmethod
    def cfg(spec: Entry) -> dict:
        from nbsyn.models import osmis, sivgan

        module = sivgan if spec.kind == "sivgan" else osmis
        return {**module.PRESETS[spec.settings["preset"]], "iterations": spec.steps, "time_budget_s": None,
                "seed": spec.seed, "dataset": spec.dataset, "ema_decay": spec.settings["ema_decay"]}

    @staticmethod
    def data(spec: Entry):
        """(frames (N,3,H,W), labels (N,H,W) or None, num_classes or None) of the training pair."""
        from nbsyn.models import osmis, sivgan

        cfg = OneShotRecipe.cfg(spec)
        h, w = sivgan.image_shape(cfg)
        if spec.kind == "sivgan":
            from nbsyn.data.single import load_training_frames

            frames, labels, _ = load_training_frames(spec.dataset, h, w, seed=spec.seed)
            return frames, labels, None
        data = osmis.load_oneshot(spec.dataset, (h, w), cfg["heldout"], spec.seed)
        if data.image.dim() == 3:
            return data.image[None], data.labels[None], data.num_classes
        return data.image, data.labels, data.num_classes

    @staticmethod
    def model(spec: Entry, device="cpu"):
        from nbsyn.models import osmis, sivgan

        frames, labels, classes = OneShotRecipe.data(spec)
        if spec.kind == "sivgan":
            return sivgan.SIVGAN(OneShotRecipe.cfg(spec), frames, device=device)
        return osmis.OSMIS(OneShotRecipe.cfg(spec), frames, labels, classes, device=device)

    @staticmethod
    def build(spec: Entry) -> dict[str, nn.Module]:
        model = OneShotRecipe.model(spec)
        return {"G": model.G, "D": model.D}

    @staticmethod
    def trainer(spec: Entry, modules, device):
        model = OneShotRecipe.model(spec, device)
        return model.step, model.objects()

    @staticmethod
    def shipped(objects) -> dict[str, nn.Module]:
        return {"G": objects["ema"].module, "D": objects["D"]}

    @staticmethod
    def samples(spec: Entry, ref: Reference, n: int, seed: int = 0):
        """``n`` samples (images, or (images, masks) for OSMIS) from the shipped EMA generator."""
        model = OneShotRecipe.model(spec, next(ref.G.parameters()).device)
        model.ema.module = ref.G
        return model.sample(n, seed=seed)

    @staticmethod
    def evaluate(spec: Entry, ref: Reference, device) -> dict[str, float]:
        """Diversity, distance to the training image (and its flip), patch realism (weight-free)."""
        from nbsyn.models import sivgan

        frames = OneShotRecipe.data(spec)[0]
        out = OneShotRecipe.samples(spec, ref, 50, seed=1)
        images = out if torch.is_tensor(out) else out[0]
        scores = sivgan.evaluate_samples(images.clamp(-1, 1), frames)
        return {k: v for k, v in scores.items() if k in ("ms_ssim", "pixel_div", "dist_rmse", "patch_nn")}

    @staticmethod
    def figures(spec: Entry, ref: Reference, out: Path) -> None:
        from nbsyn import viz

        samples = OneShotRecipe.samples(spec, ref, 15)
        if torch.is_tensor(samples):
            images = torch.cat([OneShotRecipe.data(spec)[0][:1], samples.clamp(-1, 1)])
        else:
            from nbsyn.models import osmis

            frames, labels, classes = OneShotRecipe.data(spec)
            masks = samples[1].argmax(1) if samples[1].dim() == 4 else samples[1]
            images = osmis.pair_rows(torch.cat([frames[:1], samples[0][:7].clamp(-1, 1)]),
                                     torch.cat([labels[:1], masks[:7]]), osmis.object_palette(classes))
        fig = viz.show_images(images, nrow=8, title=f"{spec.name}: the training image, then samples")
        viz.save(fig, out, "samples")


RECIPES: dict[str, Any] = {"segmenter": SegmenterRecipe, "stylegan2": StyleGAN2Recipe, "oasis": OASISRecipe,
                           "sivgan": OneShotRecipe, "osmis": OneShotRecipe}


# ---------------------------------------------------------------------------------------------
# training, shipping, listing
# ---------------------------------------------------------------------------------------------
def state_hash(objects: Mapping[str, Any]) -> str:
    """sha256 over every tensor of every object's state (for determinism checks)."""
    h = hashlib.sha256()

    def visit(value):
        if torch.is_tensor(value):
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(value, Mapping):
            for k in sorted(value, key=str):
                h.update(str(k).encode())
                visit(value[k])
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)
        else:
            h.update(repr(value).encode())

    for name in sorted(objects):
        h.update(name.encode())
        visit(objects[name].state_dict())
    return h.hexdigest()


def _commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# fp16 storage is used when it changes the generator's output (in [-1, 1]) by at most this much on a
# fixed probe input, i.e. about 6 grey levels of 255 at the worst pixel; otherwise fp32 is stored.
FP16_TOLERANCE = 0.05


def half_state(module: nn.Module, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """The module's state with floating-point tensors stored as ``dtype`` (fp16: half the bytes)."""
    return {k: v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu()
            for k, v in module.state_dict().items()}


def train(name: str, *, device: str = "cpu", resume: bool = True, steps: int | None = None,
          folder: Path | None = None, work: Path | None = None, progress: bool = True,
          ckpt_every: int = 250, evaluate_after: bool = True, overrides: Mapping[str, Any] | None = None
          ) -> dict[str, Any]:
    """Train ``name`` for its fixed step count (or ``steps``), ship it into ``folder`` and evaluate it.

    Checkpoints go to ``work`` (default ``runs/pretrained/<name>``) every ``ckpt_every`` steps, so
    an interrupted run continues bit-identically with ``resume``. ``overrides`` change settings
    (e.g. a tiny ``n_train`` in tests). Returns the manifest entry, including ``state_sha256``, a hash
    of the whole final training state (weights, optimisers, RNGs) that a remake can be compared with.
    """
    from nbsyn.runtime import seed_everything
    from nbsyn.train import fit

    spec = entry(name)
    if overrides:
        spec = replace(spec, settings={**spec.settings, **overrides})
    recipe = RECIPES[spec.kind]
    total = spec.steps if steps is None else steps
    folder = Path(folder) if folder is not None else shipped_dir()
    if work is None:  # checkpoints and figures: runs/pretrained/<name>, or beside a non-default folder
        work = ROOT / "runs" / "pretrained" / name if folder == ROOT / "pretrained" else folder / "work" / name
    work = Path(work)
    commit = _commit()  # the code this run starts (or resumes) with
    seed_everything(spec.seed)
    modules = recipe.build(spec)
    step_fn, objects = recipe.trainer(spec, modules, torch.device(device))
    ckpt = work / "checkpoint.pt"
    if not resume and ckpt.exists():
        ckpt.unlink()
    history = fit(step_fn, total, objects, ckpt_path=ckpt, ckpt_every=ckpt_every, resume=resume,
                  desc=name, progress=progress)
    if hasattr(recipe, "finish"):
        recipe.finish(spec, objects)
    shipped = recipe.shipped(objects)
    fp16_error = _fp16_error(spec, shipped, device)
    dtype = torch.float16 if fp16_error <= FP16_TOLERANCE else torch.float32
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pt"
    torch.save({key: half_state(m, dtype) for key, m in shipped.items()}, path)
    record = {
        "name": name, "kind": spec.kind, "description": spec.description, "used_by": list(spec.used_by),
        "config": spec.config() | {"steps": total}, "steps": history.steps, "wall_seconds": round(history.seconds, 1),
        "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.machine(), "commit": commit, "sha256": sha256_of(path),
        "size_bytes": path.stat().st_size, "dtype": str(dtype).removeprefix("torch."), "fp16_max_abs_diff": fp16_error,
        "final_losses": {k: round(v, 4) for k, v in history.last(100).items()},
        "state_sha256": state_hash(objects),
    }
    manifest = read_manifest(folder)
    manifest[name] = record
    write_manifest(manifest, folder)
    if evaluate_after:
        ref = load(name, device, folder)
        record["metrics"] = {k: round(float(v), 4) for k, v in recipe.evaluate(spec, ref, device).items()}
        recipe.figures(spec, ref, work)
        manifest = read_manifest(folder)
        manifest[name] = record
        write_manifest(manifest, folder)
    return record


@torch.no_grad()
def _fp16_error(spec: Entry, shipped: Mapping[str, nn.Module], device, dtype: torch.dtype = torch.float16) -> float:
    """Largest |output(fp32 weights) - output(weights stored as ``dtype``)| of the shipped G on a fixed input."""
    G = shipped["G"].eval()
    copy = RECIPES[spec.kind].build(spec)["G"].to(device).eval()
    copy.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half_state(G, dtype).items()})
    x = probe_input(spec, G)
    def image(net):
        torch.manual_seed(0)  # the same draws of any noise the generator samples itself
        out = net(x.to(device))
        return getattr(out, "image", out)  # the one-shot generators return a GeneratorOutput

    return float((image(G) - image(copy)).abs().max())


def probe_input(spec: Entry, G: nn.Module) -> torch.Tensor:
    """A fixed input for G of this kind (latents, or one-hot label maps, or images)."""
    gen = torch.Generator().manual_seed(0)
    if spec.kind == "stylegan2":
        return torch.randn(4, G.cfg.z_dim, generator=gen)
    if spec.kind in ("sivgan", "osmis"):
        return G.sample_z(4, gen, "cpu")
    data = _eval_data(spec)
    if spec.kind == "segmenter":
        return data.images[:4]
    from nbsyn.data import one_hot

    return one_hot(data.labels[:4], data.num_classes)


def _format_list(folder: Path) -> str:
    manifest = read_manifest(folder)
    lines = [f"reference models in {folder}:", ""]
    for name, spec in REGISTRY.items():
        rec = manifest.get(name)
        if rec is None:
            lines.append(f"{name:22s} not trained yet ({spec.steps} steps): {_train_hint(name)}")
            continue
        metrics = ", ".join(f"{k} {v}" for k, v in rec.get("metrics", {}).items())
        lines.append(f"{name:22s} {spec.kind:9s} {spec.dataset} {spec.image_size}px  {rec['steps']} steps  "
                     f"{rec['wall_seconds'] / 60:.0f} min on {rec['device']} x{rec['threads']}  "
                     f"{rec['size_bytes'] / 1e6:.2f} MB  | {metrics}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbsyn.pretrained", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, help="the folder of shipped models (default: pretrained/)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", parents=[common], help="the reference models, their steps and metrics")
    t = sub.add_parser("train", parents=[common], help="train one model for its fixed steps, ship and evaluate it")
    t.add_argument("name", choices=list(REGISTRY))
    t.add_argument("--device", default="cpu")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint (default: start over)")
    t.add_argument("--steps", type=int, help="train this many steps instead of the registry's (for trying things)")
    t.add_argument("--threads", type=int, default=1)
    e = sub.add_parser("evaluate", parents=[common], help="re-measure a shipped model's metrics")
    e.add_argument("name", choices=list(REGISTRY))
    args = parser.parse_args(argv)
    folder = args.dir or shipped_dir()
    if args.command == "list":
        print(_format_list(folder))
        return 0
    if args.command == "evaluate":
        ref = load(args.name, folder=folder)
        print(json.dumps(RECIPES[entry(args.name).kind].evaluate(entry(args.name), ref, "cpu"), indent=2))
        return 0
    torch.set_num_threads(args.threads)
    start = time.time()
    record = train(args.name, device=args.device, resume=args.resume, steps=args.steps, folder=folder)
    print(json.dumps(record, indent=2))
    print(f"done in {(time.time() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
