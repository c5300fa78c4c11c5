"""OASIS (thesis ch. 4): losses on hand-computed cases, LabelMix, 3D noise, shapes, parameter counts."""

import math

import pytest
import torch
from torch import nn

from nbsyn.models import oasis
from nbsyn.models.oasis import (
    OASISDiscriminator, OASISGenerator, class_weights, count_parameters, d_loss, g_loss, labelmix,
    labelmix_loss, labelmix_mask, one_hot, resample_noise, resample_noise_for_class, sample_noise,
)
from nbsyn.models.spade_baseline import (
    MultiScaleDiscriminator, feature_matching_loss, hinge_d_loss, hinge_g_loss, make_baseline_step,
)
from nbsyn.nn.spade import SPADE

# A 2x2 label map with N = 2 classes: three pixels of class 0, one of class 1.
LABELS_2x2 = torch.tensor([[[0, 0], [0, 1]]])


def logits_from_probs(probs):
    """(H, W, N+1) probabilities -> (1, N+1, H, W) logits whose softmax gives them back."""
    return torch.tensor(probs, dtype=torch.float64).log().permute(2, 0, 1)[None]


# per-pixel probabilities over (class 0, class 1, fake) for the real image
REAL_PROBS = [[[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]],
              [[0.8, 0.1, 0.1], [0.2, 0.4, 0.4]]]
# -log p(true class): log 2, log 4, log 1.25 (class 0) and log 2.5 (class 1)
CE_CLASS0 = [math.log(2), math.log(4), math.log(1.25)]
CE_CLASS1 = [math.log(2.5)]
FAKE_PROBS = [[[0.25, 0.25, 0.5]] * 2] * 2  # p(fake) = 0.5 everywhere -> -log = log 2


def test_class_weights_eq_4_3_on_2x2():
    # paper: alpha_c = H*W / E_t[n_c]: 4/3 for class 0, 4/1 for class 1
    assert torch.allclose(class_weights(LABELS_2x2, 2, "paper"), torch.tensor([4 / 3, 4.0]))
    # official code: divided by K = 2 classes present
    assert torch.allclose(class_weights(LABELS_2x2, 2, "official"), torch.tensor([2 / 3, 2.0]))
    assert torch.allclose(class_weights(LABELS_2x2, 2, "none"), torch.tensor([1.0, 1.0]))
    # absent classes and the don't-care class get 0
    assert torch.allclose(class_weights(LABELS_2x2, 3, "paper", dontcare=1), torch.tensor([4 / 3, 0.0, 0.0]))
    with pytest.raises(ValueError, match="class balancing"):
        class_weights(LABELS_2x2, 2, "median")


def test_class_weights_are_per_batch():
    # E_t over a batch of two maps: class 1 has 1 + 4 = 5 of 8 pixels -> alpha_1 = 8 / 5
    labels = torch.cat([LABELS_2x2, torch.ones(1, 2, 2, dtype=torch.long)])
    assert torch.allclose(class_weights(labels, 2, "paper"), torch.tensor([8 / 3, 8 / 5]))


def test_d_loss_eq_4_2_hand_computed():
    real, fake = logits_from_probs(REAL_PROBS), logits_from_probs(FAKE_PROBS)
    alpha = class_weights(LABELS_2x2, 2, "paper").double()
    loss, parts = d_loss(real, fake, LABELS_2x2, alpha)
    # Eq. 4.2 divided by H*W: (1/4) * [sum over pixels of alpha_c * CE] + mean fake CE
    expected_real = (4 / 3 * sum(CE_CLASS0) + 4 * sum(CE_CLASS1)) / 4
    assert parts["d_real"] == pytest.approx(expected_real, rel=1e-6)
    assert parts["d_fake"] == pytest.approx(math.log(2), rel=1e-6)
    assert loss.item() == pytest.approx(expected_real + math.log(2), rel=1e-6)
    # the same number read as "sum over classes of each class's mean CE" (balancing at work)
    assert expected_real == pytest.approx(sum(CE_CLASS0) / 3 + sum(CE_CLASS1) / 1)


def test_official_normalisation_averages_over_present_classes():
    real, fake = logits_from_probs(REAL_PROBS), logits_from_probs(FAKE_PROBS)
    _, parts = d_loss(real, fake, LABELS_2x2, class_weights(LABELS_2x2, 2, "official").double())
    assert parts["d_real"] == pytest.approx((sum(CE_CLASS0) / 3 + sum(CE_CLASS1)) / 2, rel=1e-6)
    # unbalanced N+1 loss: plain mean CE over the 4 pixels
    _, parts = d_loss(real, fake, LABELS_2x2, class_weights(LABELS_2x2, 2, "none").double())
    assert parts["d_real"] == pytest.approx((sum(CE_CLASS0) + sum(CE_CLASS1)) / 4, rel=1e-6)


def test_g_loss_eq_4_5_hand_computed():
    # G is scored with the real-class CE of D on its *fake* image, with the same alpha_c
    fake_logits = logits_from_probs(REAL_PROBS)
    alpha = class_weights(LABELS_2x2, 2, "paper").double()
    expected = (4 / 3 * sum(CE_CLASS0) + 4 * sum(CE_CLASS1)) / 4
    assert g_loss(fake_logits, LABELS_2x2, alpha).item() == pytest.approx(expected, rel=1e-6)


def test_dontcare_pixels_do_not_count_in_real_term():
    real, fake = logits_from_probs(REAL_PROBS), logits_from_probs(FAKE_PROBS)
    alpha = class_weights(LABELS_2x2, 2, "paper", dontcare=1).double()
    _, parts = d_loss(real, fake, LABELS_2x2, alpha)
    assert parts["d_real"] == pytest.approx(4 / 3 * sum(CE_CLASS0) / 4, rel=1e-6)


def test_d_segmentation_ignores_fake_channel():
    logits = torch.tensor([[[[0.0]], [[1.0]], [[9.0]]]])  # fake channel largest
    assert oasis.d_segmentation(logits).item() == 1


def test_labelmix_mask_one_coin_per_class():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (4, 8, 8), generator=gen)
    seen = {c: set() for c in range(5)}
    for _ in range(40):
        mask = labelmix_mask(labels, gen)
        assert mask.shape == (4, 1, 8, 8)
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        for c in range(5):
            values = mask[:, 0][labels == c].unique()
            assert values.numel() == 1, f"class {c} got mixed coins {values.tolist()}"
            seen[c].add(values.item())
    assert all(v == {0.0, 1.0} for v in seen.values()), "every class should draw both real and fake"


def test_labelmix_operator():
    a, b = torch.full((1, 3, 2, 2), 1.0), torch.full((1, 3, 2, 2), -1.0)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    out = labelmix(a, b, mask)
    assert torch.equal(out[0, 0], torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))


def test_labelmix_loss_eq_4_4():
    mask = torch.tensor([[[[1.0, 0.0]]]])
    real, fake = torch.tensor([[[[1.0, 2.0]]]]), torch.tensor([[[[3.0, 5.0]]]])
    mixed = torch.tensor([[[[0.0, 0.0]]]])
    # target = M*D(x) + (1-M)*D(x_hat) = [1, 5]; mean squared difference to [0, 0] = (1 + 25) / 2
    assert labelmix_loss(mixed, real, fake, mask).item() == pytest.approx(13.0)


def test_labelmix_consistency_is_zero_for_a_pixelwise_discriminator():
    # a per-pixel D (1x1 conv) commutes with LabelMix, so Eq. 4.4 vanishes; a U-Net D does not
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (2, 16, 16))
    real, fake = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    mask = labelmix_mask(labels, torch.Generator().manual_seed(1))
    mixed = labelmix(real, fake, mask)
    pixelwise = nn.Conv2d(3, 4, 1)
    loss = labelmix_loss(pixelwise(mixed), pixelwise(real), pixelwise(fake), mask)
    assert loss.item() < 1e-12
    unet = OASISDiscriminator(3, channels=4, num_res_blocks=2)
    nn.init.normal_(unet.to_logits.weight)  # the 0.02-gain init makes logits tiny; scale them up
    assert labelmix_loss(unet(mixed), unet(real), unet(fake), mask).item() > 1e-6


def test_global_noise_is_constant_over_pixels():
    noise = sample_noise(2, 5, (4, 6), torch.Generator().manual_seed(0))
    assert noise.shape == (2, 5, 4, 6)
    assert torch.equal(noise, noise[:, :, :1, :1].expand_as(noise))
    assert not torch.equal(noise[0], noise[1])


def test_per_class_resampling_changes_only_that_class_region():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (2, 8, 8), generator=gen)
    noise = sample_noise(2, 6, (8, 8), gen)
    new = resample_noise_for_class(noise, labels, 2, gen)
    changed = (new != noise).any(dim=1)
    assert torch.equal(changed, labels == 2)
    assert ((new != noise).all(dim=1) == (labels == 2)).all()  # every channel changes inside
    inside = new.permute(0, 2, 3, 1)[labels == 2]
    for b in range(2):  # one new vector per image, constant over the region
        region = new[b].permute(1, 2, 0)[labels[b] == 2]
        assert torch.allclose(region, region[:1].expand_as(region))
    assert inside.shape[1] == 6


def test_resample_noise_checks_region_shape():
    with pytest.raises(ValueError, match="region"):
        resample_noise(torch.zeros(1, 4, 8, 8), torch.zeros(8, 8, dtype=torch.bool))


def test_generator_shapes_and_noise_dependence():
    torch.manual_seed(0)
    G = OASISGenerator(5, z_dim=8, channels=4, num_res_blocks=3, spade_hidden=8).eval()
    labels = one_hot(torch.randint(0, 5, (2, 16, 16)), 5)
    noise = sample_noise(2, 8, (16, 16))
    out = G(labels, noise)
    assert out.shape == (2, 3, 16, 16) and out.abs().max() <= 1
    assert torch.equal(out, G(labels, noise))  # deterministic given the noise
    assert torch.equal(out, G(labels, noise[:, :, 0, 0]))  # a (B, M) vector is broadcast
    assert not torch.allclose(out, G(labels, sample_noise(2, 8, (16, 16))))


def test_generator_rejects_bad_input():
    G = OASISGenerator(5, z_dim=8, channels=4, num_res_blocks=3, spade_hidden=8)
    with pytest.raises(ValueError, match="one-hot"):
        G(torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match="divisible"):
        G(torch.zeros(1, 5, 18, 18))
    with pytest.raises(ValueError, match="noise"):
        G(torch.zeros(1, 5, 16, 16), torch.zeros(1, 7, 16, 16))
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        one_hot(torch.full((1, 4, 4), 5), 5)


def test_discriminator_outputs_n_plus_one_logits_at_full_resolution():
    D = OASISDiscriminator(5, channels=4, num_res_blocks=3)
    assert D(torch.zeros(2, 3, 16, 24)).shape == (2, 6, 16, 24)
    with pytest.raises(ValueError, match="divisible"):
        D(torch.zeros(1, 3, 12, 12))


def test_spade_reduces_to_plain_norm_when_gamma_beta_vanish():
    torch.manual_seed(0)
    layer = SPADE(4, 3, hidden=8).train()
    for conv in (layer.gamma, layer.beta):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    x, seg = torch.randn(2, 4, 8, 8), torch.rand(2, 3, 4, 4)
    assert torch.allclose(layer(x, seg), nn.functional.batch_norm(x, None, None, training=True), atol=1e-6)
    nn.init.ones_(layer.beta.bias)
    assert torch.allclose(layer(x, seg) - 1, nn.functional.batch_norm(x, None, None, training=True), atol=1e-6)


def _conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def _spade(c, cond, hidden=128):  # shared 3x3 conv cond -> 128, then gamma and beta 3x3 convs 128 -> c
    return _conv(cond, hidden, 3) + 2 * _conv(hidden, c, 3)


def _spade_res_block(fin, fout, cond):  # SPADE, conv 3x3, SPADE, conv 3x3 (+ SPADE, 1x1 shortcut w/o bias)
    mid = min(fin, fout)
    n = _spade(fin, cond) + _conv(fin, mid, 3) + _spade(mid, cond) + _conv(mid, fout, 3)
    return n + (_spade(fin, cond) + _conv(fin, fout, 1, bias=False) if fin != fout else 0)


# Paper size (ADE20K, N = 151 = 150 classes + "other", 256 px, channels 64, 6 blocks), counted by hand
# from the architecture of the official code (specs/oasis.md 2.2):
#   G widths 1024, 1024, 1024, 512, 256, 128, 64; first conv 3x3 (N -> 1024); six SPADE residual
#   blocks; to_rgb 3x3 (64 -> 3). Without 3D noise:        72,545,219  ("72M", L1095)
#   + SPADE's first residual block (1024 -> 1024):       + 23,947,264 = 96,492,483  ("96M", L1095)
#   + 3D noise (64 channels in the first conv and the 16 SPADE embedding convs):
#                                        + 64 * 9 * (1024 + 16 * 128) = 1,769,472 -> 74,314,691
#   D: U-Net, encoder widths 128, 128, 256, 256, 512, 512 (residual down blocks, 1x1 shortcut where the
#   width changes and in the first block), decoder mirrored with skip concatenation, 1x1 to N + 1 logits:
#                                                       22,258,904  (G 72.5M + D 22.3M = 94.8M ~ "94M", Table 4.1)
PAPER_G, PAPER_G_FIRST_BLOCK, PAPER_D = 72_545_219, 96_492_483, 22_258_904


def _paper_counts_by_hand(n, z_dim=0, first_block=False):
    cond = n + z_dim
    widths = [1024, 1024, 1024, 512, 256, 128, 64]
    g = _conv(cond, 1024, 3) + _conv(64, 3, 3)
    g += sum(_spade_res_block(a, b, cond) for a, b in zip(widths[:-1], widths[1:]))
    g += _spade_res_block(1024, 1024, cond) if first_block else 0
    enc = [128, 128, 256, 256, 512, 512]
    d = sum(_conv(a, b, 3) + _conv(b, b, 3) + (_conv(a, b, 1) if a != b or i == 0 else 0)
            for i, (a, b) in enumerate(zip([3] + enc[:-1], enc)))
    dec_in, dec_out = [512, 1024, 512, 512, 256, 256], [512, 256, 256, 128, 128, 64]
    d += sum(_conv(a, b, 3) + _conv(b, b, 3) + (_conv(a, b, 1) if a != b else 0) for a, b in zip(dec_in, dec_out))
    d += _conv(64, n + 1, 1)
    return g, d


def test_parameter_counts_at_paper_settings():
    cfg = oasis.PRESETS["paper"]
    n = oasis.PAPER_DATASETS["ade20k"]["num_classes"]  # 151 = 150 classes + "other"
    assert (cfg["image_size"], cfg["num_res_blocks"], cfg["channels_g"], cfg["channels_d"]) == (256, 6, 64, 64)
    assert oasis.generator_channels(64, 6) == [1024, 1024, 1024, 512, 256, 128, 64]
    # the hand count reproduces the pinned numbers ...
    assert _paper_counts_by_hand(n) == (PAPER_G, PAPER_D)
    assert _paper_counts_by_hand(n, first_block=True)[0] == PAPER_G_FIRST_BLOCK
    assert _paper_counts_by_hand(n, z_dim=64)[0] - PAPER_G == 64 * 9 * (1024 + 16 * 128) == 1_769_472
    # ... and so do the models the paper preset builds (parameters only, no forward pass)
    G96 = OASISGenerator(n, z_dim=0, channels=cfg["channels_g"], num_res_blocks=cfg["num_res_blocks"],
                         first_block=True, spade_hidden=cfg["spade_hidden"])
    assert count_parameters(G96) == PAPER_G_FIRST_BLOCK
    assert count_parameters(G96) - count_parameters(G96.extra_block) == PAPER_G
    del G96
    assert count_parameters(oasis.build_generator({**cfg, "z_dim": 0}, n)) == PAPER_G
    assert count_parameters(oasis.build_generator(cfg, n)) == PAPER_G + 1_769_472  # with 3D noise (z_dim 64)
    assert count_parameters(oasis.build_discriminator(cfg, n)) == PAPER_D


def _tiny_pair(num_classes=4):
    G = OASISGenerator(num_classes, z_dim=4, channels=4, num_res_blocks=2, spade_hidden=8)
    D = OASISDiscriminator(num_classes, channels=4, num_res_blocks=2)
    return G, D


def _cancelled_by_batchnorm(G, param, labels, noise):
    """True if shifting ``param`` leaves G's train-mode output unchanged (a bias right before BN)."""
    for m in G.modules():  # batch statistics on, but no spectral-norm power iteration between calls
        if type(m).__name__ == "_SpectralNorm":
            m.eval()
    with torch.no_grad():
        before = G(labels, noise)
        param.add_(1.0)
        after = G(labels, noise)
        param.sub_(1.0)
    return torch.allclose(before, after, atol=1e-9)


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    G, D = _tiny_pair()
    G, D = G.double(), D.double()
    labels = torch.randint(0, 4, (2, 8, 8))
    onehot, noise = one_hot(labels, 4).double(), sample_noise(2, 4, (8, 8)).double()
    real = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1
    alpha = class_weights(labels, 4).double()
    g_loss(D(G(onehot, noise)), labels, alpha).backward()
    no_grad = [n for n, p in G.named_parameters() if p.grad is None or p.grad.abs().max() < 1e-14]
    # the only exceptions are per-channel biases that a batch norm subtracts again (as in the
    # official code): the output provably does not depend on them, and no weight is among them
    assert all(n.endswith("bias") for n in no_grad), no_grad
    params = dict(G.named_parameters())
    assert all(_cancelled_by_batchnorm(G, params[n], onehot, noise) for n in no_grad)
    assert not _cancelled_by_batchnorm(G, params["to_rgb.bias"], onehot, noise)
    D.zero_grad()
    fake = G(onehot, noise).detach()
    mask = labelmix_mask(labels, torch.Generator().manual_seed(0)).double()
    loss, _ = d_loss(D(real), D(fake), labels, alpha)
    (loss + labelmix_loss(D(labelmix(real, fake, mask)), D(real), D(fake), mask)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters())


def test_baseline_gradients_and_losses():
    torch.manual_seed(0)
    G = OASISGenerator(4, z_dim=4, channels=4, num_res_blocks=2, spade_hidden=8)
    D = MultiScaleDiscriminator(4, ndf=4, n_layers=2, num_d=2)
    labels = one_hot(torch.randint(0, 4, (2, 16, 16)), 4)
    real = torch.rand(2, 3, 16, 16) * 2 - 1
    out_fake, out_real = D(G(labels), labels), D(real, labels)
    assert len(out_fake) == 2 and out_fake[1][-1].shape[-1] < out_fake[0][-1].shape[-1]
    (hinge_g_loss(out_fake) + 10 * feature_matching_loss(out_real, out_fake)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())
    D.zero_grad()
    hinge_d_loss(D(real, labels), D(G(labels).detach(), labels)).backward()
    assert all(p.grad is not None for p in D.parameters())
    # (the final biases may get exactly 0: d/db of mean relu(1 - b..) + mean relu(1 + b..) = -1 + 1)
    assert all(p.grad.abs().sum() > 0 for n, p in D.named_parameters() if not n.endswith("bias"))
    # hinge values on known scores: relu(1 - 2) + relu(1 + 0.5) = 1.5
    scores_real, scores_fake = [[torch.full((1, 1, 2, 2), 2.0)]], [[torch.full((1, 1, 2, 2), 0.5)]]
    assert hinge_d_loss(scores_real, scores_fake).item() == pytest.approx(1.5)
    assert hinge_g_loss(scores_fake).item() == pytest.approx(-0.5)


def _run_steps(step_factory, seed, steps=3):
    torch.manual_seed(seed)
    G, D = _tiny_pair()
    if step_factory is make_baseline_step:
        D = MultiScaleDiscriminator(4, ndf=4, n_layers=2, num_d=2)
    opt_g = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.0, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 4e-4, betas=(0.0, 0.999))
    data_gen = torch.Generator().manual_seed(seed)
    images, labels = torch.rand(8, 3, 16, 16) * 2 - 1, torch.randint(0, 4, (8, 16, 16), generator=data_gen)

    def batch():
        idx = torch.randint(0, 8, (2,), generator=data_gen)
        return images[idx], labels[idx]

    step = step_factory(G, D, opt_g, opt_d, batch, noise_generator=torch.Generator().manual_seed(seed))
    return [step(i) for i in range(steps)], G


def test_train_step_is_deterministic_and_updates_the_generator():
    logs_a, G_a = _run_steps(oasis.make_train_step, 0)
    logs_b, G_b = _run_steps(oasis.make_train_step, 0)
    assert logs_a == logs_b
    assert {"loss_g", "loss_d", "d_real", "d_fake", "labelmix"} <= set(logs_a[0])
    torch.manual_seed(0)
    G0, _ = _tiny_pair()
    assert any(not torch.equal(p, q) for p, q in zip(G0.parameters(), G_a.parameters()))
    logs_base, _ = _run_steps(make_baseline_step, 0)
    assert {"loss_g", "loss_d", "g_adv", "g_fm"} <= set(logs_base[0])


def test_presets_and_paper_settings():
    for name, table in oasis.PRESETS.items():
        size = table["image_size"]
        assert size % 2 ** table["num_res_blocks"] == 0, name  # D halves the image num_res_blocks times
    city = oasis.paper_settings("cityscapes")
    assert (city["image_size"], city["aspect"], city["batch_size"]) == (256, 2, 20)
    assert oasis.paper_settings("ade20k")["iterations"] == 200 * (20_210 // 32)  # 200 epochs (L1121)
    assert oasis.paper_settings("cocostuff")["lambda_labelmix"] == 10.0  # L1121
    with pytest.raises(ValueError, match="ade20k"):
        oasis.paper_settings("lvis")


def test_train_variant_runs_every_discriminator_setup():
    from nbsyn.data import make_dataset

    cfg = dict(oasis.PRESETS["smoke"], iterations=2, time_budget_s=None)
    train = make_dataset("scenes", 8, 32, seed=0)
    for variant, setup in oasis.VARIANTS.items():
        run = oasis.train_variant(cfg, variant, train, seed=0, progress=False)
        assert run.history.steps == 2
        losses = run.history.losses
        if setup["discriminator"] == "oasis":
            assert isinstance(run.D, OASISDiscriminator)
            assert ("labelmix" in losses) == setup["labelmix"]
        else:
            assert isinstance(run.D, MultiScaleDiscriminator)
            assert (max(losses["g_fm"]) > 0) == setup["feature_matching"]
        oasis.recalibrate_ema(run, train, cfg, train.num_classes)
    with pytest.raises(ValueError, match="unknown variant"):
        oasis.train_variant(cfg, "pix2pix", train, seed=0)


class _SpyAdam(torch.optim.Adam):
    """Adam that calls ``hook()`` just before each update (to look at the other network mid-iteration)."""

    def __init__(self, params, hook, **kwargs):
        super().__init__(params, **kwargs)
        self.hook = hook

    def step(self, closure=None):
        self.hook()
        return super().step(closure)


def test_g_step_leaves_d_untouched_and_d_step_fake_is_detached_from_g():
    torch.manual_seed(0)
    G, D = _tiny_pair()
    d_before = [p.detach().clone() for p in D.parameters()]
    seen = {}

    def at_g_update():  # end of the G step, before G's parameters change
        seen["d_grads"] = [p.grad for p in D.parameters()]
        seen["d_params"] = [p.detach().clone() for p in D.parameters()]
        seen["g_grads"] = [None if p.grad is None else p.grad.clone() for p in G.parameters()]

    def at_d_update():  # end of the D step: G's gradients must still be those of the G step
        seen["g_grads_after_d"] = [None if p.grad is None else p.grad.clone() for p in G.parameters()]
        seen["d_has_grads"] = all(p.grad is not None for p in D.parameters())

    opt_g = _SpyAdam(G.parameters(), at_g_update, lr=1e-4, betas=(0.0, 0.999))
    opt_d = _SpyAdam(D.parameters(), at_d_update, lr=4e-4, betas=(0.0, 0.999))
    images, labels = torch.rand(2, 3, 16, 16) * 2 - 1, torch.randint(0, 4, (2, 16, 16))
    step = oasis.make_train_step(G, D, opt_g, opt_d, lambda: (images, labels),
                                 noise_generator=torch.Generator().manual_seed(0))
    step(0)
    # G step: D gets no gradient and no update, and is trainable again afterwards
    assert all(g is None for g in seen["d_grads"])
    assert all(torch.equal(a, b) for a, b in zip(d_before, seen["d_params"]))
    assert all(p.requires_grad for p in D.parameters())
    # D step: the loss of D did not flow back into G (the fake is detached), while D did learn
    assert any(g is not None and g.abs().sum() > 0 for g in seen["g_grads"])
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(seen["g_grads"], seen["g_grads_after_d"]))
    assert seen["d_has_grads"]
    assert any(not torch.equal(a, p) for a, p in zip(d_before, D.parameters()))
