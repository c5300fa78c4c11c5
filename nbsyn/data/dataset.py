"""The in-memory semantic dataset every notebook uses, and input checks with clear errors."""

from __future__ import annotations

from collections.abc import Sequence
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

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Batches:
        """An endless, checkpointable stream of random batches (sampled with ``generator``)."""
        return Batches(self, batch_size, generator)


class Batches:
    """Random batches without replacement, epoch after epoch; an iterator with ``state_dict``.

    Each epoch is a new permutation; the last ``len % batch_size`` items of an epoch are dropped.
    A dataset smaller than the batch (1-shot, 5-shot) fills each batch from as many permutations
    as it needs. ``state_dict()`` holds the generator state and the position, so ``nbsyn.train.fit``
    can checkpoint it and a resumed run sees exactly the batches it would have seen.
    """

    def __init__(self, dataset, batch_size: int, generator: torch.Generator | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(dataset) == 0:
            raise ValueError("cannot draw batches from an empty dataset")
        self.dataset, self.batch_size = dataset, batch_size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.order = torch.empty(0, dtype=torch.long)
        self.position = 0

    def __iter__(self):
        return self

    def _epoch(self) -> torch.Tensor:
        n = len(self.dataset)
        if n >= self.batch_size:
            return torch.randperm(n, generator=self.generator)
        reps = -(-self.batch_size // n)  # ceil
        return torch.cat([torch.randperm(n, generator=self.generator) for _ in range(reps)])

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position + self.batch_size > len(self.order):
            self.order, self.position = self._epoch(), 0
        idx = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return self.dataset[idx]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone(), "position": self.position}

    def load_state_dict(self, state) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"].clone(), int(state["position"])


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
