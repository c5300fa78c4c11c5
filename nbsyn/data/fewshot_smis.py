"""The real datasets of Endo & Kanamori 2021 (notebook 05's ``paper`` preset), as the paper uses them.

Layout of the official code (``configs/paths_config.py``, ``datasets/images_dataset.py``; spec §3.2)::

    <root>/CelebAMask-HQ/{train,test}/{images,labels}/...   19 classes, 28,000 / 2,000 (SEAN's split, L174)
    <root>/LSUNchurch/{train,test}/{images,labels}/...      151 channels (0 = unknown + 150 ADE20K), 1,000 / 300
    <root>/LSUNcar/{train,test}/{images,labels}/...         5 classes

Images and label maps are paired by the **sorted order** of the two folders (not by name), as in
the code; labels are single-channel index PNGs. ADE20K (supplement F, L401) uses the project's
reader ``nbsyn.data.ade20k`` (20,210 / 2,000, 151 channels).

``data_scripts/prepare_celebamask_hq.py`` builds the CelebAMask-HQ folders from the original release;
``data_scripts/prepare_lsun_masks.py`` arranges LSUN images with masks from a scene parser.
"""

from __future__ import annotations

import os
from pathlib import Path

from nbsyn.data.dataset import SemanticDataset
from nbsyn.data.semantic_pairs import distinct_palette, load_pairs

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

# CelebAMask-HQ's 19 classes in the order pSp and SEAN use (a different order breaks a trained encoder)
CELEBAMASK_CLASSES = ("background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
                      "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")
LSUN_CAR_CLASSES = ("background", "car", "wheel", "window", "light")  # label_nc 5 [CODE]; names are ours


def _ade_names() -> tuple[str, ...]:
    from nbsyn.data import ade20k

    return ("unknown",) + ade20k.CLASS_NAMES[1:]


DATASETS = {
    "celebamask_hq": dict(folder="CelebAMask-HQ", num_classes=19, split_sizes={"train": 28_000, "test": 2_000},
                          generator="stylegan2-ffhq-config-f", image_size=256),
    "lsun_church": dict(folder="LSUNchurch", num_classes=151, split_sizes={"train": 1_000, "test": 300},
                        generator="stylegan2-church-config-f", image_size=256),
    "lsun_car": dict(folder="LSUNcar", num_classes=5, split_sizes={"train": None, "test": None},
                     generator="stylegan2-car-config-f", image_size=256),
}
SPLITS = ("train", "test")


def class_names(name: str) -> tuple[str, ...]:
    if name == "celebamask_hq":
        return CELEBAMASK_CLASSES
    if name == "lsun_church":
        return _ade_names()
    if name == "lsun_car":
        return LSUN_CAR_CLASSES
    raise ValueError(f"unknown dataset {name!r}; the paper's datasets: {', '.join(DATASETS)}, ade20k")


def data_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.environ.get("NBSYN_DATA", "data"))


def split_dir(name: str, split: str, root: str | os.PathLike | None = None) -> Path:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; the paper's datasets: {', '.join(DATASETS)}, ade20k")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return data_root(root) / DATASETS[name]["folder"] / split


def list_pairs(name: str, split: str = "train", root: str | os.PathLike | None = None) -> list[tuple[Path, Path]]:
    """(image, label) paths paired by sorted order, as the official ``ImagesDataset`` does."""
    base = split_dir(name, split, root)
    img_dir, lab_dir = base / "images", base / "labels"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise FileNotFoundError(f"{base} needs images/ and labels/ (the official code's layout); "
                                f"prepare it with data_scripts/prepare_{'celebamask_hq' if name == 'celebamask_hq' else 'lsun_masks'}.py")
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    labels = sorted(p for p in lab_dir.iterdir() if p.suffix.lower() == ".png")
    if len(images) != len(labels):
        raise ValueError(f"{base}: {len(images)} images but {len(labels)} label maps; they are paired by sorted "
                         "order, so the counts must match")
    return list(zip(images, labels))


def load(name: str, split: str = "train", size: int | None = 256, root: str | os.PathLike | None = None,
         limit: int | None = None) -> SemanticDataset:
    """A split as a SemanticDataset at ``size`` (256 in the code: bilinear images, nearest labels)."""
    names = class_names(name)
    return load_pairs(list_pairs(name, split, root), lambda ids: ids, names, distinct_palette(len(names)), name,
                      size, limit)


def check_paper_inputs(name: str, prior: str, root: str | os.PathLike | None = None,
                       checkpoints: str | os.PathLike | None = None) -> None:
    """Everything the ``paper`` preset needs, checked before any work; one error naming what is missing."""
    from nbsyn.models.fewshot_sis import OFFICIAL_CHECKPOINTS

    if name not in DATASETS and name != "ade20k":
        from nbsyn.data import DATASETS as PROCEDURAL

        raise ValueError(f"unknown dataset {name!r}; procedural: {', '.join(PROCEDURAL)}; the paper's: "
                         f"{', '.join(DATASETS)}, ade20k")
    missing = []
    if name == "ade20k":
        from nbsyn.data import ade20k

        try:
            ade20k.find_root(data_root(root))
        except FileNotFoundError as exc:
            missing.append(str(exc))
    else:
        for split in SPLITS:
            try:
                list_pairs(name, split, root)
            except (FileNotFoundError, ValueError) as exc:
                missing.append(str(exc))
    ckpt_name = prior.split(":", 1)[-1]
    if ckpt_name not in OFFICIAL_CHECKPOINTS:
        missing.append(f"the prior {prior!r} is not an official checkpoint ({', '.join(OFFICIAL_CHECKPOINTS)})")
    else:
        path = Path(checkpoints or os.environ.get("NBSYN_CHECKPOINTS", "checkpoints")) / OFFICIAL_CHECKPOINTS[ckpt_name]["file"]
        if not path.is_file():
            missing.append(f"the official StyleGAN2 checkpoint {path} (rosinality format, linked from the README of "
                           "github.com/endo-yuki-t/Fewshot-SMIS; set NBSYN_CHECKPOINTS)")
    missing.append("the evaluation parser: the paper does not name its face parser, and the church / ADE20K "
                   "UPerNet101 weights (CSAIL semantic-segmentation-pytorch) are not shipped; this notebook runs the "
                   "paper preset's pipeline only up to this check")
    raise FileNotFoundError(f"dataset {name!r} at the paper preset needs:\n- " + "\n- ".join(missing))
