"""CelebAMask-HQ (Lee et al. 2020): 30,000 CelebA-HQ faces with 19-class part masks (notebook 07's paper data).

Official on-disk layout (``switchablenorms/CelebAMask-HQ``, Google Drive / Baidu; no internet here)::

    CelebAMask-HQ/
      CelebA-HQ-img/0.jpg ... 29999.jpg                      1024 x 1024 RGB
      CelebAMask-HQ-mask-anno/0/00000_skin.png ...            512 x 512 binary part masks,
      CelebAMask-HQ-mask-anno/1/02000_hair.png ...            2,000 ids per folder (id // 2000)
      CelebAMask-HQ-attribute-anno.txt
      CelebA-HQ-to-CelebA-mapping.txt

Label ids (the repository's ``face_parsing/Data_preprocessing/g_mask.py``): 0 = background, then the
18 parts below in this order, **later parts painted over earlier ones**. A part file may be missing
(that part is absent). This module reads the release as it is: ``load`` composes the maps on the fly,
or reads ``CelebAMask-HQ-label/<id>.png`` (uint8 ids) when such a composed folder exists.
``data_scripts/prepare_celebamask_hq.py`` (shared with notebook 05, read by ``nbsyn.data.fewshot_smis``)
writes the same maps into a ``{train,test}/{images,labels}`` layout; a test checks that both agree. Split (SEAN / INADE, and the 28,000 images of the supplement [L54]): ids
0..27,999 train, 28,000..29,999 test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nbsyn.data.dataset import SemanticDataset
from nbsyn.data.semantic_pairs import as_hw, read_rgb, resize_pair

ROOT_NAME = "CelebAMask-HQ"
PARTS = ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip",
         "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")
CLASS_NAMES = ("background",) + PARTS
NUM_CLASSES = 19
N_IMAGES, N_TRAIN = 30_000, 28_000
SPLIT_SIZES = {"train": 28_000, "test": 2_000}
PALETTE = [(0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204), (0, 255, 255),
           (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0), (0, 0, 153), (0, 0, 204),
           (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51), (0, 204, 0)]


def find_root(root: str | Path) -> Path:
    """``root`` itself or ``root/CelebAMask-HQ``, whichever holds CelebA-HQ-img/ and the masks."""
    root = Path(root)
    for candidate in (root, root / ROOT_NAME):
        if (candidate / "CelebA-HQ-img").is_dir() and ((candidate / "CelebAMask-HQ-mask-anno").is_dir()
                                                       or (candidate / "CelebAMask-HQ-label").is_dir()):
            return candidate
    raise FileNotFoundError(f"{root} is not a CelebAMask-HQ root: expected {ROOT_NAME}/CelebA-HQ-img and "
                            f"{ROOT_NAME}/CelebAMask-HQ-mask-anno (see data_scripts/prepare_celebamask_hq.py)")


def split_of(idx: int) -> str:
    return "train" if idx < N_TRAIN else "test"


def list_ids(root: str | Path, split: str = "train") -> list[int]:
    """Sorted image ids of a split (the images present on disk)."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"unknown CelebAMask-HQ split {split!r}; choose one of {', '.join(SPLIT_SIZES)}")
    ids = sorted(int(p.stem) for p in (find_root(root) / "CelebA-HQ-img").glob("*.jpg") if p.stem.isdigit())
    return [i for i in ids if split_of(i) == split]


def part_path(root: Path, idx: int, part: str) -> Path:
    return root / "CelebAMask-HQ-mask-anno" / str(idx // 2000) / f"{idx:05d}_{part}.png"


def compose_label(root: str | Path, idx: int) -> np.ndarray:
    """(H, W) int64 ids 0..18 from the binary part masks, later parts over earlier ones (g_mask.py)."""
    from PIL import Image

    root = find_root(root)
    label = None
    for cls, part in enumerate(PARTS, start=1):
        path = part_path(root, idx, part)
        if not path.is_file():
            continue
        with Image.open(path) as im:
            mask = np.array(im.convert("L")) > 127
        if label is None:
            label = np.zeros(mask.shape, dtype=np.int64)
        if mask.shape != label.shape:
            raise ValueError(f"{path}: part mask {mask.shape} differs from the other parts' {label.shape}")
        label[mask] = cls
    if label is None:
        raise FileNotFoundError(f"image {idx} has no part mask under {root / 'CelebAMask-HQ-mask-anno'}")
    return label


def read_label(root: str | Path, idx: int) -> np.ndarray:
    """The composed map: ``CelebAMask-HQ-label/<id>.png`` when prepared, else composed from the parts."""
    from nbsyn.data.semantic_pairs import read_ids

    root = find_root(root)
    prepared = root / "CelebAMask-HQ-label" / f"{idx}.png"
    label = read_ids(prepared) if prepared.is_file() else compose_label(root, idx)
    if label.max() >= NUM_CLASSES:
        raise ValueError(f"label of image {idx} has ids up to {label.max()}; CelebAMask-HQ has {NUM_CLASSES} classes")
    return label


def load(root: str | Path, split: str = "train", size: int | None = 256, limit: int | None = None) -> SemanticDataset:
    """The split at ``size`` (image bicubic, label nearest; the 1024-px image and 512-px label are both
    brought to ``size``, or the image to the label's size when ``size`` is None)."""
    from PIL import Image

    root = find_root(root)
    ids = list_ids(root, split)[:limit] if limit else list_ids(root, split)
    if not ids:
        raise FileNotFoundError(f"CelebAMask-HQ {split}: no images in {root / 'CelebA-HQ-img'}")
    hw = as_hw(size)
    images, labels = [], []
    for idx in ids:
        label = read_label(root, idx)
        rgb = read_rgb(root / "CelebA-HQ-img" / f"{idx}.jpg")
        if rgb.shape[:2] != label.shape:  # 1024 image vs 512 masks: bring the image to the mask's size first
            rgb = np.array(Image.fromarray(rgb).resize(label.shape[::-1], Image.BICUBIC))
        rgb, label = resize_pair(rgb, label, hw)
        images.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1)
        labels.append(torch.from_numpy(label))
    return SemanticDataset(torch.stack(images), torch.stack(labels), list(CLASS_NAMES), PALETTE, "celebamask_hq")
