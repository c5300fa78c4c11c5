"""Prepare Cityscapes (fine annotations) for the OASIS notebook (thesis L1112: 256 x 512, 35 classes).

Cityscapes needs a (free) login; download elsewhere from https://www.cityscapes-dataset.com/downloads/:

    leftImg8bit_trainvaltest.zip   (11 GB)    gtFine_trainvaltest.zip   (241 MB)

then unpack both into one folder and check it (or only check with --root):

    python data_scripts/prepare_cityscapes.py --zips leftImg8bit_trainvaltest.zip gtFine_trainvaltest.zip --out data/cityscapes
    python data_scripts/prepare_cityscapes.py --root data/cityscapes

The reader uses the ``*_gtFine_labelIds.png`` files (ids 0..33, 0 = unlabeled) and ignores the
colour, instance and polygon files; the notebook reads it with ``nbsyn.data.cityscapes.load``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbsyn.data import cityscapes  # noqa: E402
from nbsyn.data.semantic_pairs import extract_zip, summarise  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zips", nargs="+", help="leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip")
    ap.add_argument("--out", default="data/cityscapes")
    ap.add_argument("--root", help="check an already unpacked folder (with leftImg8bit/ and gtFine/)")
    args = ap.parse_args(argv)
    if bool(args.zips) == bool(args.root):
        ap.error("give exactly one of --zips or --root")
    if args.zips:
        for archive in args.zips:
            print(f"{archive}: unpacked {extract_zip(archive, args.out)} files into {args.out}")
        root = Path(args.out)
    else:
        root = Path(args.root)
    root = cityscapes.find_root(root)
    print(f"Cityscapes at {root}: {cityscapes.NUM_CLASSES} label channels (0 = unlabeled, the don't-care class)")
    summarise(cityscapes, root, ("train", "val"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
