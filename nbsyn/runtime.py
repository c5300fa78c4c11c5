"""Reproducible set-up: seeds, device, thread count and a banner of versions."""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch

DEFAULT_THREADS = 2


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda > mps > cpu; an explicit name must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    valid = ("auto", "cpu", "cuda", "mps")
    if name.split(":")[0] not in valid:
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(valid)}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    return torch.device(name)


def default_threads() -> int:
    """2 threads (or 1 on a single-core machine), whatever the machine's load.

    The thread count changes the order of floating-point sums inside convolutions, so it is part of
    what decides a run's numbers: a fixed default keeps results identical on an idle and a busy
    machine (a busy one is only slower; ``OMP_WAIT_POLICY=PASSIVE``, set by run.sh and test.sh,
    stops waiting threads from spinning). ``NBSYN_THREADS`` overrides it.
    """
    return min(DEFAULT_THREADS, os.cpu_count() or 1)


def set_threads(threads: int | None = None) -> int:
    """Fix the CPU thread count: ``threads``, else ``NBSYN_THREADS``, else ``default_threads()``."""
    n = threads or int(os.environ.get("NBSYN_THREADS", 0)) or default_threads()
    torch.set_num_threads(n)
    return n


def banner(device: torch.device | None = None) -> str:
    parts = [
        f"python {platform.python_version()}",
        f"torch {torch.__version__}",
        f"numpy {np.__version__}",
        f"threads {torch.get_num_threads()}",
    ]
    if device is not None:
        parts.append(f"device {device}")
        if device.type == "cuda":
            parts.append(torch.cuda.get_device_name(device))
    return " | ".join(parts)


def setup(seed: int, device: str = "auto", threads: int | None = None, verbose: bool = True) -> torch.device:
    """Seed everything, fix the thread count, pick the device and print a banner."""
    dev = pick_device(device)
    set_threads(threads)
    seed_everything(seed)
    if verbose:
        print(banner(dev))
    return dev
