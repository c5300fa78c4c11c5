#!/usr/bin/env python
"""Fetch the pretrained weights the metrics need into the torch hub cache, and verify them.

    python data_scripts/fetch_metric_weights.py            # all: Inception (FID/SIFID), AlexNet, VGG16 (LPIPS)
    python data_scripts/fetch_metric_weights.py alexnet    # one of them
    python data_scripts/fetch_metric_weights.py --check    # only report what is cached and valid

Files go to $TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints), where
pytorch-fid, lpips and torchvision look for them. Each file name carries the first hex digits of
its SHA-256 (the torch hub convention); a download whose hash does not match is deleted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from nbsyn.metrics.weights import WEIGHTS, checkpoint_dir, verify  # noqa: E402


def fetch(key: str, dest_dir: Path | None = None, url: str | None = None) -> Path:
    """Download ``WEIGHTS[key]`` (or ``url``) into ``dest_dir`` and verify its hash; returns the path."""
    spec = WEIGHTS[key]
    dest_dir = Path(dest_dir or checkpoint_dir())
    dest = dest_dir / spec.filename
    if verify(dest, spec.hash_prefix):
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest_dir, delete=False, suffix=".part") as tmp:
        with urllib.request.urlopen(url or spec.url) as response:
            shutil.copyfileobj(response, tmp)
    part = Path(tmp.name)
    if not verify(part, spec.hash_prefix):
        part.unlink()
        raise RuntimeError(f"{spec.filename}: downloaded file's SHA-256 does not start with {spec.hash_prefix}; deleted")
    part.replace(dest)
    return dest


def status(key: str, dest_dir: Path | None = None) -> str:
    spec = WEIGHTS[key]
    path = Path(dest_dir or checkpoint_dir()) / spec.filename
    if not path.exists():
        return "missing"
    return "ok" if verify(path, spec.hash_prefix) else "corrupt (hash mismatch)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("keys", nargs="*", metavar="NAME", help=f"which weights: {', '.join(WEIGHTS)} (default: all)")
    parser.add_argument("--check", action="store_true", help="only report the cache's state")
    args = parser.parse_args(argv)
    unknown = [k for k in args.keys if k not in WEIGHTS]
    if unknown:
        parser.error(f"unknown weights {unknown}; choose from {', '.join(WEIGHTS)}")
    failed = 0
    for key in args.keys or list(WEIGHTS):
        if not args.check:
            try:
                fetch(key)
            except Exception as exc:  # report every file, then fail
                print(f"{key}: download failed: {exc}")
                failed += 1
                continue
        state = status(key)
        print(f"{key:14s} {state:24s} {checkpoint_dir() / WEIGHTS[key].filename}  ({WEIGHTS[key].name})")
        failed += state != "ok"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
