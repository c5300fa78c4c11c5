"""SemIA (notebook 08): parameter counts vs the spec, shapes, Eq. 4/6/7/11/12 on hand-computed cases,
what is frozen stays frozen, the two modes, progressive augmentation, Image Analogies, region edits,
determinism and bad input."""

import math

import pytest
import torch

from nbsyn.models import semia as M
from nbsyn.presets import resolve

torch.set_num_threads(1)
c = M.count_parameters


# ------------------------------------------------------------------ parameter counts (spec §2.7, §9)


def test_paper_parameter_counts_match_the_spec():
    cfg = resolve("08_semantic_image_analogy", "paper")
    G, D, S = M.build_semia(cfg, 4, 256)
    assert c(G) == 5_513_254  # one-hot N = 4 (scene)
    assert c(M.Encoder(3, 32)) == 1_502_640  # E_seg with the code's colour labels, incl. its tail
    assert c(G.encoder) == 1_502_640
    assert c(G.decoder) == 2_148_902
    assert c(G.sft.gamma) == c(G.sft.beta) == 178_752
    assert c(M.SemIAGenerator(3, 32)) == 5_511_686  # the code's 3 colour channels: G(N) = 5,511,686 + (N-3) 1568
    assert c(M.SemIAGenerator(19, 32)) == 5_536_774 and c(M.SemIAGenerator(183, 32)) == 5_793_926
    assert c(D) == 877_633  # the paper-text PatchGAN
    assert c(M.AuxASPP(3, 128)) == 221_315 and c(S) == 220_928 + 129 * 4
    assert c(M.FPSEDiscriminator(64)) == 1_058_625  # the code's D, modules used in forward


def test_cpu_parameter_counts_match_the_spec():
    cfg = resolve("08_semantic_image_analogy", "cpu")
    G, D, S = M.build_semia(cfg, 4, 48)
    assert (c(G), c(D), c(S)) == (349_510, 55_825, 15_428)
    G5, _, S5 = M.build_semia(cfg, 5, 64)
    assert (c(G5), c(S5)) == (349_902, 15_461)
    from nbsyn.models.oasis import OASISGenerator

    b1 = OASISGenerator(4, z_dim=0, channels=cfg.spade_channels, num_res_blocks=cfg.spade_blocks,
                        spade_hidden=cfg.spade_hidden)
    assert c(b1) == 344_059  # B1 matched to M's generator size
    assert [c(M.SemIAGenerator(4, b)) for b in (16, 4)] == [1_384_886, 89_024]
    assert [c(M.PatchGAN(b)) for b in (16, 4)] == [220_705, 14_281]


def test_presets_have_the_same_keys_and_official_switches_d():
    tables = {p: resolve("08_semantic_image_analogy", p).as_dict() for p in ("smoke", "cpu", "gpu", "paper")}
    assert len({tuple(sorted(t)) for t in tables.values()}) == 1
    assert tables["paper"]["rec_every"] == 10 and tables["paper"]["lr_g"] == 5e-4  # L193, L195
    assert tables["paper"]["variant"] == "paper"
    _, D, _ = M.build_semia({**tables["smoke"], "variant": "official"}, 4, 16)
    assert isinstance(D, M.FPSEDiscriminator)


# ------------------------------------------------------------------ G: shapes, Eq. 4, 5, 6


def small_g(n=4, base=4):
    torch.manual_seed(0)
    return M.SemIAGenerator(n, base)


def test_generator_shapes_and_three_gamma_beta_pairs():
    G = small_g()
    img = torch.randn(2, 3, 16, 24)
    p = torch.randint(0, 4, (2, 16, 24))
    out = G(img, p, p.flip(-1))
    assert out.image.shape == (2, 3, 16, 24)
    for l, (g, b) in enumerate(zip(out.gammas, out.betas), start=1):
        assert g.shape == b.shape == (2, 4 * 2**l, 16 // 2**l, 24 // 2**l)


def test_identity_map_gives_scale_one_and_shift_zero_exactly():
    G = small_g()
    p = torch.randint(0, 4, (1, 16, 24))
    out = G(torch.randn(1, 3, 16, 24), p, p)
    assert all(torch.equal(s, torch.ones_like(s)) for s in out.f_scale)
    assert all(torch.equal(s, torch.zeros_like(s)) for s in out.f_shift)


def test_translation_inputs_ratio_difference_and_clamp():
    src, tgt = torch.tensor([2.0, 0.5, 1e-3]), torch.tensor([4.0, 0.25, 1.0])
    scale, shift = M.translation_inputs(src, tgt, clamp=10.0)
    assert torch.allclose(scale, torch.tensor([2.0, 0.5, 10.0]))  # 1000 clamped to 10
    assert torch.allclose(shift, torch.tensor([2.0, -0.25, 0.999]))
    scale, _ = M.translation_inputs(torch.zeros(2), torch.zeros(2))
    assert torch.isfinite(scale).all()


def test_sft_branches_are_separate():
    sft = M.SFT([8, 16]).eval()  # eval: spectral norm's power iteration does not step between calls
    scales = [torch.randn(1, 8, 4, 4), torch.randn(1, 16, 2, 2)]
    shifts = [torch.randn(1, 8, 4, 4), torch.randn(1, 16, 2, 2)]
    g0, b0 = sft(scales, shifts)
    g1, b1 = sft([s + 1 for s in scales], shifts)
    g2, b2 = sft(scales, [s + 1 for s in shifts])
    assert all(torch.equal(a, b) for a, b in zip(b0, b1))  # beta ignores F_scale
    assert all(torch.equal(a, b) for a, b in zip(g0, g2))  # gamma ignores F_shift
    assert not torch.equal(g0[0], g1[0]) and not torch.equal(b0[0], b2[0])


def test_modulation_eq6_on_a_hand_case():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    std = math.sqrt(5 / 3 + 1e-5)  # unbiased variance of 1..4 is 5/3
    expected = (x - 2.5) / std * 3.0 + 0.5
    assert torch.allclose(M.modulate(x, torch.full_like(x, 3.0), torch.full_like(x, 0.5)), expected, atol=1e-6)


def test_bad_sizes_and_label_ids_are_clear_errors():
    G = small_g()
    with pytest.raises(ValueError, match="divisible by 8"):
        G(torch.randn(1, 3, 12, 24), torch.zeros(1, 12, 24, dtype=torch.long), torch.zeros(1, 12, 24, dtype=torch.long))
    with pytest.raises(ValueError, match="label map"):
        G(torch.randn(1, 3, 16, 24), torch.zeros(1, 16, 16, dtype=torch.long), torch.zeros(1, 16, 24, dtype=torch.long))
    with pytest.raises(ValueError, match="label ids"):
        M.check_pair(torch.zeros(3, 16, 24), torch.full((16, 24), 7), 4)
    with pytest.raises(ValueError, match="label map"):
        M.check_pair(torch.zeros(3, 16, 24), torch.zeros(16, 16, dtype=torch.long), 4)


# ------------------------------------------------------------------ D and S


def test_discriminators_and_aux_classifier_shapes():
    scores, feats = M.PatchGAN(4)(torch.randn(1, 3, 16, 24))
    assert scores[0].shape == (1, 1, 2, 3) and [f.shape[1] for f in feats] == [8, 16, 32]
    scores, feats = M.FPSEDiscriminator(8)(torch.randn(1, 3, 16, 24))
    assert [s.shape[-2:] for s in scores] == [(4, 6), (2, 3)] and len(feats) == 2
    assert M.AuxASPP(5, 8, M.aspp_rates(16))(torch.randn(2, 3, 16, 24)).shape == (2, 5, 16, 24)
    assert M.aspp_rates(250) == (8, 16)  # the code's rates at its image size


# ------------------------------------------------------------------ losses


def two_class_source():
    src = torch.zeros(1, 3, 8, 8)
    src[..., 4:] = 1.0
    lab = torch.zeros(1, 8, 8, dtype=torch.long)
    lab[..., 4:] = 1
    return src, lab


def test_patch_coherence_is_zero_for_the_source_itself():
    src, lab = two_class_source()
    gen = torch.Generator().manual_seed(0)
    assert M.patch_coherence_loss(src.clone(), src, lab, lab, (8, 4), k=3, generator=gen).item() == 0.0


def test_patch_coherence_never_matches_across_classes():
    # generated patches are all 0 (a perfect match for class-0 source patches) but labelled class 1:
    # the same-class nearest patch is the class-1 one, at mean L1 distance 1 (k = 1 pixels, both stages)
    src, lab = two_class_source()
    fake = torch.zeros(1, 3, 8, 8, requires_grad=True)
    target = torch.ones(1, 8, 8, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    loss = M.patch_coherence_loss(fake, src.requires_grad_(), target, lab, (5, 3), k=1, generator=gen)
    assert loss.item() == pytest.approx(1.0)
    glob = M.patch_coherence_loss(fake, src, target, lab, (5, 3), k=1, search="global", top_k=1, generator=gen)
    assert glob.item() == pytest.approx(0.0)  # the code's global search matches the wrong class
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert src.grad is None  # the source is detached


def test_patch_coherence_skips_classes_absent_from_the_source():
    src, lab = two_class_source()
    target = torch.full((1, 8, 8), 2, dtype=torch.long)  # class 2 does not exist in the source
    loss = M.patch_coherence_loss(src.clone(), src, target, lab, (4, 2), k=1, generator=torch.Generator())
    assert loss.item() == 0.0


def test_fixed_point_and_lsgan_on_hand_cases():
    g, b = [torch.ones(1, 2, 2, 2), torch.full((1, 4, 1, 1), 2.0)], [torch.zeros(1, 2, 2, 2), torch.full((1, 4, 1, 1), 0.5)]
    assert M.fixed_point_loss(g, b).item() == pytest.approx(0 + 0 + 1.0 + 0.5)  # Eq. 12
    real, fake = [torch.ones(1, 1, 2, 2)], [torch.zeros(1, 1, 2, 2)]
    assert M.lsgan_d(real, fake).item() == 0.0 and M.lsgan_g(fake).item() == pytest.approx(0.5)  # with 1/2
    assert M.feature_matching([torch.ones(2)], [torch.zeros(2)]).item() == 1.0


# ------------------------------------------------------------------ progressive augmentation


def test_augment_identity_at_zero_and_labels_stay_in_the_class_set():
    img, lab = torch.randn(1, 3, 16, 24), torch.randint(0, 3, (1, 16, 24))
    gen = torch.Generator().manual_seed(0)
    a, b = M.progressive_augment(img, lab, 0.0, gen)
    assert torch.equal(a, img) and torch.equal(b, lab)
    a, b = M.progressive_augment(img, lab, 1.0, gen)
    assert b.dtype == torch.long and set(b.unique().tolist()) <= {0, 1, 2}
    assert not torch.equal(a, img)


def test_augment_moves_image_and_labels_together():
    img = -torch.ones(4, 3, 24, 32)
    lab = torch.zeros(4, 24, 32, dtype=torch.long)
    img[:, :, 8:14, 20:26] = 1.0
    lab[:, 8:14, 20:26] = 1
    a, b = M.progressive_augment(img, lab, 1.0, torch.Generator().manual_seed(3))
    for i in range(4):
        bright = a[i, 0] > 0.5
        assert (bright & (b[i] == 1)).sum() >= 0.6 * bright.sum()  # the marker and its label coincide


def test_augment_randomness_grows_with_strength():
    img, lab = torch.randn(8, 3, 16, 24), torch.randint(0, 3, (8, 16, 24))
    d = [(M.progressive_augment(img, lab, f, torch.Generator().manual_seed(0))[0] - img).abs().mean() for f in (0.1, 1.0)]
    assert d[0] < d[1]


# ------------------------------------------------------------------ training: modes, frozen nets, determinism


def smoke_cfg(**kw):
    return {**resolve("08_semantic_image_analogy", "smoke").as_dict(), **kw}


def scene():
    img, lab, edits = M.render_scene_edits(16, 24)
    return img, lab, edits


def test_reconstruction_mode_learns_the_identity_path():
    img, lab, _ = scene()
    cfg = smoke_cfg(rec_every=1, g_steps=1, iterations=50, curve_every=1000)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    G, D, S = M.build_semia(cfg, 4, 16)
    opts = [torch.optim.Adam(m.parameters(), lr, betas=(0.0, 0.9)) for m, lr in ((G, 5e-3), (D, 2e-2), (S, 5e-3))]
    step = M.make_semia_step(G, D, S, opts, img, lab, cfg, generator=gen)
    s_before = [p.clone() for p in S.parameters()]
    logs = [step(i) for i in range(50)]
    first, last = logs[0], logs[-5:]
    assert sum(x["g_rec"] for x in last) / 5 < first["g_rec"]
    assert sum(x["g_fp"] for x in last) / 5 < first["g_fp"]
    assert all(x["rec"] == 1.0 for x in logs)
    # the paper trains S in sampling iterations only: 50 reconstruction iterations leave S untouched
    assert all(torch.equal(a, b) for a, b in zip(s_before, S.parameters()))


def test_sampling_step_uses_s_frozen_and_gives_g_a_semantic_gradient():
    img, lab, _ = scene()
    cfg = smoke_cfg(rec_every=1000, g_steps=1, lr_s=0.0)
    torch.manual_seed(0)
    G, D, S = M.build_semia(cfg, 4, 16)
    opts = [torch.optim.Adam(m.parameters(), 1e-3, betas=(0.0, 0.9)) for m in (G, D, S)]
    step = M.make_semia_step(G, D, S, opts, img, lab, cfg, generator=torch.Generator().manual_seed(0))
    out = step(1)
    assert out["rec"] == 0.0 and {"g_patch", "g_seg", "g_gan", "loss_s"} <= set(out)
    assert all(p.requires_grad is False for p in S.parameters())  # frozen while it scores G
    # Eq. 8: the CE term reaches G (variant paper); the official code detaches it
    o = G(img[None], lab[None], lab[None])
    torch.nn.functional.cross_entropy(S(o.image), lab[None]).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())


def test_training_is_deterministic_and_both_variants_run():
    img, lab, _ = scene()
    cfg = smoke_cfg(iterations=3)
    a = M.train_semia(cfg, img, lab, 4, seed=1, progress=False)
    b = M.train_semia(cfg, img, lab, 4, seed=1, progress=False)
    assert a.history.losses == b.history.losses
    assert all(torch.equal(p, q) for p, q in zip(a.G.state_dict().values(), b.G.state_dict().values()))
    off = M.train_semia({**cfg, "variant": "official"}, img, lab, 4, seed=1, progress=False)
    assert isinstance(off.D, M.FPSEDiscriminator) and "loss_d2" in off.history.losses
    spade = M.train_spade(cfg, img, lab, 4, seed=1, progress=False, iterations=1)
    assert spade.history.steps == cfg["g_steps"]  # as many G updates as one SemIA iteration
    out = a.translate(img, lab, torch.stack([lab, lab]))
    assert out.shape == (2, 3, 16, 24) and out.abs().max() <= 1


def test_train_rejects_bad_input_before_training():
    img, lab, _ = scene()
    with pytest.raises(ValueError, match="not implemented"):
        M.train_semia(smoke_cfg(patch_descriptor="vgg19"), img, lab, 4, seed=0, progress=False)
    with pytest.raises(ValueError, match="unknown variant"):
        M.train_semia(smoke_cfg(variant="code"), img, lab, 4, seed=0, progress=False)
    with pytest.raises(ValueError, match="label ids"):
        M.train_semia(smoke_cfg(), img, lab + 4, 4, seed=0, progress=False)


# ------------------------------------------------------------------ Image Analogies, edits, metrics


def test_image_analogies_returns_the_source_for_the_identity_map():
    img, lab, edits = M.render_scene_edits(8, 16)
    assert torch.equal(M.image_analogies(lab, img, lab, 4), img)
    moved = M.image_analogies(lab, img, edits["move house left"][0], 4)
    assert moved.shape == img.shape and not torch.equal(moved, img)


def test_region_edits():
    lab = torch.zeros(12, 16, dtype=torch.long)
    lab[3:6, 3:7] = 2
    region = lab == 2
    moved = M.move_region(lab, region, 4, 6)
    assert (moved == 2).sum() == region.sum()  # stays inside the image: same pixel count
    assert not (moved[region] == 2).any()  # nothing of the region left at its old place
    assert torch.equal(M.scale_region(lab, region, 1.0), lab)
    assert (M.scale_region(lab, region, 2.0) == 2).sum() > region.sum()
    assert torch.equal(M.remove_region(lab, region), torch.zeros_like(lab))
    comps = M.connected_regions(lab)
    assert comps.max() == 1 and (comps == comps[4, 4]).sum() == 12


def test_scene_edits_have_oracles_that_change_the_map():
    img, lab, edits = M.render_scene_edits(48, 64)
    assert img.shape == (3, 48, 64) and len(edits) == 6
    for name, (p, oracle) in edits.items():
        assert (p != lab).any(), name
        if name in ("enlarge balloon", "shrink house"):
            continue  # their shading depends on the object's size: the oracle differs inside the object too
        outside = ~M.dilate(p != lab, 2)
        assert torch.allclose(oracle[:, outside], img[:, outside], atol=1e-5), name  # oracle = I off the edit


def test_edit_metrics_on_the_oracle_and_the_identity():
    img, lab, edits = M.render_scene_edits(48, 64)
    p, oracle = edits["move house left"]
    perfect = M.edit_metrics(oracle, img, lab, p, 4, oracle=oracle)
    assert perfect["unchanged_rmse"] == 0.0 and perfect["edit_rmse"] == 0.0
    assert perfect["colour_acc_edit"] > 0.8
    ident = M.edit_metrics(img, img, lab, p, 4, oracle=oracle)
    assert ident["unchanged_rmse"] == pytest.approx(0.0, abs=1e-6) and ident["edit_rmse"] > 0.3
    assert ident["colour_acc_edit"] < 0.2
    assert M.patch_distance(img, img, lab, lab) == 0.0
    assert M.resolved(0.1, 0.02) == "resolved" and M.resolved(0.03, 0.02) == "not resolved"


def test_region_edit_panel_logic_without_a_frontend():
    lab = torch.zeros(16, 24, dtype=torch.long)
    lab[4:8, 4:8] = 2
    panel = M.RegionEditPanel(lab, ["sky", "ground", "balloon"], [(0, 0, 255), (0, 255, 0), (255, 0, 0)],
                              generate=lambda p: torch.zeros(3, 16, 24), upscale=4)
    cid = [c for text, c in panel.regions() if text.startswith("balloon")][0]
    moved = panel.move(cid, 0, 8)
    assert (moved[4:8, 12:16] == 2).all() and not (moved[4:8, 4:8] == 2).any()
    cid = [c for text, c in panel.regions() if text.startswith("balloon")][0]
    assert (panel.scale(cid, 1.5) == 2).sum() > 16
    panel.paint([(4, 4), (40, 4)], cls=1, radius=1.0)  # canvas pixels -> label rows/cols / 4
    assert (panel.labels[0:3, 0:11] == 1).any()
    with pytest.raises(ValueError, match="class id"):
        panel.paint([(4, 4)], cls=7, radius=1.0)
    assert panel.render().shape[0] == 3
    panel.reset()
    assert torch.equal(panel.labels, lab)
    assert panel.widget() is not None  # builds without a browser


# ------------------------------------------------------------------ official example layout (paper data)

FIXTURE = __import__("pathlib").Path(__file__).parent / "fixtures" / "semia_examples"


def test_reader_on_the_official_example_layout():
    from nbsyn.data.analogy_folder import list_examples, load_analogy_example

    assert list_examples(FIXTURE) == ["tiny"]
    ex = load_analogy_example(FIXTURE, "tiny")
    assert ex.image.shape == (3, 24, 32) and ex.labels.shape == (24, 32)
    assert ex.num_classes == 4 and ex.class_colours[0] == (110, 160, 230)  # 4 colours incl. the rim; sky most frequent
    assert torch.equal(ex.targets["rec"], ex.labels)  # cond/rec is the source layout
    moved = ex.targets["move"]
    assert (moved != ex.labels).any() and (moved == 2).sum() == (ex.labels == 2).sum()
    M.check_pair(ex.image, ex.labels, ex.num_classes)
    half = load_analogy_example(FIXTURE, "tiny", resize=0.5)
    assert half.image.shape == (3, 8, 16) and half.targets["move"].shape == (8, 16)  # 12x16 cropped to x8
    with pytest.raises(FileNotFoundError, match="prepare_semia_examples"):
        load_analogy_example(FIXTURE, "zebra")


def test_colour_quantisation_rule_for_anti_aliased_maps():
    import numpy as np

    from nbsyn.data.analogy_folder import class_colours, quantise

    lab = np.zeros((40, 40, 3), np.uint8)
    lab[:, 20:] = (200, 0, 0)
    rng = np.random.default_rng(0)
    edge = rng.integers(0, 120, (40, 3)).astype(np.uint8)  # 40 distinct rare edge colours
    edge[:, 0] = np.arange(40) + 150  # closer to red than to black for the first ones
    lab[:, 19] = edge
    colours = class_colours(lab)
    assert len(colours) == 2  # > 32 colours: only those with >= 0.2 % of the pixels are classes
    ids = quantise(lab, colours)
    assert set(ids.unique().tolist()) == {0, 1} and (ids[:, :19] == ids[0, 0]).all()


def test_prepare_script_copies_and_checks_the_layout(tmp_path):
    import shutil

    from script_utils import load_data_script

    prep = load_data_script("prepare_semia_examples")
    repo = tmp_path / "SemIA"
    shutil.copytree(FIXTURE, repo / "example")
    assert prep.main(["--repo", str(repo), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "tiny" / "cond" / "move.png").is_file()
    assert prep.main(["--repo", str(repo), "--out", str(tmp_path / "out"), "--names", "zebra"]) == 1
    (repo / "example" / "tiny" / "label.png").unlink()
    assert prep.main(["--repo", str(repo), "--out", str(tmp_path / "o2")]) == 1
