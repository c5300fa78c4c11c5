"""Figures: image grids, label maps coloured with a legend, loss curves; saved for the report."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) in [0, 1]."""
    return ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> torch.Tensor:
    """Tile (N, 3, H, W) images into one (3, H', W') image, white padding, values kept in [-1, 1]."""
    n, c, h, w = images.shape
    ncol = min(nrow, n)
    rows = (n + ncol - 1) // ncol
    canvas = torch.ones(c, rows * (h + pad) + pad, ncol * (w + pad) + pad)
    for i, img in enumerate(images.detach().float().cpu()):
        r, col = divmod(i, ncol)
        canvas[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = img
    return canvas


def colorize(labels: torch.Tensor, palette: Sequence[Sequence[int]]) -> torch.Tensor:
    """(..., H, W) class ids -> (..., 3, H, W) colours in [-1, 1]; ids outside the palette are white."""
    table = torch.tensor(list(palette) + [(255, 255, 255)], dtype=torch.float32) / 127.5 - 1
    ids = labels.long().clamp(min=0)
    ids = torch.where(ids < len(palette), ids, torch.full_like(ids, len(palette)))
    return table[ids].movedim(-1, -3)


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None, scale: float = 1.5):
    """Show a grid of images; returns the figure."""
    tiled = grid(images, nrow)
    if ax is None:
        ncol = min(nrow, images.shape[0])
        nrows = (images.shape[0] + ncol - 1) // ncol
        fig, ax = plt.subplots(figsize=(scale * ncol, scale * nrows + (0.4 if title else 0)))
    ax.imshow(to_numpy_image(tiled), interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax.figure


def show_rows(rows: Sequence[tuple[str, torch.Tensor]], ncol: int, scale: float = 1.5):
    """One titled row of ``ncol`` images per (title, images) pair, stacked; returns the figure."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(scale * ncol, (scale + 0.25) * len(rows)), squeeze=False)
    for ax, (title, images) in zip(axes[:, 0], rows):
        show_images(images, ncol, title, ax)
    fig.tight_layout()
    return fig


def legend_handles(class_names: Sequence[str], palette: Sequence[Sequence[int]], present=None):
    ids = range(len(class_names)) if present is None else sorted(int(i) for i in present)
    return [Patch(color=np.array(palette[i]) / 255, label=class_names[i]) for i in ids if i < len(class_names)]


def show_labels(labels: torch.Tensor, class_names: Sequence[str], palette: Sequence[Sequence[int]],
                nrow: int = 8, title: str | None = None, ax=None, scale: float = 1.5):
    """Show (N, H, W) label maps in the class colours, with a legend of the classes present."""
    if labels.dim() == 2:
        labels = labels[None]
    fig = show_images(colorize(labels, palette), nrow, title, ax, scale)
    ax = fig.axes[-1]
    handles = legend_handles(class_names, palette, labels.unique())
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
              ncol=1 + (len(handles) - 1) // 10)  # columns of at most 10 entries (23 street classes: 3)
    return fig


def show_pairs(images: torch.Tensor, labels: torch.Tensor, class_names, palette, n: int = 8, title=None, scale=1.5):
    """Images (top row) above their label maps (bottom row)."""
    n = min(n, images.shape[0])
    fig, axes = plt.subplots(2, 1, figsize=(scale * n + 1.5, 2 * scale + 0.4))
    show_images(images[:n], n, title, axes[0])
    show_labels(labels[:n], class_names, palette, n, None, axes[1])
    fig.tight_layout()
    return fig


def overlay(image: torch.Tensor, labels: torch.Tensor, palette, alpha: float = 0.45) -> torch.Tensor:
    """Blend a label map's colours over an image (both as (3, H, W) in [-1, 1])."""
    return (1 - alpha) * image.cpu() + alpha * colorize(labels.cpu(), palette)


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_losses(history, keys: Sequence[str] | None = None, window: int = 10, ax=None, title: str = "losses"):
    """Loss curves from a History (or a dict of lists), smoothed with a moving average."""
    losses: Mapping[str, Sequence[float]] = getattr(history, "losses", history)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    for key in keys or list(losses):
        values = smooth(losses[key], window)
        ax.plot(np.arange(len(values)) + (len(losses[key]) - len(values)), values, label=key)
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure


def save(fig, out_dir: str | os.PathLike, name: str, dpi: int = 100) -> Path:
    """Save a figure as ``out_dir/figures/name.png`` (for the report) and return the path."""
    path = Path(out_dir) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
