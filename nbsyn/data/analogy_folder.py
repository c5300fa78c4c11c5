"""Reader for the single-image examples of the SemIA authors' code (`example/<name>/` layout).

On disk (what ``data_scripts/prepare_semia_examples.py`` copies)::

    <root>/<name>/img.png | img.jpg         the source image I
    <root>/<name>/label.png | label.jpg     its label map P as a COLOUR image of the same size
    <root>/<name>/cond/*.png | *.jpg        target layouts P' in the same class colours
                                            (cond/rec.* is P itself: a reconstruction check)

The official label maps are colour images with anti-aliased edges. Colours become class ids by a
documented rule (spec §9): if the map has at most ``max_colours`` (32) distinct colours, each colour
is a class; otherwise the classes are the colours covering at least ``min_share`` (0.2 %) of the pixels,
and every other pixel snaps to the nearest class colour in RGB. Target maps are snapped to the
source's class colours the same way. ``resize`` scales everything (nearest for maps); the result is
cropped to a multiple of 8 (the generator's 3 down stages), as the official code does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class AnalogyExample:
    name: str
    image: torch.Tensor            # (3, H, W) in [-1, 1]
    labels: torch.Tensor           # (H, W) class ids
    targets: dict                  # cond file stem -> (H, W) class ids
    class_colours: list            # RGB of each class id

    @property
    def num_classes(self) -> int:
        return len(self.class_colours)


def _find(folder: Path, stem: str) -> Path:
    for suffix in SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    raise FileNotFoundError(f"{folder}/{stem}.png|.jpg not found (official SemIA example layout; "
                            f"see data_scripts/prepare_semia_examples.py)")


def _rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def class_colours(label_rgb: np.ndarray, max_colours: int = 32, min_share: float = 0.002) -> np.ndarray:
    """(K, 3) class colours of a colour label map, by the rule of the module docstring."""
    colours, counts = np.unique(label_rgb.reshape(-1, 3), axis=0, return_counts=True)
    if len(colours) > max_colours:
        keep = counts >= min_share * counts.sum()
        colours, counts = colours[keep], counts[keep]
    order = np.argsort(-counts, kind="stable")  # class 0 = the most frequent colour
    return colours[order]


def quantise(label_rgb: np.ndarray, colours: np.ndarray) -> torch.Tensor:
    """Class id of the nearest class colour for every pixel: (H, W) long."""
    d = ((label_rgb[:, :, None, :].astype(np.int64) - colours[None, None].astype(np.int64)) ** 2).sum(-1)
    return torch.from_numpy(d.argmin(-1)).long()


def _fit(image: torch.Tensor, maps: list[torch.Tensor], resize: float):
    h, w = image.shape[-2:]
    if resize != 1.0:
        h, w = max(8, round(h * resize)), max(8, round(w * resize))
        image = F.interpolate(image[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0]
        maps = [F.interpolate(m[None, None].float(), size=(h, w), mode="nearest")[0, 0].long() for m in maps]
    h8, w8 = h - h % 8, w - w % 8
    if h8 < 8 or w8 < 8:
        raise ValueError(f"image of {h}x{w} is too small after resizing (need at least 8x8)")
    return image[:, :h8, :w8].clamp(-1, 1), [m[:h8, :w8] for m in maps]


def load_analogy_example(root: str | Path, name: str, resize: float = 1.0) -> AnalogyExample:
    """One official example folder ``<root>/<name>`` as image, class-id maps and targets."""
    folder = Path(root) / name
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist; copy the official examples with "
                                f"data_scripts/prepare_semia_examples.py")
    img_rgb = _rgb(_find(folder, "img"))
    lab_rgb = _rgb(_find(folder, "label"))
    if img_rgb.shape != lab_rgb.shape:
        raise ValueError(f"{folder}: label map {lab_rgb.shape[:2]} and image {img_rgb.shape[:2]} differ in size")
    colours = class_colours(lab_rgb)
    labels = quantise(lab_rgb, colours)
    cond = folder / "cond"
    files = sorted(p for p in cond.iterdir() if p.suffix.lower() in SUFFIXES) if cond.is_dir() else []
    targets = {}
    for p in files:
        rgb = _rgb(p)
        if rgb.shape != lab_rgb.shape:
            raise ValueError(f"{p}: target map {rgb.shape[:2]} differs from the label map {lab_rgb.shape[:2]}")
        targets[p.stem] = quantise(rgb, colours)
    image = torch.from_numpy(img_rgb).permute(2, 0, 1).float() / 127.5 - 1
    image, maps = _fit(image, [labels] + list(targets.values()), resize)
    return AnalogyExample(name, image, maps[0], dict(zip(targets, maps[1:])), [tuple(int(v) for v in c) for c in colours])


def list_examples(root: str | Path) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist; see data_scripts/prepare_semia_examples.py")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any((p / f"img{s}").is_file() for s in SUFFIXES))
