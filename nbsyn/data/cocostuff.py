"""COCO-Stuff (164k), 256 x 256 in the thesis (L1112), 182 classes + unlabelled.

Official on-disk layout (github.com/nightrome/cocostuff: ``train2017.zip``, ``val2017.zip`` into
``images/``, ``stuffthingmaps_trainval2017.zip`` into ``annotations/``)::

    cocostuff/
      images/train2017/000000000009.jpg ...            (118,287 images)
      images/val2017/000000000139.jpg ...              (5,000 images)
      annotations/train2017/000000000009.png ...       (uint8: 0..181 = COCO id - 1, 255 = unlabeled)
      annotations/val2017/000000000139.png ...

As in the OASIS code the ids are shifted by one and 255 becomes 0: class 0 is "unlabeled" (the
don't-care class), classes 1..182 are the COCO-Stuff labels, N = 183 channels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nbsyn.data.dataset import SemanticDataset
from nbsyn.data.semantic_pairs import distinct_palette, images_with_annotations, load_pairs

SPLITS = {"train": "train2017", "val": "val2017"}
NUM_CLASSES = 183
DONTCARE = 0
UNLABELED = 255
SPLIT_SIZES = {"train": 118_287, "val": 5_000}
URLS = (
    "http://images.cocodataset.org/zips/train2017.zip",
    "http://images.cocodataset.org/zips/val2017.zip",
    "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/stuffthingmaps_trainval2017.zip",
)

# COCO category ids 1..91 (11 ids are unused in COCO 2017 and never appear) and stuff ids 92..182
_THINGS = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant street_sign "
    "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe hat backpack "
    "umbrella shoe eye_glasses handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat "
    "baseball_glove skateboard surfboard tennis_racket bottle plate wine_glass cup fork knife spoon bowl banana "
    "apple sandwich orange broccoli carrot hot_dog pizza donut cake chair couch potted_plant bed mirror "
    "dining_table window desk toilet door tv laptop mouse remote keyboard cell_phone microwave oven toaster "
    "sink refrigerator blender book clock vase scissors teddy_bear hair_drier toothbrush hair_brush"
)
_STUFF = (
    "banner blanket branch bridge building-other bush cabinet cage cardboard carpet ceiling-other ceiling-tile "
    "cloth clothes clouds counter cupboard curtain desk-stuff dirt door-stuff fence floor-marble floor-other "
    "floor-stone floor-tile floor-wood flower fog food-other fruit furniture-other grass gravel ground-other hill "
    "house leaves light mat metal mirror-stuff moss mountain mud napkin net paper pavement pillow plant-other "
    "plastic platform playingfield railing railroad river road rock roof rug salad sand sea shelf sky-other "
    "skyscraper snow solid-other stairs stone straw structural-other table tent textile-other towel tree "
    "vegetable wall-brick wall-concrete wall-other wall-panel wall-stone wall-tile wall-wood water-other "
    "waterdrops window-blind window-other wood"
)
CLASS_NAMES = ("unlabeled",) + tuple(n.replace("_", " ") for n in (_THINGS + " " + _STUFF).split())


def find_root(root: str | Path) -> Path:
    root = Path(root)
    if not ((root / "images").is_dir() and (root / "annotations").is_dir()):
        raise FileNotFoundError(f"{root} is not a COCO-Stuff root: expected images/<split>2017 and "
                                "annotations/<split>2017 (see data_scripts/prepare_cocostuff.py)")
    return root


def list_pairs(root: str | Path, split: str = "train") -> list[tuple[Path, Path]]:
    if split not in SPLITS:
        raise ValueError(f"unknown COCO-Stuff split {split!r}; choose one of {', '.join(SPLITS)}")
    return images_with_annotations(find_root(root), SPLITS[split], "stuff-thing map")


def remap(ids: np.ndarray) -> np.ndarray:
    """0..181 -> 1..182; 255 (unlabeled) -> 0. Any other id is an error (caught by the loader)."""
    return np.where(ids == UNLABELED, 0, ids + 1)


def load(root: str | Path, split: str = "train", size: int | tuple[int, int] | None = 256,
         limit: int | None = None) -> SemanticDataset:
    return load_pairs(list_pairs(root, split), remap, CLASS_NAMES, distinct_palette(NUM_CLASSES), "cocostuff",
                      size, limit)
