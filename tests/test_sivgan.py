"""SIV-GAN: shapes, the branches' invariances, Eq. 5.1-5.3 on hand-computed cases, training step."""

import math

import pytest
import torch

from nbsyn.models import sivgan as S
from nbsyn.nn.heads import per_block_bce
from nbsyn.presets import resolve

torch.set_num_threads(1)


def small_d(branches="content_layout", layout_squeeze="conv1x1", msg_kernel=1):
    torch.manual_seed(0)
    return S.ContentLayoutDiscriminator(num_blocks=5, num_low=2, base_channels=8, branches=branches,
                                        layout_squeeze=layout_squeeze, msg_kernel=msg_kernel)


# ------------------------------------------------------------------ generator


def test_paper_generator_starts_from_a_3x5_map_and_doubles_per_block():
    cfg = resolve("02_sivgan", "paper")
    g = S.build_generator(cfg)
    assert g.num_blocks == 7 and g.noise_shape == (3, 5)
    assert g.output_shape == S.image_shape(cfg) == (192, 320)
    out = S.Generator(z_dim=64, noise_shape=(3, 5), num_blocks=4, base_channels=4)(torch.randn(2, 64))
    assert [tuple(im.shape[-2:]) for im in out.images] == [(3, 5), (6, 10), (12, 20), (24, 40)]
    assert all(im.shape[1] == 3 and im.abs().max() <= 1 for im in out.images)
    assert len(out.features) == 4 and all(f.abs().max() <= 1 for f in out.features)  # tanh features


def _conv_params(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


# Parameter counts of the authors' code (run on this machine, issue 16): G / D at the matched 64x64 configuration
# (4x4 map, 5 G blocks, D 2 + 4 blocks, batch 5) and at the README example size 192x320 (3x5 map, 7 G blocks,
# D 3 + 4 blocks).
OFFICIAL_COUNTS = {"64x64": (3_397_743, 649_568), "192x320": (5_886_581, 1_256_497)}


def _official_like(noise_shape, g_blocks, d_blocks, num_low, **d_options):
    g = S.Generator(noise_shape=noise_shape, num_blocks=g_blocks)
    d = S.ContentLayoutDiscriminator(num_blocks=d_blocks, num_low=num_low, **d_options)
    return S.count_parameters(g), S.count_parameters(d)


def test_official_options_give_the_official_parameter_counts():
    assert _official_like((4, 4), 5, 6, 2, **S.OFFICIAL_D) == OFFICIAL_COUNTS["64x64"]
    assert _official_like((3, 5), 7, 7, 3, **S.OFFICIAL_D) == OFFICIAL_COUNTS["192x320"]
    cfg = resolve("02_sivgan", "paper")  # the paper preset is the README size
    assert S.image_shape(cfg) == (192, 320)
    assert S.count_parameters(S.build_generator(cfg)) == OFFICIAL_COUNTS["192x320"][0]
    assert S.count_parameters(S.build_discriminator(dict(cfg.as_dict(), **S.OFFICIAL_D))) == OFFICIAL_COUNTS["192x320"][1]


def test_paper_preset_differs_from_the_official_d_only_where_the_text_says_otherwise():
    # The text's choices [L1417, L1460]: the layout squeeze is a 1x1 conv C->1 (then a 1->1 block) instead of a
    # 3x3 residual block C->1, and the MSG inputs enter by 1x1 convs (phi_lin_cat) instead of 3x3 convs.
    cfg = resolve("02_sivgan", "paper")
    c = [32, 64, 128]  # 32 x [1, 2, 4]: from-RGB width; inputs of low-level blocks 1 and 2 (MSG widths c // 8)
    trunk = 256  # F(x): the third low-level block's output, 32 x 8
    official_squeeze = _conv_params(trunk, 1, 3) + _conv_params(1, 1, 3) + _conv_params(trunk, 1, 1, False)
    text_squeeze = _conv_params(trunk, 1, 1) + 2 * _conv_params(1, 1, 3) + _conv_params(1, 1, 1, False)
    msg_3x3 = sum(_conv_params(3, w // 8, 3) for w in c[1:3])
    msg_1x1 = sum(_conv_params(3, w // 8, 1) for w in c[1:3])
    expected = OFFICIAL_COUNTS["192x320"][1] - official_squeeze + text_squeeze - msg_3x3 + msg_1x1
    assert expected == 1_253_628
    assert S.count_parameters(S.build_discriminator(cfg)) == expected
    assert cfg["layout_squeeze"] == "conv1x1" and cfg["msg_kernel"] == 1


def test_generator_has_no_spectral_norm_on_the_noise_map_and_no_activation_before_rgb():
    g = S.Generator(noise_shape=(2, 3), num_blocks=2, base_channels=2)
    assert not hasattr(g.to_map, "weight_orig") and hasattr(g.to_rgb[0], "weight_orig")
    assert hasattr(S.Generator(noise_shape=(2, 3), num_blocks=2, base_channels=2, to_map_spectral=True).to_map,
                   "weight_orig")
    g.eval()
    feats = {}
    g.blocks[-1].register_forward_hook(lambda m, i, o: feats.setdefault("h", o))
    out = g(torch.randn(2, 64))
    assert torch.allclose(out.image, torch.tanh(g.to_rgb[-1](feats["h"])), atol=1e-6)


def test_d_blocks_narrow_first_and_keep_identity_shortcuts_only_without_change():
    block = S.DBlock(64, 16)
    assert block.conv1.out_channels == 16 and block.conv2.in_channels == 16
    wide = S.DBlock(16, 64, kernel=1, downsample=False)
    assert wide.conv1.out_channels == 16 and isinstance(wide.shortcut, torch.nn.Conv2d)
    same = S.DBlock(32, 32, kernel=1, downsample=False)
    assert isinstance(same.shortcut, torch.nn.Identity)
    x = torch.randn(2, 32, 1, 1)
    plain = S.DBlock(32, 32, kernel=1, downsample=False, spectral=False)
    with torch.no_grad():
        plain.conv2.weight.zero_(), plain.conv2.bias.zero_()
    assert torch.equal(plain(x), x)  # residual branch zero -> the identity shortcut alone
    assert isinstance(S.DBlock(1, 1).shortcut, torch.nn.Conv2d)  # pooling blocks keep a learned shortcut


def test_from_rgb_sees_the_full_resolution_image():
    d = small_d().eval()
    assert d.stem.in_channels == 3 and d.stem.out_channels == d.channels[0] and d.stem.kernel_size == (3, 3)
    assert [m.kernel_size for m in d.from_rgb] == [(1, 1)]
    assert [m.kernel_size for m in small_d(msg_kernel=3).from_rgb] == [(3, 3)]
    assert d.from_rgb[0].out_channels == d.channels[1] // 8


def test_generator_rejects_bad_z_and_bad_sizes():
    g = S.Generator(noise_shape=(3, 5), num_blocks=2, base_channels=4)
    with pytest.raises(ValueError, match="z must have shape"):
        g(torch.randn(2, 32))
    with pytest.raises(ValueError, match="valid sizes"):
        S.generator_blocks_for(100, 3)
    with pytest.raises(ValueError, match="unknown preset"):
        resolve("02_sivgan", "huge")


# ------------------------------------------------------------------ discriminator


def test_each_part_has_one_head_per_block_with_the_right_shape():
    d = small_d()
    x = torch.randn(3, 3, 32, 48)
    out = d(x)
    assert [tuple(l.shape) for l in out.low] == [(3, 1, 16, 24), (3, 1, 8, 12)]
    assert [tuple(l.shape) for l in out.content] == [(3, 1, 1, 1)] * 3  # no spatial extent
    assert [tuple(l.shape) for l in out.layout] == [(3, 1, 4, 6), (3, 1, 2, 3), (3, 1, 1, 2)]
    assert out.features.shape == (3, 32, 8, 12)  # F(x): c[2] = 4 x 8 channels
    plain = small_d("none")(x)
    assert not plain.content and not plain.layout and len(plain.plain) == 3


def test_content_branch_is_invariant_to_permuting_spatial_positions():
    d = small_d().eval()  # eval: no power iteration, so repeated calls give the same weights
    feats = torch.randn(2, 32, 8, 12)
    perm = torch.randperm(8 * 12)
    shuffled = feats.flatten(2)[:, :, perm].view_as(feats)
    a, b = d.content_branch(feats), d.content_branch(shuffled)
    for la, lb in zip(a, b):
        assert torch.allclose(la, lb, atol=1e-5)
    # the layout branch is not: it must see where things are
    la, lb = d.layout_branch(feats)[0], d.layout_branch(shuffled)[0]
    assert not torch.allclose(la, lb, atol=1e-3)


@pytest.mark.parametrize("squeeze", ["conv1x1", "block"])
def test_layout_branch_is_one_channel_wide(squeeze):
    d = small_d(layout_squeeze=squeeze)
    feats = torch.randn(2, 32, 8, 12)
    _, layout_feats = d.layout(d.squeeze_layout(feats))
    assert all(f.shape[1] == 1 for f in layout_feats)
    if squeeze == "conv1x1":
        assert d.squeeze_layout(feats).shape == (2, 1, 8, 12)  # F_layout(x): H x W x 1 [L1417]
    # every conv after the squeeze has at most one output channel
    convs = [m for m in d.layout.blocks.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.out_channels == 1 for m in convs)


def test_msg_inputs_enter_the_low_level_blocks():
    d = small_d().eval()
    levels = [torch.randn(2, 3, 32, 48), torch.randn(2, 3, 16, 24)]
    base = d(levels).low[1]
    changed = d([levels[0], levels[1] + 1.0]).low[1]
    assert not torch.allclose(base, changed)
    with pytest.raises(ValueError, match="image scales"):
        d.low_level([levels[0]])


# ------------------------------------------------------------------ feature augmentation


def test_content_fa_only_mixes_partner_channels_or_zeros():
    pooled = torch.arange(1, 5).float().view(4, 1, 1, 1).expand(4, 50, 1, 1).contiguous()  # sample i holds i+1
    out = S.content_feature_augmentation(pooled, p=1.0, generator=torch.Generator().manual_seed(0))
    partner = pooled.roll(1, dims=0)
    ok = (out == pooled) | (out == partner) | (out == 0)
    assert bool(ok.all())
    changed = (out != pooled).float().mean()
    assert 0.1 < changed < 0.6  # 10-30 % mixed, then 10-30 % dropped
    assert torch.equal(S.content_feature_augmentation(pooled, p=0.0), pooled)


def test_layout_fa_pastes_a_rectangle_at_the_same_location():
    feats = torch.randn(4, 2, 10, 12)
    out = S.layout_feature_augmentation(feats, p=1.0, generator=torch.Generator().manual_seed(1))
    partner = feats.roll(1, dims=0)
    for i in range(4):
        from_partner = (out[i] == partner[i]).all(0) & (out[i] != feats[i]).any(0)
        rows, cols = from_partner.nonzero(as_tuple=True)
        assert len(rows) > 0
        box = torch.zeros_like(from_partner)
        box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
        assert torch.equal(box, from_partner)  # one axis-aligned rectangle
        assert torch.equal(out[i][:, ~box], feats[i][:, ~box])


def test_fa_is_applied_only_when_asked():
    d = small_d().eval()
    x = torch.randn(4, 3, 32, 48)
    plain = d(x)
    # without augment=True, even p_fa=1 and a generator change nothing and draw no random numbers
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    off = d(x, augment=False, p_fa=1.0, generator=g)
    assert torch.equal(g.get_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(off.content + off.layout, plain.content + plain.layout))
    # the heads of the trunk (before the branches) never see FA; the branches do when asked
    on = d(x, augment=True, p_fa=1.0, generator=g)
    assert all(torch.equal(a, b) for a, b in zip(on.low, plain.low))
    assert not torch.allclose(on.content[-1], plain.content[-1]) and not torch.allclose(on.layout[-1], plain.layout[-1])


# ------------------------------------------------------------------ losses


def test_adversarial_loss_weights_eq_5_2_and_official():
    # logits 0 everywhere -> every BCE is log 2
    z = lambda *s: torch.zeros(*s)
    out = S.DOutput(low=[z(1, 1, 4, 4)] * 3, content=[z(1, 1, 1, 1)] * 4, layout=[z(1, 1, 2, 2)] * 4)
    paper, parts = S.adversarial_loss(out, real=True)
    assert math.isclose(float(paper), (2 + 1 + 1) * math.log(2), rel_tol=1e-6)
    assert set(parts) == {"low", "content", "layout"}
    official, _ = S.adversarial_loss(out, real=True, normalisation="official")
    assert math.isclose(float(official), (3 + 0.5 * 4 + 0.5 * 4) / 7 * math.log(2), rel_tol=1e-6)
    # Eq. 5.1: per-part mean over blocks
    logits = [torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 1, 1), -1.0)]
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2
    assert math.isclose(float(per_block_bce(logits, real=True)), expected, rel_tol=1e-6)


def test_diversity_term_on_a_hand_computed_case():
    # batch of 3, two layers. Layer 1 (2 elements), layer 2 (1 element).
    f1 = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5]])
    f2 = torch.tensor([[0.0], [0.2], [0.8]])
    # pairs (0,1), (0,2), (1,2): layer-1 mean |diff| = 0.5, 0.25, 0.75; layer 2 = 0.2, 0.8, 0.6
    paper = S.diversity_regularisation([f1, f2])
    assert math.isclose(float(paper), (0.5 + 0.25 + 0.75 + 0.2 + 0.8 + 0.6) / 6, rel_tol=1e-6)
    official = S.diversity_regularisation([f1, f2], normalisation="official")
    assert math.isclose(float(official), (0.5 + 0.25 + 0.75 + 0.2 + 0.8 + 0.6) * 2 / (2 * 1), rel_tol=1e-6)
    with pytest.raises(ValueError, match="two samples"):
        S.diversity_regularisation([f1[:1]])


def test_official_normalisation_is_about_12x_stronger_at_paper_sizes():
    strength = S.official_dr_strength(0.15, batch_size=5, g_layers=7, num_low=3, num_branch=4)
    assert math.isclose(strength, 1.75, rel_tol=1e-9)
    assert 11 < strength / 0.15 < 12


def test_a_g_step_on_minus_dr_alone_increases_the_feature_distance():
    torch.manual_seed(0)
    g = S.Generator(noise_shape=(2, 3), num_blocks=3, base_channels=2)
    z = torch.randn(4, 64)
    opt = torch.optim.SGD(g.parameters(), lr=0.05)
    before = S.diversity_regularisation(g(z).features).item()
    loss = -S.diversity_regularisation(g(z).features)  # G maximises L_DR (Eq. 5.4)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert S.diversity_regularisation(g(z).features).item() > before


# ------------------------------------------------------------------ training


def _smoke_model(**kw):
    cfg = resolve("02_sivgan", "smoke")
    h, w = S.image_shape(cfg)
    frames = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return S.SIVGAN(cfg, frames, **kw)


def test_training_step_is_finite_and_deterministic():
    a, b = _smoke_model(), _smoke_model()
    la = [a.step(i) for i in range(2)]
    lb = [b.step(i) for i in range(2)]
    assert la == lb
    assert all(math.isfinite(v) for logs in la for v in logs.values())
    assert {"g_adv", "dr", "d_loss", "d_low", "d_content", "d_layout"} <= set(la[0])
    assert a.sample(3).shape == (3, 3, *S.image_shape(a.cfg))


def test_ablations_build_and_step():
    plain = _smoke_model(branches="none", lambda_dr=0.0)
    logs = plain.step(0)
    assert "d_plain" in logs and "d_content" not in logs


def test_bad_frames_are_rejected_before_training():
    cfg = resolve("02_sivgan", "smoke")
    with pytest.raises(ValueError, match="generator makes"):
        S.SIVGAN(cfg, torch.zeros(1, 3, 20, 20))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        S.SIVGAN(cfg, torch.full((1, 3, *S.image_shape(cfg)), 3.0))
    with pytest.raises(ValueError, match="normalisation"):
        _smoke_model(normalisation="mine")


# ------------------------------------------------------------------ weight-free metrics


def test_memorisation_metrics_see_copies_and_flips(empty_torch_home):
    frames = torch.rand(1, 3, 16, 24) * 2 - 1
    copies = torch.cat([frames, frames.flip(-1), frames])
    assert S.pixel_diversity(copies[[0, 2]], frames) == 0.0
    assert S.patch_realism(copies, frames) < 1e-3  # every patch exists in the image or its mirror
    scores = S.evaluate_samples(copies, frames)
    assert scores["dist_rmse"] < 1e-6  # a mirrored copy is still a copy
    noise = torch.rand(3, 3, 16, 24) * 2 - 1
    assert S.evaluate_samples(noise, frames)["dist_rmse"] > 0.3
    # no weights cached (empty TORCH_HOME): the pretrained-network metrics say so with None, no number
    assert scores["lpips_div"] is None and scores["dist_lpips"] is None and scores["sifid"] is None


def test_fa_only_on_real_features_and_da_in_both_g_and_d_steps():
    """Per iteration [L1426, L1460, CODE]: G step D(DA(fake)); D step D(DA(real), FA) and D(DA(fake)), no FA."""
    model = _smoke_model()
    augmented, calls = [], []
    augment, forward = model.augment, model.D.forward

    def spy_augment(levels):
        out = augment(levels)
        augmented.append(out)
        return out

    def spy_forward(images, augment=False, **kwargs):
        calls.append((any(images is a for a in augmented), augment, torch.is_grad_enabled() and
                      any(x.requires_grad for x in images)))
        return forward(images, augment=augment, **kwargs)

    model.augment, model.D.forward = spy_augment, spy_forward
    model.step(0)
    # (input went through DA, FA on, input carries G's gradient) for the three D calls, in order
    assert calls == [(True, False, True),    # G step: augmented fake, no FA, gradient flows to G
                     (True, True, False),    # D step: augmented real with FA
                     (True, False, False)]   # D step: augmented fresh fake, no FA, detached from G
    assert len(augmented) == 3


def test_step_count_is_fixed_and_a_guard_that_cuts_a_run_says_so():
    """Issue 10: no wall-clock budget decides how long an arm trains; a guard set by hand marks the cut."""
    assert all(t["time_budget_s"] is None and t["video_time_budget_s"] is None for t in S.PRESETS.values())
    cfg = resolve("02_sivgan", "smoke")
    frames = _smoke_model().frames
    _, done = S.train_arm(cfg, frames, iterations=3)
    assert done.steps == 3 and not done.stopped_by_budget
    _, cut = S.train_arm(cfg, frames, iterations=3, time_budget_s=1e-9)  # the notebook warns, complete=False
    assert cut.stopped_by_budget and cut.steps < 3
