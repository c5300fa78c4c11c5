"""Where pretrained metric weights live: the standard torch hub cache ($TORCH_HOME/hub/checkpoints).

Nothing here downloads. ``data_scripts/fetch_metric_weights.py`` fetches and verifies the files;
the metrics only look for them and say clearly when they are missing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class WeightFile:
    name: str  # what needs it
    filename: str  # torch hub convention: <stem>-<first hex digits of the sha256>.pth
    url: str

    @property
    def hash_prefix(self) -> str:
        return self.filename.rsplit("-", 1)[-1].split(".")[0]


WEIGHTS = {
    "inception_fid": WeightFile(
        "FID / SIFID (pytorch-fid InceptionV3)", "pt_inception-2015-12-05-6726825d.pth",
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"),
    "alexnet": WeightFile(
        "LPIPS (AlexNet backbone)", "alexnet-owt-7be5be79.pth",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg16": WeightFile(
        "LPIPS (VGG backbone) / perceptual loss", "vgg16-397923af.pth",
        "https://download.pytorch.org/models/vgg16-397923af.pth"),
}


def checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def weight_path(key: str) -> Path:
    return checkpoint_dir() / WEIGHTS[key].filename


def is_cached(key: str) -> bool:
    return weight_path(key).is_file()


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, hash_prefix: str) -> bool:
    """torch hub's check: the file's sha256 starts with the hash in its name."""
    return path.is_file() and sha256_of(path).startswith(hash_prefix)


def missing_reason(key: str) -> str:
    from nbsyn.metrics.base import FETCH_HINT

    return f"no {WEIGHTS[key].filename} in {checkpoint_dir()}; {FETCH_HINT}"
