"""Mixed precision for the training steps: bf16 autocast (CPU and CUDA), fp16 + gradient scaling (CUDA).

A preset's ``amp`` setting (False in smoke / cpu, True in gpu / paper) becomes a :class:`Precision`:

    prec = Precision(cfg["amp"], device)      # "off", "bf16" or "fp16"
    with prec.autocast():
        loss = criterion(D(G(z)))             # matmuls / convs in 16 bit, reductions in fp32
    prec.backward(loss)                       # scaled by the GradScaler in fp16
    prec.step(opt)                            # unscales, skips the step on inf/nan gradients (fp16)
    prec.update()                             # once per iteration, after every optimiser step

``amp=True`` means bf16 where the device supports it (CPU; CUDA from Ampere on), else fp16 with a
``torch.amp.GradScaler`` (only on CUDA: fp16 without a scaler under-flows small gradients). Weights,
optimiser states and the EMA stay in fp32; only the forward and backward computations run in 16 bit.

``autocast_step(step_fn, prec)`` runs an unmodified step function under bf16 autocast: enough for
bf16, which needs no loss scaling, and how the benchmark and the tests run every model in bf16.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

MODES = ("off", "bf16", "fp16")


def resolve_mode(amp: bool | str | None, device: torch.device | str = "cpu") -> str:
    """False / None / "off" -> "off"; True -> "bf16" (or "fp16" on a CUDA device without bf16)."""
    dev = torch.device(device)
    if amp in (False, None, "off"):
        return "off"
    if amp is True:
        if dev.type == "cuda" and not torch.cuda.is_bf16_supported():
            return "fp16"
        return "bf16"
    if amp not in MODES:
        raise ValueError(f"unknown amp setting {amp!r}; choose True, False or one of {', '.join(MODES)}")
    if amp == "fp16" and dev.type != "cuda":
        raise ValueError("amp='fp16' needs a CUDA device (use 'bf16' on the CPU)")
    return amp


class Precision:
    """Autocast context and (fp16) gradient scaling for one training loop."""

    def __init__(self, amp: bool | str | None = False, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.mode = resolve_mode(amp, self.device)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.mode)
        self.scaler = torch.amp.GradScaler("cuda") if self.mode == "fp16" else None

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()

    def update(self) -> None:
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def __repr__(self) -> str:
        return f"Precision({self.mode}, {self.device})"


def autocast_step(step_fn: Callable[[int], dict], prec: Precision) -> Callable[[int], dict]:
    """``step_fn`` run under ``prec``'s autocast (bf16 or off; fp16 needs a scaler-aware step)."""
    if prec.mode == "fp16":
        raise ValueError("fp16 needs gradient scaling inside the step (Precision.backward/step); "
                         "wrap a step only in bf16")
    if not prec.enabled:
        return step_fn

    def step(i: int) -> dict:
        with prec.autocast():
            return step_fn(i)

    return step
