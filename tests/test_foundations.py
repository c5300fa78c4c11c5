"""Losses and regularisers of thesis ch. 3 and the toy models of notebook 00."""

import math

import pytest
import torch
from torch import nn

from nbsyn.losses import d_loss, g_loss, gradient_penalty, r1_penalty
from nbsyn.models import toy


def test_losses_on_hand_computed_logits():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])
    sp = lambda t: math.log1p(math.exp(t))  # softplus  # noqa: E731
    assert d_loss("ns", real, fake).item() == pytest.approx((sp(-2) + sp(0)) / 2 + (sp(-1) + sp(1)) / 2)
    assert d_loss("hinge", real, fake).item() == pytest.approx((0 + 1) / 2 + (0 + 2) / 2)
    assert d_loss("ls", real, fake).item() == pytest.approx(0.5 * (1 + 1) / 2 + 0.5 * (1 + 1) / 2)
    assert d_loss("wgan", real, fake).item() == pytest.approx(0.0 - 1.0)
    assert g_loss("ns", fake).item() == pytest.approx((sp(1) + sp(-1)) / 2)
    assert g_loss("hinge", fake).item() == pytest.approx(0.0)
    assert g_loss("ls", fake).item() == pytest.approx(0.5 * (4 + 0) / 2)
    with pytest.raises(ValueError, match="unknown adversarial loss"):
        d_loss("bce", real, fake)


def test_ns_loss_is_stable_for_large_logits():
    assert torch.isfinite(d_loss("ns", torch.tensor([1e4]), torch.tensor([-1e4])))
    assert g_loss("ns", torch.tensor([-1e4])).item() == pytest.approx(1e4)


def test_gradient_penalty_and_r1_on_a_linear_discriminator():
    # D(x) = w . x has gradient w everywhere: GP = (|w| - 1)^2 and R1 = |w|^2
    d = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        d.weight.copy_(torch.tensor([[3.0, 0.0, 4.0]]))
    real, fake = torch.randn(5, 3), torch.randn(5, 3)
    assert gradient_penalty(d, real, fake).item() == pytest.approx(16.0)
    x = real.clone().requires_grad_(True)
    assert r1_penalty(d(x), x).item() == pytest.approx(25.0)


def test_penalties_are_differentiable_wrt_d():
    d = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(4, 2, requires_grad=True)
    (r1_penalty(d(x), x) + gradient_penalty(d, x, torch.randn(4, 2))).backward()
    # every parameter that shapes the input gradient gets a gradient (the last bias cannot)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (d[0].weight, d[0].bias, d[2].weight))


def test_dcgan_parameter_counts_at_paper_settings():
    assert toy.count_parameters(toy.DCGANGenerator(100, 64, 64)) == 3_576_704
    assert toy.count_parameters(toy.DCGANDiscriminator(64, 64)) == 2_765_568


@pytest.mark.parametrize("size", [8, 16, 32])
def test_dcgan_shapes_at_small_sizes(size):
    g, d = toy.DCGANGenerator(8, 4, size), toy.DCGANDiscriminator(4, size)
    img = g(torch.randn(3, 8))
    assert img.shape == (3, 3, size, size) and img.abs().max() <= 1 and d(img).shape == (3,)
    with pytest.raises(ValueError, match="power of two"):
        toy.DCGANGenerator(8, 4, 24)


def test_mode_coverage_by_hand():
    modes = toy.ring_modes()
    samples = torch.cat([modes[0].repeat(60, 1), modes[3].repeat(39, 1), torch.zeros(1, 2)])
    score = toy.mode_coverage(samples)
    assert score["modes_covered"] == 2 and score["high_quality"] == pytest.approx(0.99)
    assert score["counts"][0] == 60 and score["counts"][3] == 39


def test_adversarial_step_updates_both_players_and_reaches_every_parameter():
    torch.manual_seed(0)
    g, d = toy.toy_gan(2, hidden=8)
    before_g, before_d = [p.clone() for p in g.parameters()], [p.clone() for p in d.parameters()]
    opt_g, opt_d = torch.optim.SGD(g.parameters(), 0.1), torch.optim.SGD(d.parameters(), 0.1)
    out = toy.adversarial_step(g, d, opt_g, opt_d, toy.sample_ring(16), torch.randn(16, 2), loss="ns", r1_gamma=1.0)
    assert set(out) == {"loss_d", "loss_g", "D(x)", "D(G(z))"} and 0 < out["D(x)"] < 1
    assert all(not torch.equal(a, b) for a, b in zip(before_g, g.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(before_d, d.parameters()))


def test_toy_training_is_deterministic_by_seed():
    a = toy.train_toy("NS + SN", 5, seed=1, batch=8)["samples"]
    b = toy.train_toy("NS + SN", 5, seed=1, batch=8)["samples"]
    c = toy.train_toy("NS + SN", 5, seed=2, batch=8)["samples"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="unknown variant"):
        toy.train_toy("BEGAN", 5, seed=0)
