"""Multi-process (multi-GPU) training of a notebook's model at any preset, with DistributedDataParallel.

    python -m nbsyn.launch 01_oasis --preset paper --nproc-per-node 4          # one machine, 4 GPUs
    torchrun --nproc-per-node 4 -m nbsyn.launch 01_oasis --preset paper       # the same, explicitly
    python -m nbsyn.launch 01_oasis --preset smoke --nproc-per-node 2 --device cpu   # gloo on the CPU

Without torchrun's environment the command starts ``torch.distributed.run --standalone`` itself with
``--nproc-per-node`` workers (default: the number of GPUs, else 2). Each worker trains on its slice of
the preset's GLOBAL batch (``batch_size`` must divide by the number of processes); gradients are
averaged by DDP, G's batch norms are synchronised, and rank 0 alone writes the checkpoint
(``<out>/<variant>.pt``, resumed when present, also by a single process) and the sample figure.
Implemented for notebook 01 (OASIS and OASIS w/o LabelMix); the others raise a clear error.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

SUPPORTED = {"01_oasis": ("OASIS", "OASIS w/o LabelMix")}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nbsyn.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("notebook", help=f"one of {', '.join(SUPPORTED)}")
    p.add_argument("--preset", default="paper")
    p.add_argument("--variant", default=None, help="01_oasis: OASIS (default) or 'OASIS w/o LabelMix'")
    p.add_argument("--nproc-per-node", type=int, default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--out", default=None, help="output folder (default runs/launch/<notebook>-<preset>)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="the GLOBAL batch over all processes")
    p.add_argument("--dataset", default=None)
    p.add_argument("--amp", default=None, choices=("on", "off"), help="override the preset's amp setting")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    p.add_argument("--dump", default=None, help=argparse.SUPPRESS)  # tests: final gradients and weights
    a = p.parse_args(argv)
    if a.notebook not in SUPPORTED:
        p.error(f"multi-process training is implemented for {', '.join(SUPPORTED)}, not {a.notebook!r}")
    a.variant = a.variant or SUPPORTED[a.notebook][0]
    if a.variant not in SUPPORTED[a.notebook]:
        p.error(f"variant {a.variant!r} is not data-parallel; choose one of {SUPPORTED[a.notebook]}")
    return a


def config(a: argparse.Namespace):
    from nbsyn import presets

    cfg = presets.resolve(a.notebook, a.preset, seed=a.seed, iterations=a.iterations, image_size=a.image_size,
                          batch_size=a.batch_size, dataset=a.dataset,
                          amp=None if a.amp is None else a.amp == "on")
    return cfg


def load_data(cfg):
    """Notebook 01's data: a procedural dataset, or a real one from ``NBSYN_DATA`` (prepared layout)."""
    from nbsyn import data
    from nbsyn.data import ade20k, cityscapes, cocostuff

    readers = {"ade20k": ade20k, "cityscapes": cityscapes, "cocostuff": cocostuff}
    hw = (cfg.image_size, cfg.image_size * cfg.aspect)
    if cfg.dataset in data.DATASETS:
        n_train = cfg.n_train or 1000
        full = data.make_dataset(cfg.dataset, n_train + (cfg.n_test or 8), cfg.image_size, seed=cfg.seed)
        train_set, test_set = full.split(n_train)
        return train_set, test_set, None
    if cfg.dataset in readers:
        reader = readers[cfg.dataset]
        root = Path(os.environ.get("NBSYN_DATA", "data")) / {"ade20k": "", "cityscapes": "cityscapes",
                                                              "cocostuff": "cocostuff"}[cfg.dataset]
        return (reader.load(root, "train", hw, limit=cfg.n_train), reader.load(root, "val", hw, limit=8),
                reader.DONTCARE)
    raise ValueError(f"unknown dataset {cfg.dataset!r}")


def worker(a: argparse.Namespace) -> None:
    from nbsyn import distributed as dist
    from nbsyn import runtime
    from nbsyn.models import oasis as O

    torch.set_num_threads(a.threads)
    device = dist.init_from_env(a.device)
    cfg = config(a)
    runtime.seed_everything(cfg.seed)  # every process draws the same global batches and noise
    out = Path(a.out or f"runs/launch/{a.notebook}-{cfg.preset}")
    train_set, test_set, dontcare = load_data(cfg)
    if dist.is_main():
        print(f"{a.notebook} {cfg.preset} '{a.variant}': {dist.world_size()} processes on {device.type}, global batch "
              f"{cfg.batch_size} ({cfg.batch_size // dist.world_size()} per process), {cfg.iterations} steps, "
              f"amp {cfg.amp}", flush=True)
    run = O.train_variant(cfg, a.variant, train_set, cfg.seed, dontcare=dontcare, device=device,
                          ckpt_path=out / f"{a.variant.replace(' ', '_').replace('/', '')}.pt",
                          progress=dist.is_main(), distributed=True)
    if a.dump and dist.is_main():
        torch.save({"G": run.G.state_dict(), "D": run.D.state_dict(),
                    "G_grads": [p.grad for p in run.G.parameters()], "D_grads": [p.grad for p in run.D.parameters()],
                    "losses": run.history.losses}, a.dump)
    O.recalibrate_ema(run, train_set, cfg, train_set.num_classes, seed=cfg.seed)  # collective: every rank
    if dist.is_main():
        from nbsyn import viz

        labels = test_set.labels[:8].to(device)
        images = O.generate(run.ema.module, labels, train_set.num_classes)
        fig = viz.show_images(torch.cat([viz.colorize(labels.cpu(), train_set.palette), images.cpu()]), nrow=8,
                              title=f"{a.variant}: label maps and EMA samples after {run.history.steps} steps")
        viz.save(fig, out, "samples")
        print(f"rank 0 wrote {out}", flush=True)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def main(argv=None) -> int:
    a = parse(argv)
    if "LOCAL_RANK" in os.environ:  # started by torchrun (or srun + torchrun)
        worker(a)
        return 0
    n = a.nproc_per_node or (torch.cuda.device_count() if torch.cuda.is_available() and a.device != "cpu" else 2)
    args = sys.argv[1:] if argv is None else list(argv)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
           "-m", "nbsyn.launch", *args]
    print(" ".join(cmd), flush=True)
    return subprocess.call(cmd, env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})


if __name__ == "__main__":
    sys.exit(main())
