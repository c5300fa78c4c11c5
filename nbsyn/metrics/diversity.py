"""Diversity and memorisation: pairwise similarity among samples, distance to the training set."""

from __future__ import annotations

import itertools

import torch

from nbsyn.metrics.base import MetricResult, unavailable
from nbsyn.metrics.lpips import lpips_available, lpips_pairs
from nbsyn.metrics.msssim import ms_ssim


def _pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = list(itertools.combinations(range(n), 2))
    if not pairs:
        raise ValueError("diversity needs at least 2 samples")
    i, j = zip(*pairs)
    return torch.tensor(i), torch.tensor(j)


def msssim_diversity(samples: torch.Tensor) -> MetricResult:
    """Mean MS-SSIM over all pairs of samples (lower = more diverse; 1 = all identical)."""
    i, j = _pairs(samples.shape[0])
    values = ms_ssim(samples[i], samples[j])
    return MetricResult("mean pairwise MS-SSIM (lower = more diverse)", float(values.mean()), per_item=values)


def lpips_diversity(samples: torch.Tensor, net: str = "alex", device="cpu") -> MetricResult:
    """Mean LPIPS over all pairs of samples (higher = more diverse)."""
    reason = lpips_available(net)
    if reason:
        return unavailable("mean pairwise LPIPS (higher = more diverse)", reason)
    i, j = _pairs(samples.shape[0])
    values = lpips_pairs(samples[i], samples[j], net, device)
    return MetricResult("mean pairwise LPIPS (higher = more diverse)", float(values.mean()), per_item=values)


def nn_distance(samples: torch.Tensor, train_images: torch.Tensor) -> MetricResult:
    """For each sample, the RMSE (in [-1, 1] pixel units) to its nearest training image.

    Near 0 means the sample copies a training image (memorisation). ``per_item`` holds the
    distances and ``nearest`` indices are stored as the second row.
    """
    flat_s = samples.flatten(1).double()
    flat_t = train_images.flatten(1).double()
    dists = torch.cdist(flat_s, flat_t) / flat_s.shape[1] ** 0.5
    best, index = dists.min(1)
    return MetricResult("nearest-training-image RMSE", float(best.mean()),
                        per_item=torch.stack([best.float(), index.float()]), higher_is_better=None)
