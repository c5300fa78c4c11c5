"""ADE20K (SceneParsing / ADEChallengeData2016), the thesis's main benchmark (L1112, L1119).

Official on-disk layout of ``ADEChallengeData2016.zip``::

    ADEChallengeData2016/
      objectInfo150.txt                      Idx, Ratio, Train, Val, Name (tab separated; names "a;b;c")
      sceneCategories.txt
      images/training/ADE_train_00000001.jpg ...       (20,210 images)
      images/validation/ADE_val_00000001.jpg ...       (2,000 images)
      annotations/training/ADE_train_00000001.png ...  (uint8 ids: 0 = other, 1..150 = classes)
      annotations/validation/ADE_val_00000001.png ...

The ids are kept as they are (as in the OASIS code): class 0 "other" is the don't-care class, so
there are N = 151 label channels and D predicts 152 classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nbsyn.data.dataset import SemanticDataset
from nbsyn.data.semantic_pairs import distinct_palette, images_with_annotations, load_pairs

ROOT_NAME = "ADEChallengeData2016"
SPLITS = {"train": "training", "val": "validation"}
NUM_CLASSES = 151
DONTCARE = 0
SPLIT_SIZES = {"train": 20_210, "val": 2_000}
URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"

CLASS_NAMES = ("other",) + tuple(n.replace("_", " ") for n in (
    "wall building sky floor tree ceiling road bed windowpane grass cabinet sidewalk person earth door table "
    "mountain plant curtain chair car water painting sofa shelf house sea mirror rug field armchair seat fence "
    "desk rock wardrobe lamp bathtub railing cushion base box column signboard chest_of_drawers counter sand "
    "sink skyscraper fireplace refrigerator grandstand path stairs runway case pool_table pillow screen_door "
    "stairway river bridge bookcase blind coffee_table toilet flower book hill bench countertop stove palm "
    "kitchen_island computer swivel_chair boat bar arcade_machine hovel bus towel light truck tower chandelier "
    "awning streetlight booth television_receiver airplane dirt_track apparel pole land bannister escalator "
    "ottoman bottle buffet poster stage van ship fountain conveyer_belt canopy washer plaything swimming_pool "
    "stool barrel basket waterfall tent bag minibike cradle oven ball food step tank trade_name microwave pot "
    "animal bicycle lake dishwasher screen blanket sculpture hood sconce vase traffic_light tray ashcan fan "
    "pier crt_screen plate monitor bulletin_board shower radiator glass clock flag"
).split())


def find_root(root: str | Path) -> Path:
    """``root`` itself or ``root/ADEChallengeData2016``, whichever holds images/ and annotations/."""
    root = Path(root)
    for candidate in (root, root / ROOT_NAME):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    raise FileNotFoundError(f"{root} is not an ADE20K root: expected {ROOT_NAME}/images and "
                            f"{ROOT_NAME}/annotations (unzip {URL}; see data_scripts/prepare_ade20k.py)")


def read_class_names(root: str | Path) -> tuple[str, ...]:
    """Names from objectInfo150.txt (first synonym) if present, else the built-in list."""
    info = find_root(root) / "objectInfo150.txt"
    if not info.is_file():
        return CLASS_NAMES
    names = ["other"]
    for line in info.read_text().splitlines()[1:]:
        if line.strip():
            names.append(line.split("\t")[-1].split(";")[0].strip())
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{info} lists {len(names) - 1} classes, expected 150")
    return tuple(names)


def list_pairs(root: str | Path, split: str = "train") -> list[tuple[Path, Path]]:
    """Sorted (image, annotation) paths of a split; every image must have its annotation."""
    if split not in SPLITS:
        raise ValueError(f"unknown ADE20K split {split!r}; choose one of {', '.join(SPLITS)}")
    return images_with_annotations(find_root(root), SPLITS[split], "annotation")


def remap(ids: np.ndarray) -> np.ndarray:
    """ADE20K ids are already 0 (other) .. 150."""
    return ids


def load(root: str | Path, split: str = "train", size: int | tuple[int, int] | None = 256,
         limit: int | None = None) -> SemanticDataset:
    """The split as a SemanticDataset at ``size`` (test-time resize as in the OASIS code; the
    training-time 286 -> random 256 crop and flip belong to the training loop's augmentation)."""
    names = read_class_names(root)
    return load_pairs(list_pairs(root, split), remap, names, distinct_palette(NUM_CLASSES), "ade20k", size, limit)
