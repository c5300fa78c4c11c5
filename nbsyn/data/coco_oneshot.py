"""COCO one-shot image-mask pairs (OSMIS qualitative results [L1756] and COCO-20^i [L1822]).

On-disk layout of the official COCO 2017 release::

    coco/
      annotations/instances_val2017.json   {"images": [...], "annotations": [...], "categories": [...]}
      val2017/000000xxxxxx.jpg

An annotation's ``segmentation`` is a list of polygons ``[[x1, y1, x2, y2, ...], ...]`` (iscrowd = 0)
or run-length encoding ``{"size": [h, w], "counts": [...] or "compressed string"}`` (iscrowd = 1), in
column-major (Fortran) order. Both are decoded here with PIL and NumPy (no pycocotools needed).

COCO-20^i splits the 80 categories into 4 folds of 20 test classes; fold ``f`` holds the categories
whose position ``k`` (1..80, in the sorted order of category ids) satisfies ``k % 4 == (f + 1) % 4``,
i.e. classes 1, 5, 9, ... for fold 0 (the convention of PANet / RePRI). The thesis picks 5 random
support samples per test class, 100 pairs per fold, and trains one OSMIS per pair [L1822, L1833].
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

MASK_MODES = ("class", "instance", "binary")


def load_instances(path: str | Path) -> dict:
    """Parse an ``instances_*.json`` file and index it: adds ``_images``, ``_by_image``, ``_categories``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no COCO annotation file at {path}; expected annotations/instances_val2017.json")
    data = json.loads(path.read_text())
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"{path} is not a COCO instances file (no {key!r} list)")
    data["_images"] = {im["id"]: im for im in data["images"]}
    data["_categories"] = {c["id"]: c for c in sorted(data["categories"], key=lambda c: c["id"])}
    by_image: dict[int, list] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    data["_by_image"] = by_image
    return data


def decode_rle_string(counts: str) -> list[int]:
    """Decode COCO's compressed RLE string (LEB128-like, 5 bits per char, delta-coded from the 3rd run)."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def rle_to_mask(rle: dict) -> np.ndarray:
    """(h, w) bool mask from COCO RLE (alternating runs of 0 and 1, column-major)."""
    h, w = rle["size"]
    counts = rle["counts"]
    runs = decode_rle_string(counts) if isinstance(counts, str) else list(counts)
    if sum(runs) != h * w:
        raise ValueError(f"RLE runs sum to {sum(runs)}, expected h * w = {h * w}")
    flat = np.zeros(h * w, dtype=bool)
    pos, value = 0, False
    for run in runs:
        if value:
            flat[pos:pos + run] = True
        pos += run
        value = not value
    return flat.reshape(w, h).T


def mask_to_runs(mask: np.ndarray) -> list[int]:
    """The inverse of ``rle_to_mask``'s decoding: uncompressed COCO RLE runs of an (h, w) mask
    (column-major, alternating 0 and 1, starting with 0). Used to write fixtures and to test."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    runs, value, count = [], False, 0
    for v in flat:
        if v == value:
            count += 1
        else:
            runs.append(count)
            value, count = v, 1
    runs.append(count)
    return runs


def polygons_to_mask(polygons: list, h: int, w: int) -> np.ndarray:
    """(h, w) bool mask of the union of COCO polygons: pixel (row r, col c) is inside when its centre
    (c + 0.5, r + 0.5) is (close to pycocotools' rasterisation; a rectangle's area comes out exact)."""
    from matplotlib.path import Path as PolygonPath

    mask = np.zeros((h, w), dtype=bool)
    for poly in polygons:
        if len(poly) < 6:
            continue
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        c0, c1 = max(int(np.floor(xy[:, 0].min())), 0), min(int(np.ceil(xy[:, 0].max())) + 1, w)
        r0, r1 = max(int(np.floor(xy[:, 1].min())), 0), min(int(np.ceil(xy[:, 1].max())) + 1, h)
        if c0 >= c1 or r0 >= r1:
            continue
        rows, cols = np.mgrid[r0:r1, c0:c1]
        centres = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1)
        inside = PolygonPath(xy).contains_points(centres).reshape(rows.shape)
        mask[r0:r1, c0:c1] |= inside
    return mask


def annotation_mask(ann: dict, h: int, w: int) -> np.ndarray:
    seg = ann["segmentation"]
    if isinstance(seg, list):
        return polygons_to_mask(seg, h, w)
    return rle_to_mask(seg)


FOLD_CONVENTIONS = ("interleaved", "blocks")


def fold_classes(data: dict, fold: int, convention: str = "interleaved") -> list[int]:
    """COCO category ids of the 20 test classes of COCO-20^fold.

    ``"interleaved"`` (PANet, RePRI): positions 4k + fold + 1; ``"blocks"`` (PFENet-style code):
    positions 20 * fold + 1 .. 20 * fold + 20. Check which one your segmentation code uses.
    """
    if fold not in range(4):
        raise ValueError(f"COCO-20^i has folds 0..3, got {fold}")
    if convention not in FOLD_CONVENTIONS:
        raise ValueError(f"unknown fold convention {convention!r}; choose one of {', '.join(FOLD_CONVENTIONS)}")
    ids = list(data["_categories"])
    if len(ids) != 80:
        raise ValueError(f"COCO-20^i needs the 80 COCO categories, the file has {len(ids)}")
    if convention == "blocks":
        return ids[20 * fold:20 * fold + 20]
    return [cid for k, cid in enumerate(ids, start=1) if k % 4 == (fold + 1) % 4]


def support_samples(data: dict, category_ids: list[int], per_class: int = 5, seed: int = 0,
                    min_area: float = 0.0) -> list[tuple[int, int]]:
    """``per_class`` random (image_id, category_id) support pairs per category (images that contain it)."""
    rng = random.Random(seed)
    pairs = []
    for cid in category_ids:
        candidates = sorted({a["image_id"] for a in data["annotations"]
                             if a["category_id"] == cid and not a.get("iscrowd", 0) and a["area"] >= min_area})
        rng.shuffle(candidates)
        pairs += [(image_id, cid) for image_id in candidates[:per_class]]
    return pairs


def oneshot_pair(data: dict, images_dir: str | Path, image_id: int, category_id: int | None = None,
                 mode: str = "class"):
    """(image (3, H, W) in [-1, 1], labels (H, W) long, class_names) for one COCO image.

    ``mode="class"``: one label per category present (class-wise mask); ``"instance"``: one label per
    instance; ``"binary"``: only ``category_id`` as object 1 (the COCO-20^i support mask). Label 0 is
    background; crowd regions are ignored; later annotations overwrite earlier ones where they overlap.
    """
    from PIL import Image

    if mode not in MASK_MODES:
        raise ValueError(f"unknown mask mode {mode!r}; choose one of {', '.join(MASK_MODES)}")
    if image_id not in data["_images"]:
        raise ValueError(f"image id {image_id} is not in the annotation file")
    if mode == "binary" and category_id is None:
        raise ValueError("mode='binary' needs the category_id of the support class")
    info = data["_images"][image_id]
    h, w = info["height"], info["width"]
    path = Path(images_dir) / info["file_name"]
    with Image.open(path) as im:
        rgb = np.array(im.convert("RGB"), dtype=np.float32) / 255.0
    if rgb.shape[:2] != (h, w):
        raise ValueError(f"{path} is {rgb.shape[1]}x{rgb.shape[0]}, the annotation says {w}x{h}")
    labels = np.zeros((h, w), dtype=np.int64)
    names = ["background"]
    anns = [a for a in data["_by_image"].get(image_id, []) if not a.get("iscrowd", 0)]
    if mode == "binary":
        anns = [a for a in anns if a["category_id"] == category_id]
        names.append(data["_categories"][category_id]["name"])
    category_label: dict[int, int] = {}
    for ann in anns:
        m = annotation_mask(ann, h, w)
        if mode == "binary":
            label = 1
        elif mode == "class":
            if ann["category_id"] not in category_label:
                category_label[ann["category_id"]] = len(names)
                names.append(data["_categories"][ann["category_id"]]["name"])
            label = category_label[ann["category_id"]]
        else:
            label = len(names)
            names.append(f"{data['_categories'][ann['category_id']]['name']} {ann['id']}")
        labels[m] = label
    image = torch.from_numpy(rgb).permute(2, 0, 1) * 2 - 1
    return image, torch.from_numpy(labels), names
