"""FID (Eq. 3.2) and SIFID with pytorch-fid's InceptionV3, loaded only from the torch hub cache.

FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2})
"""

from __future__ import annotations

import numpy as np
import torch

from nbsyn.metrics.base import MetricResult, unavailable
from nbsyn.metrics.weights import is_cached, missing_reason


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance of two Gaussians, through eigendecompositions (no complex sqrtm).

    Tr((S1 S2)^{1/2}) = sum_i sqrt(lambda_i) with lambda_i the eigenvalues of the symmetric PSD
    matrix S1^{1/2} S2 S1^{1/2}, which has the same spectrum as S1 S2.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    evals, evecs = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    sqrt1 = (evecs * np.sqrt(np.clip(evals, 0, None))) @ evecs.T
    middle = sqrt1 @ sigma2 @ sqrt1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


_INCEPTION: dict = {}


def inception(block: int, device: torch.device | str = "cpu"):
    """pytorch-fid's InceptionV3 returning ``block`` (3: 2048-d pool, 0: 64-ch first block).

    Only called when the weight file is cached, so pytorch-fid's own loader reads it from disk.
    """
    key = (block, str(device))
    if key not in _INCEPTION:
        from pytorch_fid.inception import InceptionV3

        _INCEPTION[key] = InceptionV3([block], resize_input=(block == 3), normalize_input=True).eval().to(device)
    return _INCEPTION[key]


@torch.no_grad()
def inception_features(images: torch.Tensor, block: int = 3, batch_size: int = 32, device="cpu") -> torch.Tensor:
    """Features of images in [-1, 1]; block 3 gives (N, 2048), block 0 gives (N, 64, h, w)."""
    net = inception(block, device)
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = ((images[start:start + batch_size].to(device) + 1) / 2).clamp(0, 1)
        feats = net(batch)[0]
        out.append(feats.flatten(1) if block == 3 else feats)
    return torch.cat(out).cpu()


def fid(real: torch.Tensor, fake: torch.Tensor, device="cpu", batch_size: int = 32) -> MetricResult:
    """FID between two image sets in [-1, 1]; 'unavailable' when the Inception weights are not cached."""
    if not is_cached("inception_fid"):
        return unavailable("FID", missing_reason("inception_fid"))
    if min(len(real), len(fake)) < 2:
        return unavailable("FID", "needs at least 2 images per set")
    f_real = inception_features(real, 3, batch_size, device).numpy()
    f_fake = inception_features(fake, 3, batch_size, device).numpy()
    value = frechet_distance(*gaussian_stats(f_real), *gaussian_stats(f_fake))
    return MetricResult("FID", value, higher_is_better=False)


def sifid(real_image: torch.Tensor, fakes: torch.Tensor, device="cpu") -> MetricResult:
    """Single-image FID: Frechet distance of first-block Inception features, one sample per position.

    ``real_image`` is (3, H, W); the value is averaged over the (N, 3, H, W) ``fakes``.
    """
    if not is_cached("inception_fid"):
        return unavailable("SIFID", missing_reason("inception_fid"))
    f_real = inception_features(real_image[None], 0, device=device)[0]
    stats_real = gaussian_stats(f_real.flatten(1).T.numpy())
    values = []
    for fake in inception_features(fakes, 0, device=device):
        values.append(frechet_distance(*stats_real, *gaussian_stats(fake.flatten(1).T.numpy())))
    return MetricResult("SIFID", float(np.mean(values)), per_item=torch.tensor(values), higher_is_better=False)
