"""Copy the single-image examples of the SemIA authors' code into nbsyn's data folder.

The official repository (github.com/ddlee-cn/SemIA, MIT) ships its examples in ``example/<name>/``:
``img.png|jpg`` (the source image), ``label.png|jpg`` (its colour label map) and ``cond/*.png`` (target
layouts; ``cond/rec.*`` is the source layout). No network here: clone it yourself, then

    git clone https://github.com/ddlee-cn/SemIA
    python data_scripts/prepare_semia_examples.py --repo SemIA --out data/semia [--names zebra,tree]

The layout is checked (an image, a label map of the same size, at least one target) and copied as is;
``nbsyn.data.analogy_folder.load_analogy_example(out, name)`` reads it, and the notebook takes
``dataset="semia:<name>"``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def check_example(folder: Path) -> list[str]:
    """Problems of one example folder (empty list = fine)."""
    from PIL import Image

    problems = []
    img = [p for p in folder.glob("img.*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    lab = [p for p in folder.glob("label.*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    if not img or not lab:
        return [f"{folder.name}: needs img.png|jpg and label.png|jpg"]
    with Image.open(img[0]) as a, Image.open(lab[0]) as b:
        if a.size != b.size:
            problems.append(f"{folder.name}: image {a.size} and label {b.size} differ in size")
    if not (folder / "cond").is_dir() or not any((folder / "cond").iterdir()):
        problems.append(f"{folder.name}: no target layouts in cond/")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", required=True, type=Path, help="a clone of ddlee-cn/SemIA (holds example/)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--names", help="comma-separated example names (default: all)")
    args = ap.parse_args(argv)
    src = args.repo / "example"
    if not src.is_dir():
        print(f"{src} not found: --repo must point at a clone of ddlee-cn/SemIA", file=sys.stderr)
        return 1
    names = [n.strip() for n in args.names.split(",")] if args.names else sorted(p.name for p in src.iterdir() if p.is_dir())
    missing = [n for n in names if not (src / n).is_dir()]
    if missing:
        print(f"unknown examples {missing}; available: {sorted(p.name for p in src.iterdir() if p.is_dir())}",
              file=sys.stderr)
        return 1
    problems = [p for n in names for p in check_example(src / n)]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copytree(src / n, args.out / n, dirs_exist_ok=True)
    print(f"copied {len(names)} examples to {args.out}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
