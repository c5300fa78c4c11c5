"""Prepare LSUN church_outdoor / bedroom for notebook 07's paper preset (check, optionally export).

This machine has no internet; fetch the LMDB archives elsewhere with fyu/lsun's
``python download.py -c church_outdoor`` (-> church_outdoor_train_lmdb.zip, 126,227 images) or
``-c bedroom`` (≈43 GB), then:

    python data_scripts/prepare_lsun.py --zip church_outdoor_train_lmdb.zip --out data/lsun
    python data_scripts/prepare_lsun.py --root data/lsun --category church_outdoor [--export data/lsun/church_outdoor]

Reading the LMDB needs ``pip install lmdb``; ``--export`` writes the images as files, which
``nbsyn.data.lsun.load`` reads without lmdb.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbsyn.data import lsun  # noqa: E402
from nbsyn.data.semantic_pairs import extract_zip  # noqa: E402


def export(root: Path, category: str, dest: Path, limit: int | None = None) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    for n, value in enumerate(lsun.iter_lmdb(lsun.lmdb_dir(root, category), limit), start=1):
        (dest / f"{n - 1:07d}.webp").write_bytes(value)
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zip", help="<category>_train_lmdb.zip")
    ap.add_argument("--out", default="data/lsun")
    ap.add_argument("--root", help="folder holding <category>_train_lmdb/ or an exported <category>/")
    ap.add_argument("--category", default="church_outdoor", choices=list(lsun.CATEGORIES))
    ap.add_argument("--export", type=Path, help="write the LMDB's images as files into this folder")
    ap.add_argument("--limit", type=int)
    args = ap.parse_args(argv)
    if bool(args.zip) == bool(args.root):
        ap.error("give exactly one of --zip or --root")
    root = Path(args.root or args.out)
    if args.zip:
        print(f"unpacked {extract_zip(args.zip, root)} files into {root}")
    if args.export:
        print(f"exported {export(root, args.category, args.export, args.limit)} images to {args.export}")
    images = lsun.load(root, args.category, size=256, limit=4)
    print(f"LSUN {args.category} at {root}: readable, first images {tuple(images.shape)} "
          f"(the official train split has {lsun.CATEGORIES[args.category]:,})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
