"""StyleGAN2: modulated convolution, demodulation, resampling, features, parameter counts, double backward."""

import math

import pytest
import torch

from nbsyn.models import stylegan2 as sg


def _modconv_inputs(seed=0, b=3, i=5, o=4, k=3, h=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, i, h, h, generator=g, dtype=torch.float64)
    w = torch.randn(o, i, k, k, generator=g, dtype=torch.float64)
    s = torch.rand(b, i, generator=g, dtype=torch.float64) + 0.5
    return x, w, s


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("demodulate", [False, True])
@pytest.mark.parametrize("fused", [False, True])
def test_modulated_conv_matches_direct_computation(up, demodulate, fused):
    x, w, s = _modconv_inputs()
    kernel = sg.make_blur_kernel().double()
    got = sg.modulated_conv2d(x, w, s, demodulate=demodulate, up=up, blur_kernel=kernel, fused=fused)
    want = sg.modulated_conv2d_reference(x, w, s, demodulate=demodulate, up=up, blur_kernel=kernel)
    assert got.shape == (3, 4, 12 if up else 6, 12 if up else 6)
    torch.testing.assert_close(got, want)


def test_reference_modulation_is_eq1_and_eq3_by_hand():
    # one sample, 1x1 kernel: y_j = sum_i s_i w_ji x_i / sqrt(sum_i (s_i w_ji)^2)
    x = torch.tensor([[[[2.0]], [[-1.0]]]], dtype=torch.float64)
    w = torch.tensor([[[[3.0]], [[4.0]]]], dtype=torch.float64)
    s = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    y = sg.modulated_conv2d(x, w, s, demodulate=True, fused=True)
    want = (1 * 3 * 2 + 0.5 * 4 * -1) / math.sqrt((1 * 3) ** 2 + (0.5 * 4) ** 2)
    assert y.item() == pytest.approx(want)


def test_demodulation_gives_unit_variance_for_unit_variance_input():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 64, 48, 48, generator=g)
    w = torch.randn(32, 64, 3, 3, generator=g) * 3.0
    s = torch.rand(4, 64, generator=g) * 4 + 0.1  # styles far from 1
    y = sg.modulated_conv2d(x, w, s, demodulate=True)[:, :, 1:-1, 1:-1]  # interior: no zero padding
    std_per_map = y.std(dim=(2, 3))
    assert std_per_map.mean().item() == pytest.approx(1.0, abs=0.03)
    assert ((std_per_map - 1).abs() < 0.1).all()
    y_raw = sg.modulated_conv2d(x, w, s, demodulate=False)
    assert y_raw.std().item() > 5  # without demodulation the scale explodes


def test_upsample_keeps_constant_and_doubles_size():
    x = torch.ones(2, 3, 5, 5)
    y = sg.upsample2d(x, sg.make_blur_kernel())
    assert y.shape == (2, 3, 10, 10)
    torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.ones(2, 3, 6, 6))
    d = sg.downsample2d(torch.ones(1, 2, 8, 8), sg.make_blur_kernel())
    assert d.shape == (1, 2, 4, 4)
    torch.testing.assert_close(d[:, :, 1:-1, 1:-1], torch.ones(1, 2, 2, 2))


def test_generator_and_discriminator_shapes_and_features():
    torch.manual_seed(0)
    G, D = sg.build("smoke", image_size=32)
    z = torch.randn(4, G.cfg.z_dim)
    img, feats = G(z, return_features=True, noise_mode="const")
    assert img.shape == (4, 3, 32, 32)
    assert sorted(feats) == [4, 8, 16, 32]
    for res, f in feats.items():
        assert f.shape == (4, G.cfg.channels(res), res, res)
    torch.testing.assert_close(G.features(z, 16), feats[16])
    logits, d_feats = D(img, return_features=True)
    assert logits.shape == (4,)
    assert [f.shape[-1] for f in d_feats] == [16, 8, 4]
    assert D.block_channels == [f.shape[1] for f in d_feats]


def test_features_stop_early_and_reject_unknown_resolution():
    G, _ = sg.build("smoke", image_size=32)
    out = G.synthesis(G.map(torch.randn(2, G.cfg.z_dim)), stop_at=8)
    assert sorted(out) == [4, 8]
    with pytest.raises(ValueError, match="stop_at"):
        G.features(torch.randn(2, G.cfg.z_dim), 12)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="power of two"):
        sg.make_config("smoke", image_size=24)
    with pytest.raises(ValueError, match="unknown StyleGAN2 config"):
        sg.make_config("huge")
    G, D = sg.build("smoke")
    with pytest.raises(ValueError, match="z must have shape"):
        G(torch.randn(2, G.cfg.z_dim + 1))
    with pytest.raises(ValueError, match="D expects images"):
        D(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="noise_mode"):
        G(torch.randn(2, G.cfg.z_dim), noise_mode="loud")


def test_truncation_zero_collapses_to_average_w_and_mixing_uses_two_ws():
    torch.manual_seed(0)
    G, _ = sg.build("smoke")
    G.mapping.w_avg.normal_()
    ws = G.map(torch.randn(3, G.cfg.z_dim), truncation_psi=0.0)
    torch.testing.assert_close(ws, G.mapping.w_avg.expand_as(ws))
    ws_half = G.map(torch.zeros(1, G.cfg.z_dim) + 1, truncation_psi=0.5)
    w_full = G.map(torch.zeros(1, G.cfg.z_dim) + 1)
    torch.testing.assert_close(ws_half, G.mapping.w_avg + 0.5 * (w_full - G.mapping.w_avg))
    mixed = G.map(torch.randn(2, G.cfg.z_dim), mixing_prob=1.0)
    distinct = {tuple(row.round(decimals=5).tolist()) for row in mixed[0]}
    assert len(distinct) == 2


def test_w_avg_tracks_mapping_output_in_training():
    G, _ = sg.build("smoke")
    z = torch.randn(8, G.cfg.z_dim)
    G.map(z, update_w_avg=True)
    want = (1 - G.cfg.w_avg_beta) * G.mapping(z).mean(0)
    torch.testing.assert_close(G.mapping.w_avg, want)


def test_double_backward_through_generator_and_discriminator():
    torch.manual_seed(0)
    G, D = sg.build("smoke")
    z = torch.randn(2, G.cfg.z_dim, requires_grad=True)
    img = G(z, noise_mode="random")
    (grad_z,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), z, create_graph=True)
    grad_z.norm().backward()  # second-order: through every op of G
    grads = [p.grad for p in G.parameters() if p.grad is not None]
    assert len(grads) > 0 and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in G.synthesis.parameters() for g in [g.grad] if g is not None)
    r1 = sg.r1_penalty(D, img.detach())
    r1.backward()
    assert all(torch.isfinite(p.grad).all() for p in D.parameters() if p.grad is not None)
    assert D.fromrgb.weight.grad.abs().sum() > 0


def test_r1_penalty_of_linear_discriminator_is_squared_weight_norm():
    w = torch.randn(3 * 4 * 4)
    real = torch.randn(5, 3, 4, 4)
    r1 = sg.r1_penalty(lambda x: x.flatten(1) @ w, real)
    assert r1.item() == pytest.approx(w.pow(2).sum().item(), rel=1e-5)


def test_losses_are_ns_gan():
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 0.0])
    want_d = -(torch.sigmoid(real).log().mean() + (1 - torch.sigmoid(fake)).log().mean())
    torch.testing.assert_close(sg.d_logistic_loss(real, fake), want_d)
    torch.testing.assert_close(sg.g_nonsaturating_loss(fake), -torch.sigmoid(fake).log().mean())


# published per-layer parameter counts of the official StyleGAN2 config-f (network printout of
# Karras et al.'s TensorFlow code): name -> params
PUBLISHED_G_LAYERS = {
    "G_mapping/Dense0": 262656,
    "G_synthesis/4x4/Const": 8192,
    "G_synthesis/4x4/Conv": 2622465,
    "G_synthesis/4x4/ToRGB": 264195,
    "G_synthesis/8x8/Conv0_up": 2622465,
    "G_synthesis/128x128/Conv0_up": 1442561,
    "G_synthesis/128x128/Conv1": 721409,
    "G_synthesis/128x128/ToRGB": 132099,
    "G_synthesis/256x256/Conv0_up": 426369,
    "G_synthesis/256x256/Conv1": 213249,
    "G_synthesis/256x256/ToRGB": 66051,
}


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_paper_config_matches_published_stylegan2_config_f_at_256():
    G, D = sg.build("paper")
    blocks = {b.resolution: b for b in G.synthesis.blocks}
    ours = {
        "G_mapping/Dense0": _count(G.mapping.layers[0]),
        "G_synthesis/4x4/Const": blocks[4].const.numel(),
        "G_synthesis/4x4/Conv": _count(blocks[4].convs[0]),
        "G_synthesis/4x4/ToRGB": _count(blocks[4].torgb),
        "G_synthesis/8x8/Conv0_up": _count(blocks[8].convs[0]),
        "G_synthesis/128x128/Conv0_up": _count(blocks[128].convs[0]),
        "G_synthesis/128x128/Conv1": _count(blocks[128].convs[1]),
        "G_synthesis/128x128/ToRGB": _count(blocks[128].torgb),
        "G_synthesis/256x256/Conv0_up": _count(blocks[256].convs[0]),
        "G_synthesis/256x256/Conv1": _count(blocks[256].convs[1]),
        "G_synthesis/256x256/ToRGB": _count(blocks[256].torgb),
    }
    assert ours == PUBLISHED_G_LAYERS
    # total of the published table restricted to 256x256 (8 mapping layers, 4x4 ... 256x256 blocks)
    per_512_block = 2622465 * 2 + 264195
    published_total = (8 * 262656 + 8192 + 2622465 + 264195 + 4 * per_512_block
                       + 1442561 + 721409 + 132099 + 426369 + 213249 + 66051)
    assert published_total == 30_034_338
    assert _count(G) == published_total
    assert G.num_ws == 14
    # D, residual config-f: FromRGB, 6 blocks (conv, conv-down, 1x1 skip), mbstd epilogue, 2 FC
    def block(i, o):
        return (i * i * 9 + i) + (i * o * 9 + o) + i * o
    want_d = (3 * 128 + 128) + block(128, 256) + block(256, 512) + 4 * block(512, 512) \
        + (513 * 512 * 9 + 512) + (512 * 16 * 512 + 512) + (512 + 1)
    assert _count(D) == want_d


def test_training_step_is_deterministic_and_changes_weights():
    def run():
        torch.manual_seed(0)
        G, D = sg.build("smoke")
        opt_g, opt_d = sg.make_optimizers(G, D, r1_every=2)
        real = torch.rand(16, 3, 16, 16) * 2 - 1
        step = sg.make_train_step(G, D, opt_g, opt_d, real, batch_size=4, r1_gamma=1.0, r1_every=2)
        before = G.synthesis.blocks[-1].torgb.bias.detach().clone()
        logs = [step(i) for i in range(3)]
        return logs, before, G.synthesis.blocks[-1].torgb.bias.detach().clone()

    logs1, before, after = run()
    logs2, _, after2 = run()
    assert all(math.isfinite(v) for log in logs1 for v in log.values())
    assert "r1" in logs1[0] and "r1" not in logs1[1]
    assert not torch.equal(before, after)
    assert logs1 == logs2 and torch.equal(after, after2)
