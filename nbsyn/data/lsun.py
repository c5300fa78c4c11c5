"""LSUN scene categories (Yu et al. 2015): church_outdoor and bedroom, the paper's 256-px scene data (notebook 07).

Official distribution (``fyu/lsun``: ``python download.py -c church_outdoor``)::

    church_outdoor_train_lmdb.zip -> church_outdoor_train_lmdb/{data.mdb, lock.mdb}   126,227 images
    bedroom_train_lmdb.zip        -> bedroom_train_lmdb/{data.mdb, lock.mdb}           3,033,042 images

Each LMDB value is one encoded image (WebP or JPEG bytes; shorter side 256). Reading the LMDB needs
the ``lmdb`` package (``pip install lmdb``). The repository's ``data.py export`` writes the same
images as files (``<out>/<category>/.../<key>.webp``); ``load`` reads such an exported folder without
``lmdb``. Images are centre-cropped to a square and resized (bicubic) as in StyleGAN2's
``dataset_tool.py`` for LSUN. Unlabelled: the paper uses LSUN only to train the prior and the rearranger.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

CATEGORIES = {"church_outdoor": 126_227, "bedroom": 3_033_042}
IMAGE_SUFFIXES = (".webp", ".jpg", ".jpeg", ".png")


def lmdb_dir(root: str | Path, category: str, split: str = "train") -> Path:
    if category not in CATEGORIES:
        raise ValueError(f"unknown LSUN category {category!r}; choose one of {', '.join(CATEGORIES)}")
    return Path(root) / f"{category}_{split}_lmdb"


def decode(data: bytes, size: int | None) -> torch.Tensor:
    """Encoded image bytes -> (3, size, size) float in [-1, 1], centre-cropped to a square."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        if size is not None and s != size:
            im = im.resize((size, size), Image.BICUBIC)
        return torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 127.5 - 1


def iter_lmdb(path: Path, limit: int | None = None):
    try:
        import lmdb
    except ImportError:
        raise ImportError(f"reading {path} needs the lmdb package (pip install lmdb), or export the images "
                          "with fyu/lsun's `python data.py export` and pass that folder") from None
    env = lmdb.open(str(path), max_readers=1, readonly=True, lock=False, readahead=False, meminit=False)
    with env.begin(write=False) as txn:
        for i, (_, value) in enumerate(txn.cursor()):
            if limit is not None and i >= limit:
                break
            yield value


def list_exported(folder: str | Path) -> list[Path]:
    """Image files of an exported category folder (recursive, sorted)."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def load(root: str | Path, category: str = "church_outdoor", size: int | None = 256, limit: int | None = None,
         split: str = "train") -> torch.Tensor:
    """(N, 3, size, size) images of a category: from ``<root>/<category>_<split>_lmdb`` if present, else
    from an exported folder ``<root>/<category>`` (or ``root`` itself)."""
    lmdb_path = lmdb_dir(root, category, split)
    if lmdb_path.is_dir():
        images = [decode(v, size) for v in iter_lmdb(lmdb_path, limit)]
    else:
        folder = Path(root) / category if (Path(root) / category).is_dir() else Path(root)
        files = list_exported(folder)
        if not files:
            raise FileNotFoundError(f"no LSUN {category} data in {root}: expected {lmdb_path.name}/ (LMDB) or an "
                                    f"exported folder of images (see data_scripts/prepare_lsun.py)")
        images = [decode(p.read_bytes(), size) for p in files[:limit]]
    if size is None and len({tuple(i.shape) for i in images}) > 1:
        raise ValueError("LSUN images differ in size; pass size=... to resize them")
    return torch.stack(images)
