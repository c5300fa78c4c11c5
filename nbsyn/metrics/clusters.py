"""Spherical K-means on feature vectors and the purity of its clusters against known labels.

Used to ask whether a generator's intermediate features "know" the semantic classes: cluster the
per-pixel features of generated images, then see how well each cluster matches one class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def spherical_kmeans(x: torch.Tensor, k: int, iterations: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """K-means with cosine similarity on the rows of ``x`` (N, D): returns (centroids (k, D), assignment (N,)).

    Centroids are unit vectors; each step assigns every row to the centroid of highest cosine
    similarity and re-normalises the mean of its members. Initial centroids: ``k`` distinct rows
    drawn with ``seed`` (deterministic). An empty cluster keeps its previous centroid.
    """
    if x.dim() != 2:
        raise ValueError(f"spherical_kmeans needs (N, D) vectors, got {tuple(x.shape)}")
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be in [1, {x.shape[0]}] for {x.shape[0]} vectors, got {k}")
    x = F.normalize(x.float(), dim=1)
    pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:k]
    centroids = x[pick.to(x.device)].clone()
    assignment = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for _ in range(iterations):
        assignment = (x @ centroids.T).argmax(1)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, x)
        filled = sums.norm(dim=1) > 0
        centroids[filled] = F.normalize(sums[filled], dim=1)
    return centroids, assignment


def cluster_purity(assignment: torch.Tensor, labels: torch.Tensor, k: int, num_classes: int) -> float:
    """Purity = (1/N) sum_clusters max_class |cluster ∩ class|: the accuracy of labelling each
    cluster with its majority class. 1 = every cluster holds one class."""
    if assignment.shape != labels.shape:
        raise ValueError(f"assignment {tuple(assignment.shape)} and labels {tuple(labels.shape)} differ")
    counts = torch.zeros(k, num_classes, dtype=torch.long)
    counts.index_put_((assignment.flatten().cpu(), labels.flatten().cpu()), torch.ones(labels.numel(), dtype=torch.long),
                      accumulate=True)
    return float(counts.max(1).values.sum()) / labels.numel()


def majority_share(labels: torch.Tensor, num_classes: int) -> float:
    """The purity of a single cluster: the share of the most frequent class (the baseline)."""
    return float(torch.bincount(labels.flatten().cpu(), minlength=num_classes).max()) / labels.numel()
