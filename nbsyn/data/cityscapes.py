"""Cityscapes (fine annotations), 256 x 512 in the thesis (L1112), 35 label channels (L1296).

Official on-disk layout of ``leftImg8bit_trainvaltest.zip`` + ``gtFine_trainvaltest.zip``::

    cityscapes/
      leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
      gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png     (uint8 label ids)
      gtFine/.../<city>_<seq>_<frame>_gtFine_color.png, _instanceIds.png, _polygons.json   (not used)

``labelIds`` 0..33 are kept as they are, with 0 "unlabeled" as the don't-care class, and N = 35
channels as in the thesis and the OASIS code (id 34 is never used). The licence plate's id -1
(written as 255 in 8-bit files) and anything else above 33 become 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nbsyn.data.dataset import SemanticDataset
from nbsyn.data.semantic_pairs import load_pairs

SPLITS = ("train", "val", "test")
NUM_CLASSES = 35
DONTCARE = 0
SPLIT_SIZES = {"train": 2_975, "val": 500}
URL = "https://www.cityscapes-dataset.com/downloads/ (leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip)"

CLASS_NAMES = (
    "unlabeled", "ego vehicle", "rectification border", "out of roi", "static", "dynamic", "ground", "road",
    "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail", "bridge", "tunnel", "pole",
    "polegroup", "traffic light", "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle", "(unused)",
)
# the official colours of cityscapesScripts' labels.py, by id
PALETTE = (
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0), (81, 0, 81), (128, 64, 128),
    (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (180, 165, 180), (150, 100, 100), (150, 120, 90), (153, 153, 153), (153, 153, 153), (250, 170, 30),
    (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142),
    (0, 0, 70), (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32), (0, 0, 0),
)


def find_root(root: str | Path) -> Path:
    root = Path(root)
    if not ((root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir()):
        raise FileNotFoundError(f"{root} is not a Cityscapes root: expected leftImg8bit/ and gtFine/ "
                                f"(from {URL}; see data_scripts/prepare_cityscapes.py)")
    return root


def list_pairs(root: str | Path, split: str = "train") -> list[tuple[Path, Path]]:
    """Sorted (leftImg8bit, gtFine_labelIds) paths of a split, over all cities."""
    if split not in SPLITS:
        raise ValueError(f"unknown Cityscapes split {split!r}; choose one of {', '.join(SPLITS)}")
    base = find_root(root)
    pairs = []
    for image in sorted((base / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")):
        stem = image.name[: -len("_leftImg8bit.png")]
        label = base / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"
        if not label.is_file():
            raise FileNotFoundError(f"{image.name} has no label map {label}")
        pairs.append((image, label))
    return pairs


def remap(ids: np.ndarray) -> np.ndarray:
    """labelIds 0..33 stay; -1/255 and other out-of-range ids become 0 (unlabeled)."""
    return np.where((ids >= 0) & (ids <= 33), ids, 0)


def load(root: str | Path, split: str = "train", size: int | tuple[int, int] | None = (256, 512),
         limit: int | None = None) -> SemanticDataset:
    """The split as a SemanticDataset, resized to ``size`` = (H, W) (256 x 512 in the thesis)."""
    return load_pairs(list_pairs(root, split), remap, CLASS_NAMES, PALETTE, "cityscapes", size, limit)
