"""Prepare ADE20K (SceneParsing, ADEChallengeData2016) for the OASIS notebook (thesis L1112, L1119).

This machine has no internet; download the archive elsewhere:

    http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip   (~923 MB)

then unpack and check it (or only check an unpacked copy with --root):

    python data_scripts/prepare_ade20k.py --zip ADEChallengeData2016.zip --out data
    python data_scripts/prepare_ade20k.py --root data/ADEChallengeData2016

The notebook reads it with ``nbsyn.data.ade20k.load(root, split, size)``; run it with
``-p preset paper -p dataset ade20k`` and ``NBSYN_DATA=data`` in the environment.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbsyn.data import ade20k  # noqa: E402
from nbsyn.data.semantic_pairs import extract_zip, summarise  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zip", help=f"ADEChallengeData2016.zip ({ade20k.URL})")
    ap.add_argument("--out", default="data", help="folder to unpack into (gets ADEChallengeData2016/)")
    ap.add_argument("--root", help="check an already unpacked ADEChallengeData2016 folder instead")
    args = ap.parse_args(argv)
    if bool(args.zip) == bool(args.root):
        ap.error("give exactly one of --zip or --root")
    if args.zip:
        n = extract_zip(args.zip, args.out)
        print(f"unpacked {n} files into {args.out}")
        root = Path(args.out) / ade20k.ROOT_NAME
    else:
        root = Path(args.root)
    root = ade20k.find_root(root)
    names = ade20k.read_class_names(root)
    print(f"ADE20K at {root}: {len(names)} label channels (0 = other, the don't-care class)")
    summarise(ade20k, root, ("train", "val"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
