"""The in-memory semantic dataset every notebook uses, and input checks with clear errors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


@dataclass
class SemanticDataset:
    """Images in [-1, 1] of shape (N, 3, H, W) with per-pixel labels (N, H, W)."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: Sequence[str]
    palette: Sequence[Sequence[int]]
    name: str = ""

    def __post_init__(self):
        check_images(self.images)
        check_labels(self.labels, self.num_classes)
        if self.images.shape[0] != self.labels.shape[0] or self.images.shape[-2:] != self.labels.shape[-2:]:
            raise ValueError(f"images {tuple(self.images.shape)} and labels {tuple(self.labels.shape)} do not match")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    def split(self, n_first: int) -> tuple[SemanticDataset, SemanticDataset]:
        """The first ``n_first`` samples and the rest (e.g. train / held-out)."""
        head = SemanticDataset(self.images[:n_first], self.labels[:n_first], self.class_names, self.palette, self.name)
        tail = SemanticDataset(self.images[n_first:], self.labels[n_first:], self.class_names, self.palette, self.name)
        return head, tail

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """An endless stream of random batches (sampled with ``generator`` for determinism)."""
        while True:
            order = torch.randperm(len(self), generator=generator)
            for start in range(0, len(self) - batch_size + 1, batch_size):
                idx = order[start:start + batch_size]
                yield self.images[idx], self.labels[idx]


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, H, W) integer labels -> (N, C, H, W) float one-hot maps."""
    check_labels(labels, num_classes)
    return F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float()


def check_labels(labels: torch.Tensor, num_classes: int, ignore_index: int | None = None) -> None:
    """Raise a clear ValueError for label maps that are not (N, H, W) ids in [0, num_classes)."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"label maps must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"label maps must hold integer class ids, got dtype {labels.dtype}")
    if labels.dim() != 3:
        raise ValueError(f"label maps must have shape (N, H, W), got {tuple(labels.shape)}")
    valid = labels if ignore_index is None else labels[labels != ignore_index]
    if valid.numel() and (valid.min() < 0 or valid.max() >= num_classes):
        bad = sorted({int(v) for v in valid.unique() if v < 0 or v >= num_classes})
        raise ValueError(
            f"label map has class ids {bad[:10]} outside [0, {num_classes - 1}] "
            f"(the dataset has {num_classes} classes)"
        )


def check_images(images: torch.Tensor, size: int | None = None, channels: int = 3) -> None:
    """Raise a clear ValueError for images that are not (N, C, H, W) floats in [-1, 1]."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != channels:
        raise ValueError(f"images must have shape (N, {channels}, H, W), got {tuple(images.shape)}")
    if size is not None and tuple(images.shape[-2:]) != (size, size):
        raise ValueError(f"images must be {size}x{size}, got {images.shape[-2]}x{images.shape[-1]}")
    if not images.dtype.is_floating_point:
        raise ValueError(f"images must be floats in [-1, 1], got dtype {images.dtype}")
    if images.numel() and (not torch.isfinite(images).all() or images.min() < -1.001 or images.max() > 1.001):
        raise ValueError(
            f"images must be finite and in [-1, 1], got range [{images.min():.3f}, {images.max():.3f}]"
        )
