"""Offline photographs shipped by scikit-image, with label maps made by a documented procedure.

The procedure (``colour_segments``) gives each photo a few "classes" without any download:
1. centre-crop to a square and resize to ``size`` (antialiased);
2. convert to CIE Lab and smooth with a Gaussian (sigma = size / 64) so texture does not split regions;
3. k-means (k classes, deterministic initialisation from the seed) on (L, a, b, 0.5 * scaled x, y):
   position is a weak cue so a class is mostly one colour but prefers compact regions;
4. a 5x5 majority filter removes speckles; classes are sorted by mean lightness (class 0 darkest).
These are colour-coherent regions, not semantic classes; the notebooks say so where they use them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def load_rgb(name: str, size: int) -> torch.Tensor:
    """A scikit-image sample photograph as a (3, size, size) tensor in [-1, 1]."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; offline photos: {', '.join(PHOTOS)}")
    import skimage.data

    rgb = getattr(skimage.data, name)()[..., :3]
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = torch.from_numpy(np.ascontiguousarray(rgb[top:top + s, left:left + s])).permute(2, 0, 1).float() / 255.0
    small = F.interpolate(square[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return small.clamp(0, 1) * 2 - 1


def _kmeans(points: torch.Tensor, k: int, seed: int, iterations: int = 30) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    centres = points[torch.randperm(points.shape[0], generator=gen)[:k]].clone()
    for _ in range(iterations):
        assign = torch.cdist(points, centres).argmin(1)
        for c in range(k):
            members = points[assign == c]
            if len(members):
                centres[c] = members.mean(0)
    return torch.cdist(points, centres).argmin(1)


def _majority_filter(labels: torch.Tensor, k: int, width: int = 5) -> torch.Tensor:
    votes = F.one_hot(labels, k).permute(2, 0, 1).float()[None]
    counts = F.avg_pool2d(votes, width, stride=1, padding=width // 2, count_include_pad=False)
    return counts[0].argmax(0)


def colour_segments(image: torch.Tensor, k: int = 5, seed: int = 0) -> torch.Tensor:
    """An (H, W) label map of ``k`` colour-coherent classes for a (3, H, W) image in [-1, 1]."""
    from skimage.color import rgb2lab
    from skimage.filters import gaussian

    size = image.shape[-1]
    rgb = ((image + 1) / 2).permute(1, 2, 0).numpy()
    lab = rgb2lab(gaussian(rgb, sigma=size / 64, channel_axis=-1))
    lab = torch.from_numpy(lab).float() / torch.tensor([100.0, 128.0, 128.0])
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    feats = torch.cat([lab, 0.5 * torch.stack([xs, ys], -1)], -1).reshape(-1, 5)
    labels = _majority_filter(_kmeans(feats, k, seed).view(size, size), k)
    # sort classes by mean lightness so the numbering is stable and readable
    lightness = torch.stack([lab[..., 0][labels == c].mean() if (labels == c).any() else torch.tensor(9.0)
                             for c in range(k)])
    rank = torch.empty(k, dtype=torch.long)
    rank[lightness.argsort()] = torch.arange(k)
    return rank[labels]


def load_photo(name: str, size: int, k: int = 5, seed: int = 0):
    """(image (3, H, W) in [-1, 1], labels (H, W), class_names) for an offline photograph."""
    image = load_rgb(name, size)
    labels = colour_segments(image, k, seed)
    names = [f"{name} region {c} ({'dark' if c == 0 else 'light' if c == k - 1 else 'mid'})" for c in range(k)]
    return image, labels, names
