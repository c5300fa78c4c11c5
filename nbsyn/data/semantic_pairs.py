"""Shared reading code for the semantic-synthesis benchmarks (ADE20K, Cityscapes, COCO-Stuff).

Each dataset module lists its (image, label map) file pairs from the official folder layout and says
how its raw label ids become classes 0..N-1; this module reads, resizes and stacks them into a
``SemanticDataset``. As in the OASIS code, images are resized bicubically and label maps with
nearest neighbours; class 0 is the "unlabelled / other" class of every dataset (loss weight 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from nbsyn.data.dataset import SemanticDataset


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, whatever the file's mode."""
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def read_ids(path: str | Path) -> np.ndarray:
    """(H, W) int64 raw label ids from a single-channel (L) or palette (P) PNG; no colour conversion."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(f"{path}: a label map must be a single-channel id PNG, got mode {im.mode} "
                             "(colour-coded maps such as *_color.png are not label ids)")
        return np.array(im).astype(np.int64)


def images_with_annotations(base: Path, split_dir: str, what: str) -> list[tuple[Path, Path]]:
    """Sorted (image, label) pairs of the shared ADE20K / COCO-Stuff layout:
    ``images/<split_dir>/*.jpg`` with ``annotations/<split_dir>/<stem>.png``; a missing label is an error."""
    pairs = []
    for image in sorted((base / "images" / split_dir).glob("*.jpg")):
        label = base / "annotations" / split_dir / f"{image.stem}.png"
        if not label.is_file():
            raise FileNotFoundError(f"{image.name} has no {what} {label}")
        pairs.append((image, label))
    return pairs


def as_hw(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize_pair(rgb: np.ndarray, ids: np.ndarray, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Bicubic image and nearest-neighbour label resize to (H, W) = ``size`` (None keeps the size)."""
    from PIL import Image

    if rgb.shape[:2] != ids.shape:
        raise ValueError(f"image {rgb.shape[:2]} and label map {ids.shape} differ in size")
    if size is None or tuple(ids.shape) == tuple(size):
        return rgb, ids
    h, w = size
    rgb = np.array(Image.fromarray(rgb).resize((w, h), Image.BICUBIC))
    ids = np.array(Image.fromarray(ids.astype(np.int32)).resize((w, h), Image.NEAREST)).astype(np.int64)
    return rgb, ids


def distinct_palette(n: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """``n`` random but fixed colours; class 0 (unlabelled) is black."""
    rng = np.random.default_rng(seed)
    colours = [tuple(int(v) for v in rng.integers(40, 256, 3)) for _ in range(n)]
    colours[0] = (0, 0, 0)
    return colours


def load_pairs(pairs: Sequence[tuple[Path, Path]], remap: Callable[[np.ndarray], np.ndarray],
               class_names: Sequence[str], palette: Sequence[Sequence[int]], name: str,
               size: int | Sequence[int] | None, limit: int | None = None) -> SemanticDataset:
    """Read ``pairs`` of (image file, label file), map raw ids to classes, resize, stack."""
    if not pairs:
        raise FileNotFoundError(f"{name}: no image / label pairs found")
    pairs = list(pairs)[:limit] if limit else list(pairs)
    hw = as_hw(size)
    images, labels = [], []
    for image_path, label_path in pairs:
        rgb, ids = resize_pair(read_rgb(image_path), read_ids(label_path), hw)
        if hw is None and images and images[0].shape[-2:] != ids.shape:
            raise ValueError(f"{name}: images differ in size ({image_path}); pass size=... to resize them")
        classes = remap(ids)
        if classes.min() < 0 or classes.max() >= len(class_names):
            raise ValueError(f"{label_path}: label ids {sorted(set(np.unique(ids).tolist()))[:10]} do not map "
                             f"into the {len(class_names)} classes of {name}")
        images.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1)
        labels.append(torch.from_numpy(classes))
    return SemanticDataset(torch.stack(images), torch.stack(labels), list(class_names), palette, name)


def extract_zip(archive: str | Path, dest: str | Path, strip_prefix: str = "") -> int:
    """Unpack ``archive`` into ``dest`` (dropping ``strip_prefix`` from member paths); returns the file count.

    Member paths are checked to stay inside ``dest`` (no ``..`` escapes).
    """
    import zipfile

    dest = Path(dest).resolve()
    count = 0
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            name = member.filename
            if strip_prefix and name.startswith(strip_prefix):
                name = name[len(strip_prefix):]
            if not name or member.is_dir():
                continue
            target = (dest / name).resolve()
            if dest not in target.parents:
                raise ValueError(f"{archive}: member {member.filename!r} would leave {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as out:
                out.write(src.read())
            count += 1
    return count


def summarise(module, root: str | Path, splits, sample: int = 50) -> dict:
    """Pairs per split (vs. the official counts) and the class ids seen in the first ``sample`` maps."""
    report = {}
    for split in splits:
        pairs = module.list_pairs(root, split)
        seen: set[int] = set()
        for _, label in pairs[:sample]:
            seen |= set(np.unique(module.remap(read_ids(label))).tolist())
        expected = getattr(module, "SPLIT_SIZES", {}).get(split)
        report[split] = {"pairs": len(pairs), "official": expected, "classes_seen": sorted(seen)}
        note = "" if expected in (None, len(pairs)) else f" (the official split has {expected})"
        print(f"{split}: {len(pairs)} image / label pairs{note}; classes in the first {min(sample, len(pairs))}: "
              f"{len(seen)}")
        if any(c >= module.NUM_CLASSES for c in seen):
            raise ValueError(f"{split}: class ids {sorted(seen)[-3:]} exceed {module.NUM_CLASSES - 1}")
    return report
