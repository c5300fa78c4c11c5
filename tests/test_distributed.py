"""DistributedDataParallel on the CPU (gloo, 2 processes) equals one process on the same global batch."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nbsyn import distributed, presets, runtime
from nbsyn.launch import config, load_data, parse
from nbsyn.models import oasis as O

ROOT = Path(__file__).resolve().parents[1]


def single_process(argv, iterations, ckpt=None):
    cfg = config(parse(argv))
    cfg = presets.resolve("01_oasis", cfg.preset, **{**cfg.as_dict(), "iterations": iterations})
    train_set, _, dontcare = load_data(cfg)
    runtime.seed_everything(cfg.seed)
    run = O.train_variant(cfg, "OASIS", train_set, cfg.seed, dontcare=dontcare, ckpt_path=ckpt, progress=False)
    return run


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    argv = ["01_oasis", "--preset", "smoke", "--device", "cpu", "--iterations", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "nbsyn.launch", *argv, "--nproc-per-node", "2",
                           "--dump", str(out / "dump.pt")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 processes on cpu, global batch 4 (2 per process)" in proc.stdout
    return argv, out, torch.load(out / "dump.pt", weights_only=False)


def test_one_ddp_step_matches_one_process_on_the_global_batch(ddp_run):
    argv, _, dump = ddp_run
    run = single_process(argv, 1)
    cfg = presets.resolve("01_oasis", "smoke")
    run_cfg_lr = {"G": cfg.lr_g, "D": cfg.lr_d}
    for name, model in (("G", run.G), ("D", run.D)):
        grads = dump[f"{name}_grads"]
        params = list(model.parameters())
        assert len(grads) == len(params)
        for (pname, p), g in zip(model.named_parameters(), grads):
            assert g is not None and p.grad is not None, pname
            torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6, msg=f"{name}.{pname} gradient")
        # weights after the Adam step: equal, except where the gradient is float noise around an exact
        # zero (conv biases in front of batch norm, ~1e-10): Adam's first step is lr * g / (|g| + eps),
        # so noise moves those by up to lr either way (in both runs)
        lr = run_cfg_lr[name]
        for (pname, p), g in zip(model.named_parameters(), grads):
            noise = g.abs().max().item() < 1e-7
            torch.testing.assert_close(dump[name][pname], p.detach(), rtol=1e-4, atol=lr if noise else 1e-6,
                                       msg=f"{name}.{pname} weight")
        # buffers too (BN statistics, spectral-norm vectors); the second G pass of the step runs after the
        # update above, so its BN statistics inherit those bias differences (~1e-6)
        for key, value in model.state_dict().items():
            if "original" not in key and not key.endswith(("weight", "bias")):
                torch.testing.assert_close(dump[name][key], value, rtol=1e-3, atol=1e-5, msg=f"{name}.{key}")
    assert dump["losses"]["loss_g"] and run.history.losses["loss_g"]


def test_rank0_checkpoint_and_figure_resume_in_one_process(ddp_run, tmp_path):
    argv, out, _ = ddp_run
    assert (out / "OASIS.pt").exists() and list((out / "figures").glob("samples*"))
    ckpt = tmp_path / "OASIS.pt"
    shutil.copy(out / "OASIS.pt", ckpt)
    resumed = single_process(argv, 2, ckpt=ckpt)  # step 1 from the DDP run, step 2 here
    assert resumed.history.steps == 2 and len(resumed.history.losses["loss_g"]) == 2
    straight = single_process(argv, 2)
    lr = presets.resolve("01_oasis", "smoke").lr_g
    for a, b in zip(resumed.G.state_dict().values(), straight.G.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=2 * lr)  # see the note on Adam and zero gradients
    assert resumed.history.losses["loss_g"][1] == pytest.approx(straight.history.losses["loss_g"][1], rel=1e-3)


def test_sync_batchnorm_is_plain_batchnorm_in_one_process():
    bn = torch.nn.BatchNorm2d(3)
    net = distributed.convert_sync_batchnorm(torch.nn.Sequential(bn))
    assert isinstance(net[0], distributed.SyncBatchNorm2d)
    x = torch.randn(4, 3, 5, 5)
    ref = torch.nn.BatchNorm2d(3)
    torch.testing.assert_close(net(x), ref(x), rtol=0, atol=0)
    torch.testing.assert_close(net[0].running_var, ref.running_var, rtol=0, atol=0)


def test_bad_launch_requests_are_clear():
    with pytest.raises(SystemExit):
        parse(["02_sivgan"])
    with pytest.raises(SystemExit):
        parse(["01_oasis", "--variant", "SPADE+ D"])
    assert distributed.shard(5) == slice(0, 5) and distributed.is_main()  # one process: everything
