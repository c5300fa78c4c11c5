"""Prepare COCO-Stuff 164k for the OASIS notebook (thesis L1112: 256 x 256, 182 classes + unlabeled).

Download elsewhere (github.com/nightrome/cocostuff):

    http://images.cocodataset.org/zips/train2017.zip                          (18 GB)
    http://images.cocodataset.org/zips/val2017.zip                            (1 GB)
    http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/stuffthingmaps_trainval2017.zip

then unpack them in the official layout (images/{train,val}2017, annotations/{train,val}2017) and
check it (or only check with --root):

    python data_scripts/prepare_cocostuff.py --images train2017.zip val2017.zip \
        --stuffthingmaps stuffthingmaps_trainval2017.zip --out data/cocostuff
    python data_scripts/prepare_cocostuff.py --root data/cocostuff

Label PNGs hold 0..181 (COCO id - 1) and 255 = unlabeled; the reader shifts them to 1..182 with
0 = unlabeled (the don't-care class), as the OASIS code does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbsyn.data import cocostuff  # noqa: E402
from nbsyn.data.semantic_pairs import extract_zip, summarise  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="*", default=[], help="train2017.zip and/or val2017.zip")
    ap.add_argument("--stuffthingmaps", help="stuffthingmaps_trainval2017.zip")
    ap.add_argument("--out", default="data/cocostuff")
    ap.add_argument("--root", help="check an already unpacked folder (with images/ and annotations/)")
    args = ap.parse_args(argv)
    if bool(args.images or args.stuffthingmaps) == bool(args.root):
        ap.error("give the archives (--images and --stuffthingmaps) or --root, not both")
    if not args.root:
        if not (args.images and args.stuffthingmaps):
            ap.error("need both --images and --stuffthingmaps")
        out = Path(args.out)
        for archive in args.images:  # train2017.zip holds train2017/*.jpg
            print(f"{archive}: unpacked {extract_zip(archive, out / 'images')} files")
        # stuffthingmaps_trainval2017.zip holds train2017/*.png and val2017/*.png
        print(f"{args.stuffthingmaps}: unpacked {extract_zip(args.stuffthingmaps, out / 'annotations')} files")
        root = out
    else:
        root = Path(args.root)
    root = cocostuff.find_root(root)
    print(f"COCO-Stuff at {root}: {cocostuff.NUM_CLASSES} label channels (0 = unlabeled, the don't-care class)")
    splits = [s for s, folder in cocostuff.SPLITS.items() if (root / "images" / folder).is_dir()]
    summarise(cocostuff, root, splits)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
