"""Export single training images from Places365 for SIV-GAN's single-image setting.

The thesis follows SinGAN and evaluates on 50 images of Places [L1470]; the list of those 50 is not
published in the thesis. Download Places365 yourself (no network here):

    http://data.csail.mit.edu/places/places365/val_256.tar        (about 500 MB, 36 500 images)
    http://data.csail.mit.edu/places/places365/filelist_places365-standard.tar
    tar xf val_256.tar; tar xf filelist_places365-standard.tar

which gives ``val_256/Places365_val_00000001.jpg ...``, ``places365_val.txt`` ("<file> <class id>" per
line) and ``categories_places365.txt`` ("/a/airfield 0" per line). Then

    python data_scripts/prepare_places_single.py --places-root . --out data/places_single \
        [--list my50.txt | --categories mountain,lake/natural --n 50]

writes ``<out>/image/<stem>.jpg`` (the one-shot folder format of nbsyn.data.oneshot_folder); the notebook
takes ``dataset="places_single"`` (first image) or ``"places_single:<stem>"``. Without ``--list`` the
first ``--n`` validation images of the given categories are taken, in file order (deterministic).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def read_categories(root: Path) -> dict[int, str]:
    path = root / "categories_places365.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (from filelist_places365-standard.tar)")
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            name, idx = line.rsplit(maxsplit=1)
            out[int(idx)] = name.lstrip("/")[2:] if name.startswith("/") else name
    return out


def read_val_list(root: Path) -> list[tuple[str, int]]:
    path = root / "places365_val.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (from filelist_places365-standard.tar)")
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            name, idx = line.split()
            rows.append((name, int(idx)))
    return rows


def choose(root: Path, names: list[str] | None, categories: list[str] | None, n: int) -> list[str]:
    """File names to export: an explicit list, or the first n of the given categories (all if None)."""
    if names:
        return names[:n]
    cats = read_categories(root)
    wanted = None
    if categories:
        unknown = [c for c in categories if c not in cats.values()]
        if unknown:
            raise ValueError(f"unknown Places365 categories {unknown}; e.g. {', '.join(list(cats.values())[:5])}")
        wanted = {i for i, c in cats.items() if c in categories}
    rows = [name for name, idx in read_val_list(root) if wanted is None or idx in wanted]
    return rows[:n]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--places-root", required=True, type=Path, help="folder with val_256/ and the file lists")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--list", type=Path, help="a text file with one val_256 file name per line")
    ap.add_argument("--categories", help="comma-separated Places365 categories, e.g. mountain,lake/natural")
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args(argv)
    names = None
    if args.list:
        names = [line.strip() for line in args.list.read_text().splitlines() if line.strip()]
    cats = [c.strip() for c in args.categories.split(",")] if args.categories else None
    chosen = choose(args.places_root, names, cats, args.n)
    if not chosen:
        print("no images selected", file=sys.stderr)
        return 1
    (args.out / "image").mkdir(parents=True, exist_ok=True)
    for name in chosen:
        src = args.places_root / "val_256" / name
        if not src.is_file():
            raise FileNotFoundError(f"{src} is missing")
        shutil.copyfile(src, args.out / "image" / name)
    print(f"wrote {len(chosen)} images to {args.out / 'image'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
