"""Reader for the one-shot folder format of the SIV-GAN / OSMIS authors' code.

On disk (what ``data_scripts/prepare_places_single.py`` and ``prepare_davis.py`` write)::

    <folder>/image/<name>.jpg|.png      one file = a single image, many files = the frames of a video
    <folder>/mask/<name>.png            optional, same basenames; 8-bit grey or palette PNG of class ids

Frames are read in sorted filename order. All images must have the same size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def list_images(folder: str | Path) -> list[Path]:
    image_dir = Path(folder) / "image"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir} does not exist; prepare the data with data_scripts/ "
                                f"(expected <folder>/image/*.jpg)")
    files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no .jpg/.png images in {image_dir}")
    return files


def read_rgb(path: str | Path) -> torch.Tensor:
    """An image file as a (3, H, W) float tensor in [-1, 1]."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 127.5 - 1


def read_mask(path: str | Path) -> torch.Tensor:
    """A grey or palette PNG of class ids as a (H, W) long tensor (palette indices, not colours)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("P", "L", "1"):
            raise ValueError(f"{path}: masks must be palette, grey or 1-bit PNGs of class ids, got mode {im.mode}")
        ids = np.asarray(im)
    return torch.from_numpy(ids.astype(np.int64))


def load_oneshot_folder(folder: str | Path, image: str | None = None, with_masks: bool = False):
    """All images of ``folder`` (or the one whose stem is ``image``) as (N, 3, H, W) in [-1, 1];
    with ``with_masks=True`` also the (N, H, W) masks (missing masks raise)."""
    files = list_images(folder)
    if image is not None:
        files = [p for p in files if p.stem == image]
        if not files:
            raise FileNotFoundError(f"no image named {image!r} in {Path(folder) / 'image'}")
    frames = [read_rgb(p) for p in files]
    sizes = {tuple(f.shape[-2:]) for f in frames}
    if len(sizes) > 1:
        raise ValueError(f"images in {folder} have different sizes {sorted(sizes)}; the prepare scripts resize them")
    images = torch.stack(frames)
    if not with_masks:
        return images
    masks = []
    for p in files:
        mp = Path(folder) / "mask" / (p.stem + ".png")
        if not mp.exists():
            raise FileNotFoundError(f"mask {mp} for image {p.name} is missing")
        masks.append(read_mask(mp))
    if {tuple(m.shape) for m in masks} != sizes:
        raise ValueError(f"masks in {folder} do not match the image size {sizes}")
    return images, torch.stack(masks)
