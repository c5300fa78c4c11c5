"""Notebook 07 (Chae et al. 2023): split/resume, proxy masks, the rearranger and its losses, the mapper.

The list of what a faithful re-implementation must get right is spec section 10 / 12.12.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from nbsyn import presets
from nbsyn.models import sis_uncond as su
from nbsyn.models import stylegan2 as sg


@pytest.fixture(scope="module")
def small_g():
    torch.manual_seed(0)
    G, D = sg.build("smoke")  # 16 px, 16 channels
    return G.eval().requires_grad_(False), D


# ------------------------------------------------------------------ split / resume
@pytest.mark.parametrize("at", [8, 16])
def test_split_then_resume_reproduces_synthesis(small_g, at):
    G, _ = small_g
    ws = G.map(torch.randn(3, G.cfg.z_dim))
    feats, partial = su.split(G.synthesis, ws, at)
    assert feats.shape == (3, G.cfg.channels(at), at, at) and partial.shape == (3, 3, at, at)
    assert torch.allclose(su.resume(G.synthesis, feats, partial, ws, at), G.synthesis(ws, noise_mode="const"),
                          atol=1e-5)
    assert torch.equal(feats, G.synthesis.features(ws, at))


def test_split_rejects_bad_resolution(small_g):
    G, _ = small_g
    ws = G.map(torch.randn(1, G.cfg.z_dim))
    with pytest.raises(ValueError, match="split resolution"):
        su.split(G.synthesis, ws, 12)


# ------------------------------------------------------------------ proxy masks
def test_spherical_kmeans_recovers_directions_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    dirs = F.normalize(torch.randn(5, 16, generator=g), dim=1)
    truth = torch.arange(5).repeat_interleave(40)
    X = (dirs[truth] + 0.05 * torch.randn(200, 16, generator=g)) * torch.rand(200, 1, generator=g).add(0.5)
    C1 = su.spherical_kmeans(X, 5, iters=20, seed=3)
    C2 = su.spherical_kmeans(X, 5, iters=20, seed=3)
    assert torch.equal(C1, C2)
    assign = (F.normalize(X, dim=1) @ C1.t()).argmax(1)
    purity, _, _ = su.cluster_purity(assign[None, None], truth[None, None], 5, 5)
    assert purity == 1.0
    assert torch.allclose(C1.norm(dim=1), torch.ones(5))


def test_proxy_mask_assignment_is_flip_equivariant():
    g = torch.Generator().manual_seed(1)
    proxy = su.ProxyMasks(F.normalize(torch.randn(6, 8, generator=g), dim=1))
    feats = torch.randn(2, 8, 5, 7, generator=g)
    assert torch.equal(proxy.assign(feats.flip(-1)), proxy.assign(feats).flip(-1))


def test_cluster_purity_hand_computed():
    masks = torch.tensor([[0, 0, 0, 1, 1, 1]])
    labels = torch.tensor([[2, 2, 1, 0, 0, 0]])
    purity, major, counts = su.cluster_purity(masks, labels, 2, 3)
    assert purity == pytest.approx(5 / 6)
    assert major.tolist() == [2, 0] and counts[0].tolist() == [0, 1, 2]


def test_majority_pool():
    lab = torch.tensor([[[1, 1, 0, 0], [1, 2, 0, 0], [3, 3, 3, 2], [3, 2, 2, 2]]])
    assert su.majority_pool(lab, 2, 4).tolist() == [[[1, 0], [3, 2]]]


# ------------------------------------------------------------------ rearranger
def test_sinusoidal_pe_values():
    pe = su.sinusoidal_pe_2d(8, 3, 4)
    assert pe.shape == (8, 3, 4)
    # at y = 0: sin = 0, cos = 1 in the y half; x half at x = 1, frequency 1: sin(1)
    assert torch.allclose(pe[:2, 0, :], torch.zeros(2, 4)) and torch.allclose(pe[2:4, 0, :], torch.ones(2, 4))
    assert pe[4, 2, 1] == pytest.approx(math.sin(1.0))
    with pytest.raises(ValueError):
        su.sinusoidal_pe_2d(6, 2, 2)


def _rearranger(**kw):
    torch.manual_seed(0)
    return su.Rearranger(feat_ch=8, K=5, width=8, res=4, **kw)


def test_rearranger_shapes_and_attention_rows():
    R = _rearranger()
    feats, skip = torch.randn(2, 8, 4, 4), torch.randn(2, 3, 4, 4)
    mask = torch.randint(0, 5, (2, 4, 4))
    out, rgb, A = R(feats, mask, skip, return_attention=True)
    assert out.shape == feats.shape and rgb.shape == skip.shape and A.shape == (2, 16, 16)
    assert torch.allclose(A.sum(-1), torch.ones(2, 16), atol=1e-6) and (A >= 0).all()
    soft = F.one_hot(mask, 5).permute(0, 3, 1, 2).float()
    assert torch.allclose(R(feats, soft, skip)[0], out, atol=1e-6)  # a hard soft-mask equals the ids
    with pytest.raises(ValueError, match="proxy mask ids"):
        R(feats, mask + 5, skip)


def test_skip_image_moves_with_the_same_attention():
    R = _rearranger()
    feats, skip = torch.randn(2, 8, 4, 4), torch.randn(2, 3, 4, 4)
    mask = torch.randint(0, 5, (2, 4, 4))
    _, rgb, A = R(feats, mask, skip, return_attention=True)
    expected = torch.einsum("bqk,bck->bcq", A, skip.flatten(2)).reshape(2, 3, 4, 4)
    assert torch.allclose(rgb, expected, atol=1e-6)
    # and the features' attention is the same matrix: with W_v = identity and post/out = identity
    with torch.no_grad():
        R.w_v.weight.copy_(torch.eye(8)[:, :, None, None])
        R.w_v.bias.zero_()
    R.post, R.w_out = torch.nn.Identity(), torch.nn.Identity()
    out, _, A = R(feats, mask, skip, return_attention=True)
    assert torch.allclose(out, torch.einsum("bqk,bck->bcq", A, feats.flatten(2)).reshape(2, 8, 4, 4), atol=1e-5)


def test_rearranger_is_convex_constant_in_constant_out():
    R = _rearranger(key_mask=True)
    with torch.no_grad():
        R.w_v.weight.copy_(torch.eye(8)[:, :, None, None])
        R.w_v.bias.zero_()
    R.post, R.w_out = torch.nn.Identity(), torch.nn.Identity()
    const = torch.randn(1, 8, 1, 1).expand(2, 8, 4, 4)
    skip = torch.randn(1, 3, 1, 1).expand(2, 3, 4, 4)
    for _ in range(3):
        m_t, m_s = torch.randint(0, 5, (2, 4, 4)), torch.randint(0, 5, (2, 4, 4))
        out, rgb = R(const, m_t, skip, m_s)
        assert torch.allclose(out, const, atol=1e-5) and torch.allclose(rgb, skip, atol=1e-5)


def test_no_residual_path_from_source_features():
    R = _rearranger()
    with torch.no_grad():
        R.w_v.weight.zero_()
        R.w_v.bias.zero_()
    mask = torch.randint(0, 5, (1, 4, 4))
    a, _ = R(torch.randn(1, 8, 4, 4), mask)
    b, _ = R(torch.randn(1, 8, 4, 4), mask)
    assert torch.allclose(a, b, atol=1e-6)


def test_key_mask_switch_changes_keys_only_and_needs_source_mask():
    R = _rearranger(key_mask=True)
    feats, mask = torch.randn(1, 8, 4, 4), torch.randint(0, 5, (1, 4, 4))
    with pytest.raises(ValueError, match="mask_s"):
        R(feats, mask)
    assert sg.count_parameters(R) == sg.count_parameters(_rearranger())


# ------------------------------------------------------------------ losses
def test_mask_loss_hand_computed_and_near_zero_at_centroids():
    mu = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    proxy = su.ProxyMasks(mu)
    feats = torch.tensor([[1.0, 1.0], [0.0, 1.0]]).t().reshape(1, 2, 1, 2)  # pixel 0: (1, 1), pixel 1: (0, 1)
    target = torch.tensor([[[0, 1]]])
    c = 1 / math.sqrt(2)
    # pixel 0: cos = (c, c) -> CE = log 2; pixel 1: cos = (0, 1) -> -log softmax(0, 10)[1]
    expected = (math.log(2) + math.log(1 + math.exp(-10))) / 2
    assert su.mask_loss(proxy, feats, target, tau=0.1).item() == pytest.approx(expected, rel=1e-5)
    assert c > 0
    g = torch.Generator().manual_seed(0)
    mu = F.normalize(torch.randn(25, 16, generator=g), dim=1)
    proxy = su.ProxyMasks(mu)
    m = torch.randint(0, 25, (2, 4, 4), generator=g)
    at_centroids = mu[m].permute(0, 3, 1, 2).clone().requires_grad_(True)
    loss = su.mask_loss(proxy, at_centroids, m, tau=0.1)
    loss.backward()
    assert loss.item() < 0.05 and torch.isfinite(at_centroids.grad).all()


def test_self_loss_hand_computed():
    a, b = torch.zeros(1, 2, 1, 2), torch.tensor([1.0, -1.0, 2.0, 0.0]).view(1, 2, 1, 2)
    assert su.self_loss(a, b).item() == pytest.approx(1.0)
    assert su.self_loss(a, b, torch.zeros(1, 3, 1, 1), torch.full((1, 3, 1, 1), 0.5)).item() == pytest.approx(1.5)


def test_flip_where():
    x = torch.arange(6.0).view(2, 1, 1, 3)
    y = su.flip_where(x, torch.tensor([True, False]))
    assert y[0].flatten().tolist() == [2, 1, 0] and y[1].flatten().tolist() == [3, 4, 5]


def _step_setup(small_g, **cfg_over):
    G, D0 = small_g
    cfg = {**presets.resolve("07_sis_unconditional_generator", "smoke").as_dict(), "feature_res": 8, "width": 8,
           "iterations": 10, **cfg_over}
    torch.manual_seed(0)
    D = sg.build("smoke")[1]
    D.load_state_dict(D0.state_dict())
    proxy = su.ProxyMasks(F.normalize(torch.randn(cfg["n_clusters"], G.cfg.channels(8)), dim=1))
    R = su.build_rearranger(cfg, G.cfg.channels(8))
    real = torch.rand(8, 3, 16, 16) * 2 - 1
    return G, D, R, proxy, real, cfg


def test_self_step_target_is_the_flipped_source(small_g):
    G, D, R, proxy, real, cfg = _step_setup(small_g, flip_p=1.0)
    step, _ = su.make_rearranger_step(G, D, R, proxy, real, cfg, lambda_adv=0.0,
                                      generator=torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        ws = G.map(torch.randn(cfg["batch_size"], G.cfg.z_dim, generator=gen))
        feats, partial = su.split(G.synthesis, ws, 8)
        m_s = proxy.assign(feats)
        f_out, rgb = R(feats, m_s.flip(-1), partial, m_s)
        expected = su.self_loss(f_out, feats.flip(-1), rgb, partial.flip(-1)).item()
    assert step(0)["loss_self"] == pytest.approx(expected, rel=1e-5)
    assert "loss_self" not in step(1)  # odd steps are cross iterations


def test_generator_stays_frozen_rearranger_and_d_train(small_g):
    G, D, R, proxy, real, cfg = _step_setup(small_g)
    g_before = {k: v.clone() for k, v in G.state_dict().items()}
    r_before = [p.clone() for p in R.parameters()]
    d_before = [p.clone() for p in D.parameters()]
    step, opts = su.make_rearranger_step(G, D, R, proxy, real, cfg, generator=torch.Generator().manual_seed(0))
    logs = [step(i) for i in range(3)]
    assert "loss_adv" in logs[0] and "loss_d" in logs[0] and "loss_adv" not in logs[1]  # adv every 5th in phase 1
    assert all(not p.requires_grad for p in G.parameters())
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in g_before.items())
    assert any(not torch.equal(a, b) for a, b in zip(r_before, R.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, D.parameters()))
    assert set(opts) == {"opt_r", "opt_d"}


def test_adv_schedule_phase_two_every_step(small_g):
    G, D, R, proxy, real, cfg = _step_setup(small_g, iterations=7)  # phase 1 = round(7 * 5/7) = 5 steps
    step, _ = su.make_rearranger_step(G, D, R, proxy, real, cfg, generator=torch.Generator().manual_seed(0))
    has_adv = ["loss_adv" in step(i) for i in range(7)]
    assert has_adv == [True, False, False, False, False, True, True]


def test_rearranger_training_is_deterministic(small_g):
    runs = []
    for _ in range(2):
        G, D, R, proxy, real, cfg = _step_setup(small_g)
        step, _ = su.make_rearranger_step(G, D, R, proxy, real, cfg, generator=torch.Generator().manual_seed(0))
        runs.append([step(i) for i in range(3)])
    assert runs[0] == runs[1]


# ------------------------------------------------------------------ mapper, baselines, evaluation, editing
def test_mapper_has_no_noise_and_maps_label_maps_to_proxy_logits():
    torch.manual_seed(0)
    m = su.build_mapper(9, 25, 8, 3).eval()
    x = F.one_hot(torch.randint(0, 9, (2, 16, 16)), 9).permute(0, 3, 1, 2).float()
    a, b = m(x), m(x)
    assert a.shape == (2, 25, 16, 16) and torch.equal(a, b)
    with pytest.raises(ValueError, match="one-hot"):
        m(x[:, :5])


def test_latent_optimisation_reduces_its_loss(small_g):
    G, _ = small_g
    proxy = su.ProxyMasks(F.normalize(torch.randn(4, G.cfg.channels(8), generator=torch.Generator().manual_seed(2)),
                                      dim=1))
    target = torch.randint(0, 4, (2, 8, 8), generator=torch.Generator().manual_seed(3))
    score = lambda z: proxy.logits(G.features(z, 8), 0.1)  # noqa: E731
    z, losses = su.latent_optimisation(G, score, target, inits=3, steps=15, lr=0.05)
    assert z.shape == (2, G.cfg.z_dim) and losses[-1] < losses[0]


def test_style_distance_hand_computed():
    out = torch.zeros(1, 3, 1, 2)
    out[0, :, 0, 1] = 1.0
    lab = torch.tensor([[[0, 1]]])
    ref = torch.full((1, 3, 1, 2), 0.5)
    d = su.style_distance(out, lab, ref, lab, classes=[0, 1, 2])
    assert d.item() == pytest.approx(0.5)  # class 0: |0 - .5|, class 1: |1 - .5|; class 2 absent
    assert torch.isnan(su.style_distance(out, lab, ref, torch.full_like(lab, 2), classes=[0, 1])).all()


def test_move_region_round_trip_and_other_classes_untouched():
    lab = torch.zeros(10, 10, dtype=torch.long)
    lab[2:4, 3:6] = 3
    lab[7:9, 0:10] = 5
    moved = su.move_region(lab, 3, 2, 1)
    assert int((moved == 3).sum()) == 6 and moved[4:6, 4:7].eq(3).all()
    footprint = (lab == 3) | (moved == 3)
    assert torch.equal(moved[~footprint], lab[~footprint])
    back = su.move_region(moved, 3, -2, -1)
    assert torch.equal(back, lab)
    assert su.move_region(lab, 3, 0, 20).eq(3).sum() == 0  # moved off the canvas
    with pytest.raises(ValueError):
        su.move_region(lab[None], 3, 1, 1)


def test_proxy_mask_panel_logic():
    mask = torch.zeros(8, 8, dtype=torch.long)
    mask[2:4, 2:4] = 1
    panel = su.ProxyMaskPanel(mask, ["a", "b"], su.cluster_palette(2), lambda m: m.float()[None].expand(3, -1, -1)
                              .repeat_interleave(2, 1).repeat_interleave(2, 2) / 2 - 0.5, canvas_size=64)
    panel.move(1, 2, 2)
    assert panel.mask[4:6, 4:6].eq(1).all() and panel.mask[2:4, 2:4].eq(0).all()
    panel.cls, panel.radius = 1, 1.0
    panel.paint([(8, 8)])  # canvas (8, 8) -> cell (1, 1)
    assert panel.mask[1, 1] == 1
    assert panel.render().shape[0] == 3
    panel.reset()
    assert torch.equal(panel.mask, mask)


# ------------------------------------------------------------------ presets and paper sizes
def test_presets_registered_and_consistent():
    table = presets.table("07_sis_unconditional_generator")
    assert table["cpu"]["lambda_self"] == 10.0 and table["cpu"]["lambda_mask"] == 1.0
    assert table["paper"]["n_clusters"] == 25 and table["paper"]["feature_res"] == 64
    assert all(t["time_budget_s"] is None for t in table.values())
    with pytest.raises(ValueError, match="unknown preset"):
        presets.resolve("07_sis_unconditional_generator", "fast")


def test_paper_preset_needs_a_checkpoint():
    cfg = presets.resolve("07_sis_unconditional_generator", "paper")
    with pytest.raises(ValueError, match="checkpoint"):
        su.load_prior(cfg)


@pytest.mark.parametrize("size,count", [(256, 30_034_338), (512, 30_276_583), (1024, 30_370_060)])
def test_paper_stylegan2_config_f_counts(size, count):
    G, _ = su.paper_generator(size)
    assert sg.count_parameters(G) == count == su.PAPER_G_PARAMS[size]


def test_rearranger_and_mapper_counts_at_paper_and_cpu_widths():
    # [INFER] architectures: these pin our choice (spec 12.9), not numbers printed in the paper
    paper, cpu = presets.table("07_sis_unconditional_generator")["paper"], presets.table(
        "07_sis_unconditional_generator")["cpu"]
    assert sg.count_parameters(su.build_rearranger(paper, 512)) == 20_204_544
    assert sg.count_parameters(su.build_rearranger(cpu, 32)) == 311_648
    assert sg.count_parameters(su.build_mapper(19, 25, 64, 4)) == 21_622_105


def test_paper_settings():
    assert su.paper_settings("ffhq")["iterations"] == 215_000 and su.paper_settings("ffhq")["image_size"] == 1024
    with pytest.raises(ValueError, match="unknown paper dataset"):
        su.paper_settings("imagenet")
