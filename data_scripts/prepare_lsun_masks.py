"""Arrange LSUN church / car images with their semantic masks for notebook 05's paper preset, in the
official code's layout ``<out>/{LSUNchurch,LSUNcar}/{train,test}/{images,labels}``.

The paper's church masks come from the CSAIL ADE20K scene parser (ResNet101 + UPerNet101, L174),
run elsewhere (its weights are a separate download, not available offline); the code adds an
index-0 "unknown" channel, so parser outputs 0..149 become 1..150 (``--shift 1``). The paper uses the
300 LSUN church validation images as its test set and 1,000 unlisted training images (L174).

    python data_scripts/prepare_lsun_masks.py --dataset lsun_church --split test \
        --images church_val_jpgs/ --masks parser_outputs/ --shift 1 --out data

Images and masks are matched by file stem; every mask must be a single-channel id PNG whose ids fit
the dataset's classes (151 for church, 5 for car).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbsyn.data import fewshot_smis  # noqa: E402
from nbsyn.data.semantic_pairs import read_ids  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, choices=["lsun_church", "lsun_car"])
    ap.add_argument("--split", required=True, choices=list(fewshot_smis.SPLITS))
    ap.add_argument("--images", required=True)
    ap.add_argument("--masks", required=True)
    ap.add_argument("--shift", type=int, default=0, help="added to every mask id (1 for raw ADE20K parser output)")
    ap.add_argument("--out", default="data")
    args = ap.parse_args(argv)
    from PIL import Image

    num_classes = fewshot_smis.DATASETS[args.dataset]["num_classes"]
    masks = {p.stem: p for p in Path(args.masks).glob("*.png")}
    images = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in fewshot_smis.IMAGE_SUFFIXES)
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        raise SystemExit(f"{len(missing)} images have no mask, e.g. {missing[:3]}")
    base = fewshot_smis.split_dir(args.dataset, args.split, args.out)
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "labels").mkdir(parents=True, exist_ok=True)
    for image in images:
        ids = read_ids(masks[image.stem]) + args.shift
        if ids.min() < 0 or ids.max() >= num_classes:
            raise SystemExit(f"{masks[image.stem]}: ids {int(ids.min())}..{int(ids.max())} do not fit {num_classes} "
                             "classes (raw ADE20K parser output needs --shift 1)")
        shutil.copyfile(image, base / "images" / image.name)
        Image.fromarray(ids.astype(np.uint8), mode="L").save(base / "labels" / f"{image.stem}.png")
    expected = fewshot_smis.DATASETS[args.dataset]["split_sizes"][args.split]
    note = "" if expected in (None, len(images)) else f" (the paper used {expected})"
    print(f"{args.dataset} {args.split}: {len(images)} pairs in {base}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
