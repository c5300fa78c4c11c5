"""Sparse annotations derived from dense label maps (for the few-shot notebooks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nbsyn.data.dataset import IGNORE_INDEX


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary erosion of an (H, W) mask with a (2r+1)^2 square."""
    if radius <= 0:
        return mask
    inverted = (~mask).float()[None, None]
    grown = F.max_pool2d(inverted, 2 * radius + 1, stride=1, padding=radius)
    return grown[0, 0] == 0


def scribbles(labels: torch.Tensor, radius: int = 1, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """A scribble per class: a cross through the centre of the class's eroded region.

    For every class present in an (H, W) map, the region is eroded by ``radius`` (so strokes keep
    off the borders, like a careful annotator), and the row and column through the eroded region's
    median pixel are kept. All other pixels get ``ignore_index``.
    """
    if labels.dim() != 2:
        raise ValueError(f"scribbles takes one (H, W) label map, got {tuple(labels.shape)}")
    out = torch.full_like(labels, ignore_index)
    for cls in labels.unique():
        region = _erode(labels == cls, radius)
        if not region.any():
            region = labels == cls
        ys, xs = torch.nonzero(region, as_tuple=True)
        cy, cx = ys.median(), xs.median()
        stroke = region & ((torch.arange(labels.shape[0])[:, None] == cy) | (torch.arange(labels.shape[1])[None, :] == cx))
        out[stroke] = cls
    return out


def landmarks(labels: torch.Tensor) -> dict[int, tuple[float, float]]:
    """One landmark per class: the centroid (row, column) of its pixels in an (H, W) map."""
    if labels.dim() != 2:
        raise ValueError(f"landmarks takes one (H, W) label map, got {tuple(labels.shape)}")
    points = {}
    for cls in labels.unique():
        ys, xs = torch.nonzero(labels == cls, as_tuple=True)
        points[int(cls)] = (ys.float().mean().item(), xs.float().mean().item())
    return points
