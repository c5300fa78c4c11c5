"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, loaded only from the torch hub cache.

d(x, y) = sum_l 1/(H_l W_l) sum_{h,w} || w_l * (f^l_hw(x) - f^l_hw(y)) ||_2^2 with unit-normalised
channel features f^l and learned weights w_l (the thesis' Eq. 3.3 prints a simplified form).
The linear weights w_l ship with the package; the AlexNet/VGG backbone must be in the cache.
"""

from __future__ import annotations

import contextlib
import io

import torch

from nbsyn.metrics.base import MetricResult, unavailable
from nbsyn.metrics.weights import is_cached, missing_reason

BACKBONES = {"alex": "alexnet", "vgg": "vgg16"}
_NETS: dict = {}


def lpips_available(net: str = "alex") -> str | None:
    """None when LPIPS can run, else the reason it cannot."""
    if net not in BACKBONES:
        raise ValueError(f"unknown LPIPS backbone {net!r}; choose one of {', '.join(BACKBONES)}")
    return None if is_cached(BACKBONES[net]) else missing_reason(BACKBONES[net])


def lpips_net(net: str = "alex", device="cpu"):
    key = (net, str(device))
    if key not in _NETS:
        import lpips

        with contextlib.redirect_stdout(io.StringIO()):  # the package prints its set-up
            _NETS[key] = lpips.LPIPS(net=net, verbose=False).eval().to(device)
    return _NETS[key]


@torch.no_grad()
def lpips_pairs(x: torch.Tensor, y: torch.Tensor, net: str = "alex", device="cpu", batch_size: int = 32) -> torch.Tensor:
    """LPIPS between matching rows of two (N, 3, H, W) batches in [-1, 1]; call only when available."""
    model = lpips_net(net, device)
    out = [model(x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)).flatten().cpu()
           for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out)


def lpips_distance(x: torch.Tensor, y: torch.Tensor, net: str = "alex", device="cpu") -> MetricResult:
    """Mean LPIPS between matching images, or 'unavailable' without the backbone weights."""
    reason = lpips_available(net)
    if reason:
        return unavailable("LPIPS", reason)
    values = lpips_pairs(x, y, net, device)
    return MetricResult("LPIPS", float(values.mean()), per_item=values)
