"""Export the OSMIS training pairs of DAVIS-2017: the first frame and mask of every video of a split.

The thesis trains one OSMIS model per video of the DAVIS-17 validation split (30 videos) on its first
frame and object mask at 640x384 [thesis L1756]. DAVIS cannot be downloaded from this script's
machine; fetch it yourself:

    https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip   (about 800 MB)
    unzip DAVIS-2017-trainval-480p.zip        # gives DAVIS/{ImageSets,JPEGImages,Annotations}

then run

    python data_scripts/prepare_davis17_first_frames.py --davis-root DAVIS --out data/davis17_first_frames

which writes ``<out>/<video>/image/00000.png`` and a palette ``<out>/<video>/mask/00000.png`` (ids 0..K),
the one-shot folder layout that ``nbsyn.data.davis17.load_prepared_pair`` reads and the notebook takes
as ``dataset="oneshot:<out>/<video>"``. ``--size`` 0 keeps the original 854x480.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbsyn.data import davis17  # noqa: E402


def parse_size(text: str):
    if text in ("0", "none", "original"):
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x384 (width x height), got {text!r}") from None
    return (h, w)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--davis-root", required=True, help="the extracted DAVIS/ folder")
    ap.add_argument("--out", required=True, help="output folder (one sub-folder per video)")
    ap.add_argument("--split", default="val", help="ImageSets/2017/<split>.txt (default val: 30 videos)")
    ap.add_argument("--size", type=parse_size, default=(384, 640), help="W x H, default 640x384 [L1756]")
    args = ap.parse_args(argv)

    videos = davis17.list_videos(args.davis_root, args.split)
    out = Path(args.out)
    for video in videos:
        image, labels, _ = davis17.load_first_frame(args.davis_root, video, size=args.size)
        stem = davis17.list_frames(args.davis_root, video)[0]
        davis17.save_prepared_pair(out / video, stem, image, labels)
        print(f"{video}: {tuple(image.shape[-2:])}, {davis17.num_objects(labels)} object(s)")
    print(f"wrote {len(videos)} one-shot pairs to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
