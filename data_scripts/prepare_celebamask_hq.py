"""Prepare CelebAMask-HQ for notebook 07's paper preset: compose the 19-class label maps once.

This machine has no internet; download ``CelebAMask-HQ.zip`` elsewhere (github.com/switchablenorms/
CelebAMask-HQ: Google Drive or Baidu links), then unpack and compose (or only check with --root):

    python data_scripts/prepare_celebamask_hq.py --zip CelebAMask-HQ.zip --out data
    python data_scripts/prepare_celebamask_hq.py --root data/CelebAMask-HQ

Composing writes ``CelebAMask-HQ-label/<id>.png`` (uint8 ids 0..18, 512 px) from the binary part masks
in the order of the repository's g_mask.py, later parts over earlier ones. The notebook reads the data
with ``nbsyn.data.celebamask_hq.load(root, split, size)`` (train = ids < 28,000, test = the last 2,000).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from nbsyn.data import celebamask_hq as cm  # noqa: E402
from nbsyn.data.semantic_pairs import extract_zip  # noqa: E402


def compose_all(root: Path, limit: int | None = None) -> int:
    from PIL import Image

    out = root / "CelebAMask-HQ-label"
    out.mkdir(exist_ok=True)
    ids = cm.list_ids(root, "train") + cm.list_ids(root, "test")
    for n, idx in enumerate(ids[:limit] if limit else ids):
        Image.fromarray(cm.compose_label(root, idx).astype(np.uint8)).save(out / f"{idx}.png")
    return min(len(ids), limit or len(ids))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zip", help="CelebAMask-HQ.zip")
    ap.add_argument("--out", default="data", help="folder to unpack into (gets CelebAMask-HQ/)")
    ap.add_argument("--root", help="an already unpacked CelebAMask-HQ folder")
    ap.add_argument("--no-compose", action="store_true", help="only check; do not write CelebAMask-HQ-label/")
    args = ap.parse_args(argv)
    if bool(args.zip) == bool(args.root):
        ap.error("give exactly one of --zip or --root")
    if args.zip:
        print(f"unpacked {extract_zip(args.zip, args.out)} files into {args.out}")
        root = Path(args.out) / cm.ROOT_NAME
    else:
        root = Path(args.root)
    root = cm.find_root(root)
    for split, expected in cm.SPLIT_SIZES.items():
        n = len(cm.list_ids(root, split))
        print(f"{split}: {n} images" + ("" if n == expected else f" (the official split has {expected})"))
    if not args.no_compose:
        print(f"composed {compose_all(root)} label maps into {root / 'CelebAMask-HQ-label'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
