"""Data-parallel training helpers: process group, synchronised batch norm, rank-0-only side effects.

The scheme (used by ``nbsyn.models.oasis.variant_trainer(..., distributed=True)`` and
``python -m nbsyn.launch``): every process draws the SAME global batch from an equally seeded stream
(and the same noise), computes the batch-level quantities that need the whole batch (OASIS's class
weights alpha_c, LabelMix's per-class coins) on it, and keeps its own equal slice for the forward
and backward passes. DistributedDataParallel averages the gradients, so with losses that are means
over the batch, one step equals a single-process step on the global batch (tests/test_distributed.py).
Batch norm must then see the global batch too: :class:`SyncBatchNorm2d`.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True in a single process and on rank 0: the only process that writes checkpoints and figures."""
    return rank() == 0


def init_from_env(device: str = "auto") -> torch.device:
    """Join the process group that ``torchrun`` describes (RANK, WORLD_SIZE, MASTER_ADDR, ...).

    NCCL and one GPU per process (LOCAL_RANK) with CUDA; gloo on the CPU.
    """
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if not is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def shard(batch: int) -> slice:
    """This process's slice of a global batch of ``batch`` items (equal slices: the batch must divide)."""
    world = world_size()
    if batch % world:
        raise ValueError(f"global batch {batch} must be divisible by the number of processes {world}")
    b = batch // world
    return slice(rank() * b, (rank() + 1) * b)


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the module itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of every process's copy is the sum of the incoming gradients
    (each process's loss depends on the sum), which DDP's gradient averaging then matches."""

    @staticmethod
    def forward(ctx, t):
        out = t.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(t)


class SyncBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training-mode statistics are those of the global batch over all processes.

    Same parameters and buffers as ``nn.BatchNorm2d`` (checkpoints load into either). Outside a
    process group of more than one process, and in eval mode, it is plain batch norm. Works with
    gloo (CPU) and NCCL (``nn.SyncBatchNorm`` refuses CPU tensors). Two all-reduces per call: the
    mean, then the centred second moment (numerically the two-pass formula).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_initialized() and world_size() > 1):
            return super().forward(x)
        dims = (0, 2, 3)
        n = torch.tensor([float(x.numel() // x.shape[1])], device=x.device, dtype=torch.float32)
        dist.all_reduce(n)
        total = n.item()
        xf = x.float()
        mean = _all_reduce(xf.sum(dims)) / total
        centred = xf - mean[None, :, None, None]
        var = _all_reduce(centred.square().sum(dims)) / total  # biased, as batch norm normalises with
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var.detach() * total / max(total - 1, 1)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` (in place) by :class:`SyncBatchNorm2d`."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = SyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats).to(next(iter(child.buffers()), torch.empty(0)).device)
            sync.load_state_dict(child.state_dict())
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            convert_sync_batchnorm(child)
    return module


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``module`` (one device per process on CUDA)."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)
