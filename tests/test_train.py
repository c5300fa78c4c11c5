import math

import pytest
import torch
from torch import nn

from nbsyn.train import EMA, History, NonFiniteLossError, fit, load_checkpoint, save_checkpoint


def test_ema_update_matches_formula():
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.9)
    before = ema.module.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    # theta_ema <- d * theta_ema + (1 - d) * theta
    assert torch.allclose(ema.module.weight, 0.9 * before + 0.1 * model.weight)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_copies_buffers_and_rejects_bad_decay():
    model = nn.BatchNorm1d(3)
    ema = EMA(model, 0.99)
    model.train()(torch.randn(8, 3) + 5)
    ema.update(model)
    assert torch.equal(ema.module.running_mean, model.running_mean)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, 1.0)


def test_recalibrate_bn_estimates_the_batches_statistics():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMA(model, 0.5)
    data = [torch.randn(64, 2) * 3 + 1 for _ in range(4)]
    batches = iter(data)
    assert ema.recalibrate_bn(lambda m: m(next(batches)), 4) == 1
    with torch.no_grad():
        feats = ema.module[0](torch.cat(data))
    # cumulative average of per-batch means equals the mean over all batches (equal sizes)
    assert torch.allclose(ema.module[1].running_mean, feats.mean(0), atol=1e-5)
    assert not ema.module.training


def make_problem(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ema = EMA(model, 0.9)

    def step(i):
        x = torch.randn(16, 4)  # uses the global RNG, so resume must restore it
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model)
        return {"loss": loss.item()}

    return model, opt, ema, step


def test_fit_resume_is_bit_identical(tmp_path):
    model, opt, ema, step = make_problem()
    straight = fit(step, 20, {"model": model, "opt": opt, "ema": ema}, progress=False)
    reference = [p.clone() for p in model.parameters()] + [p.clone() for p in ema.module.parameters()]

    model, opt, ema, step = make_problem()
    ckpt = tmp_path / "run.pt"
    fit(step, 8, {"model": model, "opt": opt, "ema": ema}, ckpt_path=ckpt, progress=False)
    torch.manual_seed(1234)  # anything the notebook does in between must not matter
    model, opt, ema, step = make_problem(seed=99)  # fresh objects, different init
    resumed = fit(step, 20, {"model": model, "opt": opt, "ema": ema}, ckpt_path=ckpt, progress=False)
    got = [p for p in model.parameters()] + [p for p in ema.module.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(reference, got))
    assert resumed.losses["loss"] == straight.losses["loss"] and resumed.steps == 20


def test_fit_stops_at_time_budget_and_checkpoints(tmp_path):
    model, opt, ema, step = make_problem()
    history = fit(step, 10_000, {"model": model}, time_budget_s=0.0, ckpt_path=tmp_path / "c.pt", progress=False)
    assert history.stopped_by_budget and history.steps == 0 and (tmp_path / "c.pt").exists()


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    model = nn.Linear(1, 1)
    ckpt = tmp_path / "c.pt"

    def step(i):
        with torch.no_grad():
            model.weight.fill_(float(i))
        return {"loss": float("nan") if i == 5 else float(i)}

    with pytest.raises(NonFiniteLossError, match=r"step 5.*last good checkpoint"):
        fit(step, 10, {"model": model}, ckpt_path=ckpt, ckpt_every=2, progress=False)
    restored = nn.Linear(1, 1)
    history = History()
    load_checkpoint(ckpt, {"model": restored}, history)
    assert history.steps == 4 and restored.weight.item() == 3.0 and all(math.isfinite(v) for v in history.losses["loss"])


def test_callback_and_history(tmp_path):
    seen = []
    history = fit(lambda i: {"a": i, "b": 2 * i}, 6, {}, callback=lambda s, h: seen.append(s), callback_every=3,
                  progress=False)
    assert seen == [3, 6] and history.losses["b"] == [0, 2, 4, 6, 8, 10] and history.last(2) == {"a": 4.5, "b": 9.0}


def test_checkpoint_is_written_atomically(tmp_path):
    model = nn.Linear(1, 1)
    save_checkpoint(tmp_path / "c.pt", {"model": model}, History())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
    with pytest.raises(ValueError, match="no state for"):
        load_checkpoint(tmp_path / "c.pt", {"other": model}, History())
