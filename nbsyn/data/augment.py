"""Paired augmentation: one random geometric transform applied to an image and its mask.

The image is resampled bilinearly, the mask with nearest neighbour (class ids must not blend).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class PairedAugment:
    """Random horizontal flip, zoom (crop-and-resize) and small rotation, shared by image and mask."""

    def __init__(self, flip: bool = True, zoom: tuple[float, float] = (1.0, 1.25), max_degrees: float = 0.0):
        if zoom[0] <= 0 or zoom[0] > zoom[1]:
            raise ValueError(f"zoom must be (low, high) with 0 < low <= high, got {zoom}")
        self.flip, self.zoom, self.max_degrees = flip, zoom, max_degrees

    def sample_theta(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, 2, 3) affine matrices in the normalised coordinates of ``F.affine_grid``."""
        u = torch.rand(n, 5, generator=generator)
        scale = 1.0 / (self.zoom[0] + (self.zoom[1] - self.zoom[0]) * u[:, 0])  # zoom in = sample a smaller window
        angle = math.radians(self.max_degrees) * (2 * u[:, 1] - 1)
        sign = torch.where((u[:, 2] < 0.5) & self.flip, -1.0, 1.0)
        shift = (1 - scale)[:, None] * (2 * u[:, 3:5] - 1)  # keep the window inside the image
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        theta = torch.stack([torch.stack([cos * sign, -sin, shift[:, 0]], 1),
                             torch.stack([sin * sign, cos, shift[:, 1]], 1)], 1)
        return theta

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None):
        theta = self.sample_theta(images.shape[0], generator).to(images.device)
        return apply_affine(images, labels, theta)


def apply_affine(images: torch.Tensor, labels: torch.Tensor, theta: torch.Tensor):
    """Warp (N, C, H, W) images bilinearly and (N, H, W) labels by nearest neighbour with one theta."""
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    warped_labels = F.grid_sample(labels[:, None].float(), grid, mode="nearest", padding_mode="reflection",
                                  align_corners=False)[:, 0].round().long()
    return warped, warped_labels
