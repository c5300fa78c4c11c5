"""Export COCO one-shot image-mask pairs: COCO-20^i support samples [thesis L1822, L1833] or chosen images.

The thesis shows OSMIS on COCO samples [L1756] and, for one-shot segmentation with RePRI, trains one
OSMIS per support pair: 5 random support images per test class of each COCO-20^i fold (100 per fold).
COCO cannot be downloaded from this script's machine; fetch it yourself:

    http://images.cocodataset.org/zips/val2017.zip
    http://images.cocodataset.org/annotations/annotations_trainval2017.zip

then, for the support pairs of fold 0 (binary masks of the support class),

    python data_scripts/prepare_coco_oneshot.py --coco-root coco --fold 0 --out data/coco20i_fold0

or for given images with class-wise masks (the qualitative setting),

    python data_scripts/prepare_coco_oneshot.py --coco-root coco --image-ids 139 285 --mode class --out data/coco_pairs

Each pair goes to ``<out>/<name>/image/<id>.png`` + palette ``mask/<id>.png``, read by
``nbsyn.data.davis17.load_prepared_pair`` (``dataset="oneshot:<out>/<name>"`` in the notebook); a
``manifest.json`` lists the pairs. ``--max-side`` resizes (the thesis "closely fits" each image's
resolution [L1835]; the official code caps the long side, e.g. 330).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbsyn.data import coco_oneshot, davis17  # noqa: E402


def fit_size(h: int, w: int, max_side: int):
    if not max_side or max(h, w) <= max_side:
        return None
    scale = max_side / max(h, w)
    return (max(8, round(h * scale)), max(8, round(w * scale)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coco-root", required=True, help="folder with annotations/ and <split>/ images")
    ap.add_argument("--split", default="val2017")
    ap.add_argument("--out", required=True)
    ap.add_argument("--fold", type=int, help="COCO-20^i fold (0-3): export its support samples")
    ap.add_argument("--fold-convention", default="interleaved", choices=coco_oneshot.FOLD_CONVENTIONS)
    ap.add_argument("--per-class", type=int, default=5, help="support samples per test class [L1833]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-ids", type=int, nargs="*", help="export these images instead of a fold")
    ap.add_argument("--mode", default=None, choices=coco_oneshot.MASK_MODES,
                    help="mask type (default: binary for --fold, class for --image-ids)")
    ap.add_argument("--max-side", type=int, default=0, help="resize so the long side is at most this (0 = keep)")
    args = ap.parse_args(argv)
    if (args.fold is None) == (not args.image_ids):
        ap.error("give exactly one of --fold or --image-ids")

    root = Path(args.coco_root)
    data = coco_oneshot.load_instances(root / "annotations" / f"instances_{args.split}.json")
    if args.fold is not None:
        classes = coco_oneshot.fold_classes(data, args.fold, args.fold_convention)
        pairs = coco_oneshot.support_samples(data, classes, args.per_class, args.seed)
        mode = args.mode or "binary"
    else:
        pairs = [(i, None) for i in args.image_ids]
        mode = args.mode or "class"
    manifest = []
    for image_id, category_id in pairs:
        image, labels, names = coco_oneshot.oneshot_pair(data, root / args.split, image_id, category_id, mode)
        image, labels = davis17.resize_pair(image, labels, fit_size(*labels.shape, args.max_side))
        cat = data["_categories"][category_id]["name"].replace(" ", "_") if category_id else "image"
        name = f"{cat}_{image_id:012d}"
        davis17.save_prepared_pair(Path(args.out) / name, f"{image_id:012d}", image, labels)
        manifest.append({"name": name, "image_id": image_id, "category_id": category_id, "mode": mode,
                         "class_names": names, "size": list(labels.shape)})
        print(f"{name}: {tuple(labels.shape)}, classes {names}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {len(manifest)} one-shot pairs to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
