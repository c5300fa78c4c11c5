"""MS-SSIM (Wang et al. 2003), written out so it needs no download.

SSIM parts with a Gaussian window (11 px, sigma 1.5) on images scaled to [0, 1]:
  l = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1),  cs = (2 s_xy + C2) / (s_x^2 + s_y^2 + C2)
  MS-SSIM = l_M^{w_M} * prod_j cs_j^{w_j}, w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333).
Small images cannot be halved five times, so only the scales whose side stays >= the window are
used and their weights are renormalised to sum to 1 (the notebooks say so at 32 or 64 px).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
C1, C2 = 0.01**2, 0.03**2


def _window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def _filter(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    x = F.conv2d(x, win.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, win.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim_parts(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean luminance term l and contrast-structure term cs per image, for x, y in [0, 1]."""
    mu_x, mu_y = _filter(x, win), _filter(y, win)
    sxx = _filter(x * x, win) - mu_x**2
    syy = _filter(y * y, win) - mu_y**2
    sxy = _filter(x * y, win) - mu_x * mu_y
    cs = (2 * sxy + C2) / (sxx + syy + C2)
    lum = (2 * mu_x * mu_y + C1) / (mu_x**2 + mu_y**2 + C1)
    return lum.flatten(1).mean(1), cs.flatten(1).mean(1)


def num_scales(side: int, window: int = 11) -> int:
    return max(1, min(len(MS_WEIGHTS), int(math.floor(math.log2(side / window))) + 1))


def ms_ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pair MS-SSIM of two (N, C, H, W) batches in [-1, 1]; 1 means identical."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ms_ssim needs two (N, C, H, W) batches of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    x, y = (x.double() + 1) / 2, (y.double() + 1) / 2
    window = min(window, min(x.shape[-2:]))
    win = _window(window, sigma).double()
    scales = num_scales(min(x.shape[-2:]), window)
    weights = torch.tensor(MS_WEIGHTS[:scales], dtype=torch.float64)
    weights = weights / weights.sum()
    result = torch.ones(x.shape[0], dtype=torch.float64)
    for j in range(scales):
        lum, cs = ssim_parts(x, y, win)
        if j == scales - 1:
            result = result * (lum.clamp(min=0) * cs.clamp(min=0)) ** weights[j]
        else:
            result = result * cs.clamp(min=0) ** weights[j]
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return result.float()
