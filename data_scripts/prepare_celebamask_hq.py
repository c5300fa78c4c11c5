"""Prepare CelebAMask-HQ for notebook 05's paper preset (Endo & Kanamori 2021, L174), in the official
code's layout ``<out>/CelebAMask-HQ/{train,test}/{images,labels}``.

This machine has no internet; get the original release (github.com/switchablenorms/CelebAMask-HQ,
``CelebAMask-HQ.zip``) elsewhere, unpack it, then:

    python data_scripts/prepare_celebamask_hq.py --release CelebAMask-HQ --out data [--test-list test.txt]

The release has ``CelebA-HQ-img/<i>.jpg`` (30,000 images, 1024 px) and per-part binary masks
``CelebAMask-HQ-mask-anno/<i // 2000>/<i:05d>_<part>.png`` (512 px). The parts are combined into one
index map in the 19-class order pSp and SEAN use (later classes overwrite earlier ones, as the
release's own script does). The paper uses SEAN's 28,000 / 2,000 split (L174): pass SEAN's test image
indices (one per line) with ``--test-list``; without it the last 2,000 indices are the test split and
the script says that this is NOT SEAN's list. Labels are written as mode-L PNGs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbsyn.data import fewshot_smis  # noqa: E402

PARTS = fewshot_smis.CELEBAMASK_CLASSES[1:]  # class i + 1 = PARTS[i]; 0 = background
FOLDER_SIZE = 2000  # masks of image i are in folder i // 2000


def combine_parts(anno: Path, index: int) -> np.ndarray:
    """One (H, W) uint8 index map from the binary part masks of image ``index``."""
    from PIL import Image

    folder = anno / str(index // FOLDER_SIZE)
    labels = None
    for cls, part in enumerate(PARTS, start=1):
        path = folder / f"{index:05d}_{part}.png"
        if not path.is_file():
            continue
        with Image.open(path) as im:
            mask = np.array(im.convert("L")) > 0
        if labels is None:
            labels = np.zeros(mask.shape, dtype=np.uint8)
        labels[mask] = cls
    if labels is None:
        raise FileNotFoundError(f"no part masks for image {index} in {folder}")
    return labels


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--release", required=True, help="the unpacked CelebAMask-HQ release folder")
    ap.add_argument("--out", default="data", help="data root (gets CelebAMask-HQ/{train,test}/...)")
    ap.add_argument("--test-list", help="SEAN's test split: image indices, one per line")
    ap.add_argument("--limit", type=int, help="only the first N images (for trying the script)")
    args = ap.parse_args(argv)
    release = Path(args.release)
    img_dir, anno = release / "CelebA-HQ-img", release / "CelebAMask-HQ-mask-anno"
    if not img_dir.is_dir() or not anno.is_dir():
        raise SystemExit(f"{release} is not the CelebAMask-HQ release: expected CelebA-HQ-img/ and CelebAMask-HQ-mask-anno/")
    indices = sorted(int(p.stem) for p in img_dir.glob("*.jpg"))[: args.limit]
    if args.test_list:
        test = {int(line) for line in Path(args.test_list).read_text().split()}
    else:
        test = set(indices[-min(2000, len(indices) // 15 or 1):])
        print("WARNING: no --test-list: the last indices are the test split; this is NOT SEAN's split (L174)")
    from PIL import Image

    counts = {"train": 0, "test": 0}
    for i in indices:
        split = "test" if i in test else "train"
        base = Path(args.out) / "CelebAMask-HQ" / split
        (base / "images").mkdir(parents=True, exist_ok=True)
        (base / "labels").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(img_dir / f"{i}.jpg", base / "images" / f"{i:05d}.jpg")
        Image.fromarray(combine_parts(anno, i), mode="L").save(base / "labels" / f"{i:05d}.png")
        counts[split] += 1
    for split, n in counts.items():
        expected = fewshot_smis.DATASETS["celebamask_hq"]["split_sizes"][split]
        note = "" if n == expected else f" (the paper's split has {expected})"
        print(f"{split}: {n} pairs{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
