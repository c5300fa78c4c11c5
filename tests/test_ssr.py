"""SSR (thesis ch. 7): Eq. 7.1 on a linear generator, L_SS at G_t = G_s, Eq. 7.3, arms, metrics."""

import copy
import math

import pytest
import torch
import torch.nn as nn

from nbsyn.models import ssr
from nbsyn.models import stylegan2 as sg
from nbsyn.nn.heads import bce_logits


class LinearFeatures(nn.Module):
    """A "generator" whose features are G^l(z) = A z, reshaped to a (B, 2, 2, 2) map."""

    def __init__(self, A):
        super().__init__()
        self.A = nn.Parameter(A.clone())

    def features(self, z, resolution, noise_mode="const"):
        return (z @ self.A.t()).view(z.shape[0], 2, 2, 2)


def test_eq_7_1_on_a_linear_generator_is_A_transpose_y():
    torch.manual_seed(0)
    A = torch.randn(8, 3, dtype=torch.float64)
    z = torch.randn(4, 3, dtype=torch.float64)
    y = torch.randn(4, 2, 2, 2, dtype=torch.float64)
    got = ssr.jacobian_transpose_probe(lambda zz: (zz @ A.t()).view(4, 2, 2, 2), z, y)
    torch.testing.assert_close(got, y.flatten(1) @ A)  # row b: A^T y_b


def test_eq_7_2_by_hand_on_linear_generators():
    torch.manual_seed(0)
    A, B = torch.randn(8, 3), torch.randn(8, 3)
    G_s, G_t = LinearFeatures(A), LinearFeatures(B)
    z, y = torch.randn(5, 3), torch.randn(5, 2, 2, 2)
    loss = ssr.smoothness_similarity_loss(G_s, G_t, z, 0, lambda_ss=5.0, y=y)
    want = 5.0 * (y.flatten(1) @ (A - B)).norm(dim=1).mean()
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert G_s.A.grad is None  # only G_t is updated [L1988]
    assert G_s.A.requires_grad  # and G_s's flags are restored
    assert G_t.A.grad.abs().sum() > 0


def test_probe_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="probe y"):
        ssr.jacobian_transpose_probe(lambda z: z * 2, torch.randn(2, 3), torch.randn(2, 4))


def test_l_ss_is_exactly_zero_with_finite_gradient_when_target_equals_source():
    torch.manual_seed(0)
    G_s, _ = sg.build("smoke")
    G_t = copy.deepcopy(G_s)
    z = torch.randn(3, G_s.cfg.z_dim)
    loss = ssr.smoothness_similarity_loss(G_s, G_t, z, 8)
    assert loss.item() == 0.0
    loss.backward()
    grads = [p.grad for p in G_t.parameters() if p.grad is not None]
    assert len(grads) > 0
    assert all(torch.isfinite(g).all() for g in grads)
    # the trap this avoids: a hand-written norm has a NaN gradient at exactly zero
    v = torch.zeros(3, requires_grad=True)
    torch.sqrt((v**2).sum()).backward()
    assert torch.isnan(v.grad).all()


def test_l_ss_is_positive_and_trains_g_t_after_a_change():
    torch.manual_seed(0)
    G_s, _ = sg.build("smoke")
    G_t = copy.deepcopy(G_s)
    with torch.no_grad():
        G_t.synthesis.blocks[1].convs[0].conv.weight.mul_(1.5).add_(0.1)
    z = torch.randn(3, G_s.cfg.z_dim)
    loss = ssr.smoothness_similarity_loss(G_s, G_t, z, 8)
    assert loss.item() > 0
    loss.backward()
    assert G_t.mapping.layers[0].weight.grad.abs().sum() > 0  # reaches the mapping network (d/dz)
    assert all(p.grad is None for p in G_s.parameters())
    # blocks after the chosen resolution do not influence L_SS
    assert G_t.synthesis.blocks[-1].convs[1].conv.weight.grad is None


def test_per_block_discriminator_and_eq_7_3():
    torch.manual_seed(0)
    _, D = sg.build("smoke")
    pd = ssr.PerBlockDiscriminator(D)
    x = torch.randn(4, 3, 16, 16)
    logits = pd(x, "all")
    assert len(logits) == pd.num_blocks == len(D.blocks) + 1
    assert [tuple(l.shape) for l in logits[:-1]] == [(4, 1, 8, 8), (4, 1, 4, 4)]
    torch.testing.assert_close(logits[-1], D(x))
    fake = [l - 1 for l in logits]
    want = sum(bce_logits(l, True) + bce_logits(f, False) for l, f in zip(logits, fake)) / len(logits)
    torch.testing.assert_close(ssr.d_loss_all(logits, fake), want)
    torch.testing.assert_close(ssr.g_loss_all(fake), sum(bce_logits(f, True) for f in fake) / len(fake))
    assert len(pd(x, "last")) == 1
    with pytest.raises(ValueError, match="mode"):
        pd(x, "middle")


def test_freeze_d_freezes_only_the_earliest_layers():
    _, D = sg.build("smoke", image_size=32)
    pd = ssr.PerBlockDiscriminator(D)
    names = pd.freeze_early_layers(1)
    assert names and all(n.startswith(("D.fromrgb", "D.blocks.0.")) for n in names)
    assert not D.fromrgb.weight.requires_grad and not D.blocks[0].conv0.weight.requires_grad
    assert D.blocks[1].conv0.weight.requires_grad and D.out.weight.requires_grad
    with pytest.raises(ValueError):
        pd.freeze_early_layers(9)


@pytest.mark.parametrize("arm", list(ssr.ARMS))
def test_every_arm_trains_with_finite_losses(arm):
    torch.manual_seed(0)
    G, D = sg.build("smoke")
    shots = torch.rand(10, 3, 16, 16) * 2 - 1
    a = ssr.setup_arm(arm, G, D, freeze_d_blocks=1, lr=0.002, r1_every=2)
    frozen_before = a["D"].D.fromrgb.weight.detach().clone()
    step = ssr.make_adapt_step(G, a["G_t"], a["D"], a["opt_g"], a["opt_d"], shots, a["spec"], batch_size=4,
                               r1_gamma=0.1, r1_every=2, lambda_ss=5.0, ss_resolution=8)
    logs = [step(i) for i in range(3)]
    assert all(math.isfinite(v) for log in logs for v in log.values())
    assert ("loss_ss" in logs[0]) == ssr.ARMS[arm]["use_ss"]
    if ssr.ARMS[arm]["use_ss"]:
        assert logs[0]["loss_ss"] == 0.0  # G_t = G_s at the first step
    changed = not torch.equal(frozen_before, a["D"].D.fromrgb.weight)
    assert changed != ssr.ARMS[arm]["freeze"]
    assert not torch.equal(G.synthesis.blocks[-1].torgb.bias, a["G_t"].synthesis.blocks[-1].torgb.bias)
    with pytest.raises(ValueError, match="unknown arm"):
        ssr.setup_arm("CDC++", G, D, freeze_d_blocks=1, lr=0.002, r1_every=2)


def test_staircase_index_smooth_vs_step():
    ramp = torch.linspace(0, 1, 9).view(1, 9, 1, 1, 1).expand(1, 9, 3, 2, 2)
    assert ssr.staircase_index(ramp).item() == pytest.approx(1.0)
    jump = (torch.arange(9) >= 4).float().view(1, 9, 1, 1, 1).expand(1, 9, 3, 2, 2)
    assert ssr.staircase_index(jump).item() == pytest.approx(8.0)


def test_intra_cluster_diversity_by_hand():
    shots = torch.tensor([[0.0], [10.0]]).view(2, 1, 1, 1)
    samples = torch.tensor([0.0, 1.0, 3.0, 10.0]).view(4, 1, 1, 1)
    # cluster 0: {0, 1, 3} -> mean |diff| = (1 + 3 + 2) / 3 = 2; cluster 1 has one member (skipped)
    assert ssr.intra_cluster_diversity(samples, shots) == pytest.approx(2.0)
    idx, dist = ssr.nearest_shot(samples, shots)
    assert idx.tolist() == [0, 0, 0, 1] and dist.tolist() == [0.0, 1.0, 3.0, 0.0]
    assert math.isnan(ssr.intra_cluster_diversity(samples[:1], shots))


def test_interpolation_frames_end_points():
    torch.manual_seed(0)
    G, _ = sg.build("smoke")
    z0, z1 = torch.randn(2, G.cfg.z_dim), torch.randn(2, G.cfg.z_dim)
    frames = ssr.interpolation_frames(G, z0, z1, 5)
    assert frames.shape == (2, 5, 3, 16, 16)
    torch.testing.assert_close(frames[:, 0], G(z0, noise_mode="const").clamp(-1, 1))
    torch.testing.assert_close(frames[:, -1], G(z1, noise_mode="const").clamp(-1, 1))


def test_presets_are_valid_and_carry_the_paper_values():
    from nbsyn import presets

    table = presets.table("04_stylegan2_ssr")
    assert table["paper"]["lambda_ss"] == 5.0 and table["paper"]["ss_resolution"] == 32
    assert table["paper"]["image_size"] == 256 and table["paper"]["n_shots"] == 10
    for name, values in table.items():
        assert values["ss_resolution"] < values["image_size"], name
        assert set(values["arms"]) <= set(ssr.ARMS), name
    with pytest.raises(ValueError, match="unknown preset"):
        presets.resolve("04_stylegan2_ssr", "laptop")


def test_cdc_distance_consistency_zero_at_source_positive_after_change():
    torch.manual_seed(0)
    G_s, _ = sg.build("smoke")
    G_t = copy.deepcopy(G_s)
    z = torch.randn(4, G_s.cfg.z_dim)
    assert ssr.distance_consistency_loss(G_s, G_t, z).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        G_t.synthesis.blocks[1].convs[0].conv.weight.normal_()
    loss = ssr.distance_consistency_loss(G_s, G_t, z)
    assert loss.item() > 0
    loss.backward()
    assert G_t.synthesis.blocks[1].convs[0].conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least 2"):
        ssr.distance_consistency_loss(G_s, G_t, z[:1])


def test_cdc_kl_by_hand_for_three_samples():
    # features = one-hot-ish vectors: cosine similarities are known, so is the softmax over j != i
    class Fixed(nn.Module):
        def __init__(self, feats):
            super().__init__()
            self.feats = nn.Parameter(feats)

        def forward(self, z, noise_mode="const", return_features=False):
            return None, {4: self.feats.view(3, 2, 1, 1)}

    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    loss = ssr.distance_consistency_loss(Fixed(a), Fixed(b), torch.zeros(3, 1), lambda_cdc=1.0)
    c = 2**-0.5

    def rows(sim):
        return torch.tensor(sim).softmax(1)

    p_s = rows([[0.0, c], [0.0, c], [c, c]])  # sims of a without the diagonal
    p_t = rows([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    want = (p_s * (p_s.log() - p_t.log())).mean()
    torch.testing.assert_close(loss, want)


def test_patch_mode_returns_the_middle_head_only():
    _, D = sg.build("smoke", image_size=32)
    pd = ssr.PerBlockDiscriminator(D)
    out = pd(torch.randn(2, 3, 32, 32), "patch")
    assert len(out) == 1 and out[0].shape == (2, 1, 8, 8) and pd.patch_block == 1


def _adapt_run(arm, generator_seed, global_seed, steps=2):
    """Two adaptation steps of ``arm`` from the same source; returns the latents G_t saw, the logs, G_t."""
    torch.manual_seed(0)
    G, D = sg.build("smoke")
    shots = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    a = ssr.setup_arm(arm, G, D, freeze_d_blocks=1, lr=0.002, r1_every=2)
    latents, forward = [], a["G_t"].forward

    def spy(z, *args, **kwargs):
        latents.append(z.detach().clone())
        return forward(z, *args, **kwargs)

    a["G_t"].forward = spy
    step = ssr.make_adapt_step(G, a["G_t"], a["D"], a["opt_g"], a["opt_d"], shots, a["spec"], batch_size=3,
                               r1_gamma=0.1, r1_every=2, lambda_ss=5.0, ss_resolution=8,
                               generator=torch.Generator().manual_seed(generator_seed))
    torch.manual_seed(global_seed)
    logs = [step(i) for i in range(steps)]
    return latents, logs, a["G_t"]


@pytest.mark.parametrize("arm", ["L_all + L_SS", "CDC"])
def test_adaptation_latents_come_from_the_generator_passed_in(arm):
    # the same generator seed under two different global RNG states: the same latents at every G_t call
    z_a, _, _ = _adapt_run(arm, generator_seed=5, global_seed=1)
    z_b, _, _ = _adapt_run(arm, generator_seed=5, global_seed=2)
    assert len(z_a) == len(z_b) >= 4 and all(torch.equal(a, b) for a, b in zip(z_a, z_b))
    z_c, _, _ = _adapt_run(arm, generator_seed=6, global_seed=1)
    assert not torch.equal(z_a[0], z_c[0])


@pytest.mark.parametrize("arm", list(ssr.ARMS))
def test_an_adaptation_arm_repeats_exactly(arm):
    z_a, logs_a, G_a = _adapt_run(arm, generator_seed=3, global_seed=4)
    torch.rand(100)  # whatever ran in between
    z_b, logs_b, G_b = _adapt_run(arm, generator_seed=3, global_seed=4)
    assert logs_a == logs_b
    assert all(torch.equal(p, q) for p, q in zip(G_a.parameters(), G_b.parameters()))
