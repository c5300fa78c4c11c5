"""K-means on feature vectors (spherical or Euclidean) and the purity of its clusters against known labels.

Used to ask whether a generator's intermediate features "know" the semantic classes: cluster the
per-pixel features of generated images, then see how well each cluster matches one class (notebook 07's
proxy masks, the evaluation of the shipped StyleGAN2 reference models).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def spherical_kmeans(X: torch.Tensor, K: int, iters: int = 30, seed: int = 0, spherical: bool = True) -> torch.Tensor:
    """Centroids (K, C) of the rows of X (N, C): k-means++ initialisation, then Lloyd iterations.

    Spherical: rows and centroids are L2-normalised and the similarity is the cosine (Collins et al.);
    otherwise plain Euclidean K-means. An empty cluster is re-seeded at the worst-fitted point.
    """
    if X.dim() != 2 or X.shape[0] < K:
        raise ValueError(f"need X of shape (N >= K={K}, C), got {tuple(X.shape)}")
    gen = torch.Generator().manual_seed(seed)
    X = X.detach().float().cpu()
    if spherical:
        X = F.normalize(X, dim=1)

    def dist(C):  # (N, K) squared distances (for unit vectors 2 - 2 cos)
        return (X.pow(2).sum(1, keepdim=True) - 2 * X @ C.t() + C.pow(2).sum(1)[None]).clamp(min=0)

    C = X[torch.randint(X.shape[0], (1,), generator=gen)]
    for _ in range(1, K):  # k-means++: next centre with probability proportional to D(x)^2
        d = dist(C).min(1).values
        p = d / d.sum() if d.sum() > 0 else torch.full_like(d, 1.0 / len(d))
        C = torch.cat([C, X[torch.multinomial(p, 1, generator=gen)]])
    for _ in range(iters):
        d = dist(C)
        assign = d.argmin(1)
        new = torch.zeros_like(C).index_add_(0, assign, X)
        counts = torch.bincount(assign, minlength=K)
        for k in torch.nonzero(counts == 0).flatten().tolist():  # re-seed an empty cluster
            worst = d.gather(1, assign[:, None]).squeeze(1).argmax()
            new[k], counts[k] = X[worst], 1
        C = new / counts[:, None].clamp(min=1)
        if spherical:
            C = F.normalize(C, dim=1)
    return C


def assign_clusters(X: torch.Tensor, centroids: torch.Tensor, spherical: bool = True) -> torch.Tensor:
    """Index of the nearest centroid (highest cosine, or smallest Euclidean distance) for each row of X."""
    X, C = X.float(), centroids.float().to(X.device)
    if spherical:
        return (F.normalize(X, dim=1) @ C.t()).argmax(1)
    return torch.cdist(X, C).argmin(1)


def cluster_purity(masks: torch.Tensor, labels: torch.Tensor, K: int, num_classes: int):
    """Purity of proxy masks (B, h, w) against true labels (B, h, w): the fraction of pixels whose
    cluster's majority class is their class. Returns (purity, majority class per cluster (K,), counts (K, C))."""
    counts = torch.bincount(masks.flatten() * num_classes + labels.flatten(),
                            minlength=K * num_classes).view(K, num_classes)
    return float(counts.max(1).values.sum() / counts.sum()), counts.argmax(1), counts


def majority_share(labels: torch.Tensor, num_classes: int) -> float:
    """The purity of a single cluster: the share of the most frequent class (the baseline)."""
    return float(torch.bincount(labels.flatten().cpu(), minlength=num_classes).max()) / labels.numel()
