"""Export one DAVIS video (up to 100 evenly spaced frames) for SIV-GAN's single-video setting.

SIV-GAN trains on all 60-100 frames of a 2-10 s clip [thesis L1470]; the 15 DAVIS/YFCC100M videos are
not listed (DAVIS "bus" and "parkour" are named [L1551]). Download DAVIS yourself (no network here):

    https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip
    unzip DAVIS-2017-trainval-480p.zip          # gives DAVIS/{ImageSets,JPEGImages,Annotations}

then

    python data_scripts/prepare_davis.py --davis-root DAVIS --videos bus,parkour --out data/davis

writes ``<out>/<video>/image/00000.png ...`` (the one-shot folder format, frames renumbered in order),
which the notebook takes as ``dataset="davis:<video>"``. The single-image setting uses the middle frame:
``--middle-only``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbsyn.data.davis import list_videos, load_davis_video  # noqa: E402


def export_video(davis_root: Path, video: str, out: Path, max_frames: int, middle_only: bool) -> int:
    import numpy as np
    from PIL import Image

    frames, stems = load_davis_video(davis_root, video, max_frames)
    if middle_only:
        frames = frames[len(frames) // 2:len(frames) // 2 + 1]
    folder = out / video / "image"
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        rgb = ((frame.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{i:05d}.png")
    return len(frames)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--davis-root", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--videos", default="bus,parkour", help="comma-separated names, or 'val' / 'train' for a split")
    ap.add_argument("--max-frames", type=int, default=100)
    ap.add_argument("--middle-only", action="store_true", help="export only the middle frame (single image)")
    args = ap.parse_args(argv)
    videos = list_videos(args.davis_root, args.videos) if args.videos in ("train", "val") else args.videos.split(",")
    for video in videos:
        n = export_video(args.davis_root, video.strip(), args.out, args.max_frames, args.middle_only)
        print(f"{video}: {n} frames -> {args.out / video / 'image'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
