"""A plain training loop: progress bar, EMA, checkpoint/resume, time budget, NaN guard.

The loop knows nothing about GANs. A notebook writes ``step_fn(step) -> {"loss_d": ..., ...}``
that performs one optimisation step, and ``fit`` calls it ``steps`` times.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; training stopped, the last good checkpoint is kept."""


class EMA:
    """Exponential moving average of a model's weights: theta_ema <- d * theta_ema + (1 - d) * theta.

    Buffers (e.g. batch-norm statistics) are copied, not averaged. ``module`` is the averaged copy,
    in eval mode and without gradients.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for p_ema, p in zip(self.module.parameters(), model.parameters()):
            p_ema.lerp_(p.detach(), 1.0 - self.decay)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)

    @torch.no_grad()
    def recalibrate_bn(self, forward: Callable[[nn.Module], Any], n_batches: int) -> int:
        """Re-estimate batch-norm running statistics of the EMA model.

        The averaged weights do not match the statistics copied from the live model, so (as the
        official OASIS code does) run ``n_batches`` forward passes in train mode with a cumulative
        average. ``forward(module)`` runs one batch. Returns the number of BN layers reset.
        """
        norms = [m for m in self.module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return 0
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the batches below
        self.module.train()
        for _ in range(n_batches):
            forward(self.module)
        self.module.eval()
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        return len(norms)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "module": self.module.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.decay = state["decay"]
        self.module.load_state_dict(state["module"])


class GeneratorState:
    """``state_dict`` / ``load_state_dict`` for a ``torch.Generator``, so that ``fit`` checkpoints it."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["state"])


@dataclass
class History:
    """What ``fit`` recorded: losses per step, how far it got, and why it stopped."""

    losses: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    stopped_by_budget: bool = False

    def record(self, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.losses.setdefault(key, []).append(float(value))
        self.steps += 1

    def last(self, window: int = 1) -> dict[str, float]:
        return {k: float(np.mean(v[-window:])) for k, v in self.losses.items() if v}

    def state_dict(self) -> dict[str, Any]:
        return {"losses": self.losses, "steps": self.steps, "seconds": self.seconds}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.losses = {k: list(v) for k, v in state["losses"].items()}
        self.steps = state["steps"]
        self.seconds = state["seconds"]


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, objects: Mapping[str, Any], history: History) -> None:
    """Write atomically (temp file + rename) so that an interrupted save never loses the old one.

    In a data-parallel run (``nbsyn.distributed``) only rank 0 writes; the other processes skip."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "objects": {name: obj.state_dict() for name, obj in objects.items()},
        "history": history.state_dict(),
        "rng": rng_state(),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, objects: Mapping[str, Any], history: History) -> None:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    missing = sorted(set(objects) - set(payload["objects"]))
    if missing:
        raise ValueError(f"checkpoint {path} has no state for {missing}; it holds {sorted(payload['objects'])}")
    for name, obj in objects.items():
        obj.load_state_dict(payload["objects"][name])
    history.load_state_dict(payload["history"])
    set_rng_state(payload["rng"])


def fit(
    step_fn: Callable[[int], Mapping[str, float]],
    steps: int,
    objects: Mapping[str, Any],
    *,
    ckpt_path: str | os.PathLike | None = None,
    ckpt_every: int = 0,
    resume: bool = True,
    time_budget_s: float | None = None,
    desc: str = "train",
    callback: Callable[[int, History], None] | None = None,
    callback_every: int = 0,
    progress: bool = True,
) -> History:
    """Run ``step_fn(step)`` for ``steps`` steps and return the recorded History.

    - resumes from ``ckpt_path`` if it exists (and ``resume``), bit-identically on CPU: the
      checkpoint holds every object's state, the history and all RNG states;
    - saves a checkpoint every ``ckpt_every`` steps and at the end;
    - stops early once ``time_budget_s`` seconds of training have passed (``stopped_by_budget``);
    - raises NonFiniteLossError on a NaN/inf loss, without overwriting the last good checkpoint.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    history = History()
    if ckpt_path is not None and resume and Path(ckpt_path).exists():
        load_checkpoint(ckpt_path, objects, history)
    start = time.perf_counter() - history.seconds
    bar = tqdm(total=steps, initial=history.steps, desc=desc, disable=not progress, mininterval=1.0)
    try:
        while history.steps < steps:
            if time_budget_s is not None and time.perf_counter() - start >= time_budget_s:
                history.stopped_by_budget = True
                break
            step = history.steps
            values = {k: float(v) for k, v in step_fn(step).items()}
            bad = {k: v for k, v in values.items() if not math.isfinite(v)}
            if bad:
                kept = f"; the last good checkpoint is {ckpt_path}" if ckpt_path and Path(ckpt_path).exists() else ""
                raise NonFiniteLossError(f"non-finite loss at step {step}: {bad}{kept}")
            history.record(values)
            history.seconds = time.perf_counter() - start
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix({k: f"{v:.3f}" for k, v in history.last(10).items()})
            if callback is not None and callback_every and history.steps % callback_every == 0:
                callback(history.steps, history)
            if ckpt_path is not None and ckpt_every and history.steps % ckpt_every == 0:
                save_checkpoint(ckpt_path, objects, history)
    finally:
        bar.close()
    history.seconds = time.perf_counter() - start
    if ckpt_path is not None:
        save_checkpoint(ckpt_path, objects, history)
    return history
