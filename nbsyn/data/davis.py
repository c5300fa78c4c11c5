"""DAVIS videos for SIV-GAN's single-video setting: up to 100 evenly spaced frames of one clip.

SIV-GAN trains on all 60-100 frames of one 2-10 s video [thesis L1389, L1470]. The on-disk format
(DAVIS-2017 trainval 480p) and the frame listing are those of :mod:`nbsyn.data.davis17` (written for
OSMIS); this module only selects and loads a whole clip. ``data_scripts/prepare_davis.py`` exports a
clip to the one-shot folder format (``<out>/<video>/image/*.png``) read by
:func:`nbsyn.data.oneshot_folder.load_oneshot_folder`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nbsyn.data.davis17 import list_frames, list_videos  # noqa: F401  (re-exported)
from nbsyn.data.oneshot_folder import read_rgb


def select_frames(n_available: int, max_frames: int) -> list[int]:
    """Indices of up to ``max_frames`` frames spread evenly over ``n_available`` (first and last kept)."""
    if n_available < 1 or max_frames < 1:
        raise ValueError(f"need at least one frame, got n_available={n_available}, max_frames={max_frames}")
    if n_available <= max_frames:
        return list(range(n_available))
    return [int(round(i)) for i in np.linspace(0, n_available - 1, max_frames)]


def load_davis_video(root: str | Path, video: str, max_frames: int = 100, resolution: str = "480p"):
    """Frames of one DAVIS video as (N, 3, H, W) in [-1, 1], with their frame ids."""
    stems = list_frames(root, video, resolution)
    if not stems:
        raise FileNotFoundError(f"video {video!r} has no .jpg frames under {root}")
    chosen = [stems[i] for i in select_frames(len(stems), max_frames)]
    folder = Path(root) / "JPEGImages" / resolution / video
    frames = torch.stack([read_rgb(folder / f"{stem}.jpg") for stem in chosen])
    return frames, chosen
