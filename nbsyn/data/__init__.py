"""Data: procedural semantic datasets, offline photographs, paired augmentation, input checks."""

from __future__ import annotations

import torch

from nbsyn.data.augment import PairedAugment, apply_affine
from nbsyn.data.dataset import IGNORE_INDEX, SemanticDataset, check_images, check_labels, one_hot
from nbsyn.data.photos import PHOTOS, colour_segments, load_photo, load_rgb
from nbsyn.data.procedural import RENDERERS
from nbsyn.data.sparse import landmarks, scribbles

DATASETS = tuple(RENDERERS)


def make_dataset(name: str, n: int, size: int, seed: int = 0) -> SemanticDataset:
    """``n`` procedural samples of ``name`` ('scenes' or 'faces') at ``size`` x ``size``."""
    if name not in RENDERERS:
        raise ValueError(f"unknown dataset {name!r}; procedural datasets: {', '.join(DATASETS)} "
                         f"(real datasets come through data_scripts/)")
    if n < 1 or size < 8:
        raise ValueError(f"need n >= 1 and size >= 8, got n={n}, size={size}")
    render, class_names, palette = RENDERERS[name]
    pairs = [render(seed, i, size) for i in range(n)]
    images = torch.stack([p[0] for p in pairs])
    labels = torch.stack([p[1] for p in pairs])
    return SemanticDataset(images, labels, class_names, palette, name)


__all__ = [
    "DATASETS", "IGNORE_INDEX", "PHOTOS", "PairedAugment", "SemanticDataset", "apply_affine", "check_images",
    "check_labels", "colour_segments", "landmarks", "load_photo", "load_rgb", "make_dataset", "one_hot", "scribbles",
]
