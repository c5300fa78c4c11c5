"""CAT (notebook 06): the affinity layer, the adapted SPADE, FreezeD and the two stages, the
estimators of A and their vote, the few-shot selection, the text encoder and the paper-size counts."""

import math

import pytest
import torch

from nbsyn.data import make_dataset, procedural
from nbsyn.models import cat as C
from nbsyn.models import oasis as O
from nbsyn.presets import resolve

TINY = dict(z_dim=4, channels_g=4, num_res_blocks=2, first_block=False, spade_hidden=8, norm="batch")


def tiny_generator(num_classes=5, seed=0):
    torch.manual_seed(seed)
    G = O.build_generator(TINY, num_classes)
    for p in G.parameters():  # OASIS init is tiny (gain 0.02); make the outputs react visibly
        torch.nn.init.normal_(p, std=0.2)
    return G.eval()


# ---------------------------------------------------------------------------------- affinity layer
def test_apply_affinity_on_one_hot_picks_rows():
    A = torch.tensor([[0.0, 0.25, 0.75], [1.0, 0.0, 0.0]])  # 2 target classes, 3 source classes
    labels = torch.tensor([[[0, 1], [1, 0]]])
    soft = C.apply_affinity(O.one_hot(labels, 2), A)
    assert soft.shape == (1, 3, 2, 2)
    assert torch.equal(soft[0, :, 0, 0], A[0]) and torch.equal(soft[0, :, 0, 1], A[1])
    assert torch.allclose(soft.sum(1), torch.ones(1, 2, 2))  # rows on the simplex -> probability per pixel
    with pytest.raises(ValueError, match="shape"):
        C.apply_affinity(O.one_hot(labels, 2), A.T)


def test_cat_generator_with_identity_a_equals_source():
    G = tiny_generator(5)
    cat = C.CATGenerator(G, torch.eye(5)).eval()
    labels = torch.randint(0, 5, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    noise = O.sample_noise(2, 4, (8, 8), torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(cat(O.one_hot(labels, 5), noise), G(O.one_hot(labels, 5), noise), atol=1e-6)


def test_cat_generator_with_soft_a_equals_source_on_soft_map():
    G = tiny_generator(5)
    A = C.random_affinity(3, 5, torch.Generator().manual_seed(0))
    cat = C.CATGenerator(G, A).eval()
    labels = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    noise = O.sample_noise(2, 4, (8, 8), torch.Generator().manual_seed(2))
    onehot = O.one_hot(labels, 3)
    with torch.no_grad():
        expected = G(torch.einsum("bkhw,kl->blhw", onehot, A), noise)
        assert torch.allclose(cat(onehot, noise), expected, atol=1e-6)
    assert cat.num_classes == 3 and cat.source_classes == 5


def test_nonzero_residual_changes_output_and_residual_sees_target_map():
    G = tiny_generator(5)
    cat = C.CATGenerator(G, torch.eye(5)[:3]).eval()
    labels = torch.randint(0, 3, (1, 8, 8), generator=torch.Generator().manual_seed(1))
    noise = O.sample_noise(1, 4, (8, 8), torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = cat(O.one_hot(labels, 3), noise)
        cat.spades()[0].res_gamma.bias.fill_(1.0)
        assert not torch.allclose(cat(O.one_hot(labels, 3), noise), before)
    assert len(cat.spades()) == 6  # 2 blocks x (norm_0, norm_1, norm_s)


def test_residual_branch_is_zero_but_gets_gradient():
    G = tiny_generator(5)
    cat = C.CATGenerator(G, torch.eye(5)[:3]).train()
    spade = cat.spades()[0]
    assert spade.res_gamma.weight.abs().sum() == 0 and spade.res_beta.bias.abs().sum() == 0
    labels = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    cat(O.one_hot(labels, 3)).square().mean().backward()
    assert spade.res_gamma.weight.grad.abs().sum() > 0 and cat.A.grad.abs().sum() > 0


def test_cat_generator_does_not_touch_the_source():
    G = tiny_generator(5)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    cat = C.CATGenerator(G, torch.eye(5)[:3])
    with torch.no_grad():
        for p in cat.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())


def test_cat_extra_parameters_match_the_modules():
    G = tiny_generator(5)
    cat = C.CATGenerator(G, torch.eye(5)[:3])
    extra = C.cat_extra_parameters(G, 3)
    assert sum(p.numel() for p in cat.parameters()) - sum(p.numel() for p in G.parameters()) == \
        extra["A"] + extra["residual"]
    assert extra["A"] == 15 and extra["residual"] == 6 * 2 * (3 * 8 * 9 + 8)


# ---------------------------------------------------------------------------------- D, stages
def tiny_discriminator(num_classes=5):
    torch.manual_seed(0)
    return O.OASISDiscriminator(num_classes, channels=4, num_res_blocks=2)


def test_transfer_discriminator_new_head_and_frozen_blocks():
    D = tiny_discriminator(5)
    D2, params = C.transfer_discriminator(D, 3, freeze_blocks=1, generator=torch.Generator().manual_seed(0))
    assert D2.to_logits.out_channels == 4 and D.to_logits.out_channels == 6
    frozen = {id(p) for p in D2.encoder[0].parameters()}
    assert frozen and not any(id(p) in frozen for p in params)
    assert len(params) == len(list(D2.parameters())) - len(frozen)
    with pytest.raises(ValueError, match="freeze_blocks"):
        C.transfer_discriminator(D, 3, freeze_blocks=3)


def test_two_stage_finetune_freezes_what_it_should():
    """Stage 1 changes only A, the first convs and the residuals; FreezeD blocks never move."""
    G, D = tiny_generator(5), tiny_discriminator(5)
    shots = make_dataset("autumn", 4, 8, seed=1)
    shots.labels = shots.labels.clamp(max=2)  # three target classes at 8 px
    shots.class_names = shots.class_names[:3]
    cat = C.CATGenerator(G, C.random_affinity(3, 5, torch.Generator().manual_seed(0)))
    D2, params = C.transfer_discriminator(D, 3, 1, torch.Generator().manual_seed(0))
    g0 = {k: v.clone() for k, v in cat.named_parameters()}
    d0 = {k: v.clone() for k, v in D2.state_dict().items()}
    cfg = dict(iterations=3, stage1_steps=3, batch_size=2, lr_g=1e-2, lr_d=1e-2, betas=(0.0, 0.999),
               ema_decay=0.9, lambda_labelmix=5.0, balance="paper", time_budget_s=None, eval_every=0,
               bn_batches=1)
    C.finetune(cfg, cat, D2, params, shots, 0, arm="t", progress=False)
    stage1 = {n for n, p in cat.named_parameters() if any(p is q for q in cat.stage1_parameters())}
    for name, p in cat.named_parameters():
        changed = not torch.equal(p, g0[name])
        assert changed == (name in stage1), name
    for key, value in D2.state_dict().items():
        if key.startswith("encoder.0."):
            assert torch.equal(value, d0[key]), key  # weights and spectral-norm vectors
    assert not torch.equal(D2.to_logits.weight, d0["to_logits.weight"])
    # stage 2 then trains every generator layer
    cfg["iterations"], cfg["stage1_steps"] = 2, 1
    g1 = {k: v.clone() for k, v in cat.named_parameters()}
    C.finetune(cfg, cat, D2, params, shots, 0, arm="t", progress=False)
    conv = "G.blocks.0.conv_0.parametrizations.weight.original"
    assert not torch.equal(dict(cat.named_parameters())[conv], g1[conv])


def test_finetune_is_deterministic():
    def run():
        G, D = tiny_generator(5), tiny_discriminator(5)
        shots = make_dataset("autumn", 4, 8, seed=1)
        shots.labels = shots.labels.clamp(max=2)
        shots.class_names = shots.class_names[:3]
        cat = C.CATGenerator(G, torch.eye(5)[:3])
        D2, params = C.transfer_discriminator(D, 3, 1, torch.Generator().manual_seed(0))
        cfg = dict(iterations=2, stage1_steps=1, batch_size=2, lr_g=1e-3, lr_d=1e-3, betas=(0.0, 0.999),
                   ema_decay=0.9, lambda_labelmix=5.0, balance="paper", time_budget_s=None, eval_every=0,
                   bn_batches=1)
        C.finetune(cfg, cat, D2, params, shots, 3, arm="t", progress=False)
        return torch.cat([p.flatten() for p in cat.parameters()])

    assert torch.equal(run(), run())


# ---------------------------------------------------------------------------------- estimators
def test_affinity_from_segmentation_recovers_a_relabelling():
    target = torch.randint(0, 3, (4, 6, 6), generator=torch.Generator().manual_seed(0))
    relabel = torch.tensor([4, 0, 2])  # target k is seen as source relabel[k]
    A = C.affinity_from_segmentation(relabel[target], target, 3, 5)
    assert torch.equal(A, torch.eye(5)[relabel])


def test_affinity_from_segmentation_counts_by_hand():
    target = torch.tensor([[[0, 0, 0, 1]]])
    pred = torch.tensor([[[2, 2, 1, 0]]])
    A = C.affinity_from_segmentation(pred, target, 2, 3)
    assert torch.allclose(A, torch.tensor([[0.0, 1 / 3, 2 / 3], [1.0, 0.0, 0.0]]))


def test_normalize_rows_modes():
    sim = torch.tensor([[0.9, 0.8, -0.2]])
    assert torch.allclose(C.normalize_rows(sim, "l1_relu"), torch.tensor([[0.9, 0.8, 0.0]]) / 1.7)
    soft = C.normalize_rows(sim, "softmax", tau=0.05)
    e = torch.exp(torch.tensor([0.9, 0.8, -0.2]) / 0.05)
    assert torch.allclose(soft, (e / e.sum())[None], atol=1e-6)
    assert torch.equal(C.normalize_rows(sim, "top1"), torch.tensor([[1.0, 0.0, 0.0]]))
    assert torch.allclose(C.normalize_rows(torch.zeros(1, 4), "l1"), torch.full((1, 4), 0.25))
    with pytest.raises(ValueError, match="normalisation"):
        C.normalize_rows(sim, "max")


def test_patch_fractions_half_and_half():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, :, 2:] = 1  # the left half class 0, the right half class 1
    w = C.patch_fractions(labels, 2, 4)
    assert torch.allclose(w, torch.tensor([[[0.5, 0.5]]]))
    proto = C.class_prototypes(torch.tensor([[[2.0, 4.0]]]), w)
    assert torch.allclose(proto, torch.tensor([[2.0, 4.0], [2.0, 4.0]]))


def test_class_prototypes_weighted_mean():
    feats = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # two patches
    w = torch.tensor([[[1.0, 0.0], [0.25, 0.75]]])  # class 0: all of patch 0 + a quarter of patch 1
    proto = C.class_prototypes(feats, w)
    assert torch.allclose(proto[0], torch.tensor([1.0, 0.25]) / 1.25)
    assert torch.allclose(proto[1], torch.tensor([0.0, 1.0]))


def test_majority_vote_agreement_tiebreak_and_one_hot():
    e = torch.eye(4)
    seg = e[[0, 1, 2]]
    ssl = e[[0, 3, 1]]
    text = e[[2, 3, 3]]
    vote = C.majority_vote({"seg": seg, "ssl": ssl, "text": text}, tie_break="text")
    assert vote.A.argmax(1).tolist() == [0, 3, 3]  # 2-of-3, 2-of-3, three-way -> text
    assert vote.decided_by[2] == "tie-break(text)" and vote.decided_by[0] == "agree(seg, ssl)"
    assert torch.equal(vote.A.sum(1), torch.ones(3)) and set(vote.A.unique().tolist()) == {0.0, 1.0}
    two = C.majority_vote({"seg": seg, "ssl": ssl}, tie_break="ssl")  # text unavailable
    assert two.A.argmax(1).tolist() == [0, 3, 1]
    with pytest.raises(ValueError, match="tie-break"):
        C.majority_vote({"seg": seg}, tie_break="text")


def test_random_affinity_rows_and_determinism():
    A = C.random_affinity(7, 8, torch.Generator().manual_seed(0))
    assert A.shape == (7, 8) and torch.allclose(A.sum(1), torch.ones(7)) and (A > 0).all()
    assert torch.equal(A, C.random_affinity(7, 8, torch.Generator().manual_seed(0)))


def test_mapping_accuracy_and_edit():
    oracle = torch.tensor([[0.8, 0.2, 0.0], [0.0, 0.0, 1.0]])
    A = torch.tensor([[0.1, 0.9, 0.0], [0.0, 0.4, 0.6]])
    acc = C.mapping_accuracy(A, oracle)
    assert acc["top1"] == 0.5 and math.isclose(acc["true_mass"], (1.0 + 0.6) / 2, rel_tol=1e-6)
    edited = C.edit_affinity(A, 0, 2)
    assert edited[0].tolist() == [0, 0, 1] and torch.equal(edited[1], A[1]) and A[0, 2] == 0
    with pytest.raises(ValueError, match="target class"):
        C.edit_affinity(A, 2, 0)


# ---------------------------------------------------------------------------------- data, selection
def test_scenes_unchanged_and_autumn_known_mapping():
    image, labels = procedural.render_scene(0, 3, 32)
    image2, labels2 = procedural.render_scene(0, 3, 32, colours=procedural.SCENE_COLOURS)
    assert torch.equal(image, image2) and torch.equal(labels, labels2)
    autumn, target, source = procedural.render_autumn_with_source(0, 3, 32)
    assert torch.equal(source, labels)  # same layout, different palette and taxonomy
    assert not torch.equal(autumn, image)
    assert torch.equal(target, torch.tensor(procedural.AUTUMN_FROM_SCENES)[labels])
    oracle = C.oracle_affinity(target[None], source[None], 7, 8)
    assert oracle[procedural.AUTUMN_CLASSES.index("forest")].argmax() == procedural.SCENE_CLASSES.index("tree")


def test_select_few_shot_deterministic_distinct_and_balancing():
    pool = make_dataset("autumn", 40, 16, seed=1).labels
    a = C.select_few_shot(pool, 8, 7, seed=0)
    assert a == C.select_few_shot(pool, 8, 7, seed=0) and len(set(a)) == 8
    hist = lambda idx: torch.bincount(pool[idx].flatten(), minlength=7)  # noqa: E731
    random_kl = sum(C.kl_to_uniform(hist(torch.randperm(40, generator=torch.Generator().manual_seed(s))[:8]))
                    for s in range(5)) / 5
    assert C.kl_to_uniform(hist(a)) < random_kl
    with pytest.raises(ValueError, match="cannot select"):
        C.select_few_shot(pool, 41, 7)


def test_kl_to_uniform_by_hand():
    assert C.kl_to_uniform(torch.tensor([5, 5, 5, 5])) == pytest.approx(0.0, abs=1e-12)
    assert C.kl_to_uniform(torch.tensor([1, 0])) == pytest.approx(math.log(2))


# ---------------------------------------------------------------------------------- text encoder
def test_text_cache_covers_the_notebook_names():
    cache = C.read_text_cache()
    template = resolve("06_class_affinity_transfer", "cpu").text_template
    for name in procedural.SCENE_CLASSES + procedural.AUTUMN_CLASSES:
        vec = cache[template.format(name)]
        assert vec.shape == (384,) and abs(float(vec.norm()) - 1) < 1e-4


def test_minilm_package_loads_offline_and_matches_cache():
    if C.minilm_dir() is None:
        pytest.skip(f"{C.MINILM_PACKAGE} not installed")
    assert C.sha256(C.minilm_dir() / "model.safetensors") == C.MINILM_SHA256
    encoder = C.load_text_encoder()
    emb = C.encode_texts(encoder, ["sky", "a photo of lake.", "a photo of water.", "a photo of tree."])
    # the first dimensions of "sky" as recorded in the spec's pilot (§10.6)
    assert torch.allclose(emb[0, :5], torch.tensor([-0.00402, -0.02790, -0.03285, 0.01483, 0.00730]), atol=1e-4)
    assert float(emb[1] @ emb[2]) > float(emb[1] @ emb[3])  # lake is closer to water than to tree
    cache = C.read_text_cache()
    assert torch.allclose(emb[1], cache["a photo of lake."], atol=1e-5)
    vectors, source = C.embed_class_names(["lake"], "a photo of {}.", "live", encoder)
    assert source.startswith("live") and torch.allclose(vectors[0], emb[1], atol=1e-6)


# ---------------------------------------------------------------------------------- presets, paper
def test_presets_registered_and_resolve():
    cfg = resolve("06_class_affinity_transfer", "smoke")
    assert cfg.source_model == "oasis_scenes64" and cfg.dataset == "autumn"
    cpu = resolve("06_class_affinity_transfer", "cpu")
    assert cpu.stage1_steps < cpu.iterations and cpu.time_budget_s is None
    with pytest.raises(ValueError, match="unknown preset"):
        resolve("06_class_affinity_transfer", "fast")


@pytest.mark.parametrize("source,expected", [("ade20k", 74_314_691), ("cocostuff", 75_199_427),
                                             ("cityscapes", 71_107_523)])
def test_paper_generator_counts(source, expected):
    G = O.OASISGenerator(C.PAPER_SOURCES[source], z_dim=64, channels=64, num_res_blocks=6, spade_hidden=128)
    assert sum(p.numel() for p in G.parameters()) == expected


@pytest.mark.parametrize("source,target,a,residual", [("cocostuff", "ade20k", 27_633, 5_570_560),
                                                      ("ade20k", "cocostuff", 27_633, 6_750_208),
                                                      ("ade20k", "cityscapes", 5_285, 1_294_336)])
def test_paper_cat_additions(source, target, a, residual):
    G = O.OASISGenerator(C.PAPER_SOURCES[source], z_dim=64, channels=64, num_res_blocks=6, spade_hidden=128)
    extra = C.cat_extra_parameters(G, C.PAPER_SOURCES[target])
    assert extra == {"A": a, "residual": residual, "spades": 16}


def test_catspade_residual_enters_before_the_relu_by_hand():
    """h = W_sh*seg = -1; gamma path ReLU(h + 3) = 2, beta path ReLU(h + 0.5) = 0 (L95);
    out = x * (1 + 1*2) + 1*0 = 3x. Adding after the ReLU would give 4x + 0.5."""
    from nbsyn.nn.spade import SPADE

    spade = SPADE(channels=1, cond_channels=1, hidden=1, kernel_size=1)
    spade.norm = torch.nn.Identity()
    with torch.no_grad():
        for conv, w, b in [(spade.shared[0], 1.0, -2.0), (spade.gamma, 1.0, 0.0), (spade.beta, 1.0, 0.0)]:
            conv.weight.fill_(w)
            conv.bias.fill_(b)
    layer = C.CATSPADE(spade, num_target=1, residual_kernel=1)
    with torch.no_grad():
        layer.res_gamma.bias.fill_(3.0)
        layer.res_beta.bias.fill_(0.5)
        x = torch.full((1, 1, 2, 2), 0.5)
        out = layer(x, torch.ones(1, 2, 2, 2))  # [seg (1 channel), target one-hot (1 channel)]
    assert torch.allclose(out, 3 * x)


def test_piti_palette_folding_is_exact():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 7, padding=3)
    palette = torch.rand(3, 4) * 2 - 1  # 4 classes, colours in [-1, 1]
    labels = torch.randint(0, 4, (2, 9, 9))
    onehot = O.one_hot(labels, 4)
    rgb = torch.einsum("rc,bchw->brhw", palette, onehot)
    folded = C.fold_palette_into_conv(conv, palette)
    assert folded.in_channels == 5  # 4 classes + the null ("unconditional") channel
    with torch.no_grad():
        with_null = torch.cat([onehot, torch.zeros(2, 1, 9, 9)], 1)
        assert torch.allclose(folded(with_null), conv(rgb), atol=1e-5)
        null = torch.zeros(1, 5, 9, 9)
        null[:, 4] = 1  # the all-white map of classifier-free guidance
        assert torch.allclose(folded(null), conv(torch.ones(1, 3, 9, 9)), atol=1e-5)


def test_vectorised_greedy_equals_the_plain_loop():
    hist = torch.randint(0, 50, (30, 6), generator=torch.Generator().manual_seed(0))
    chosen = C.select_from_histograms(hist, 10, seed=3)
    first = int(torch.randint(0, 30, (1,), generator=torch.Generator().manual_seed(3)))
    plain, pooled = [first], hist[first].clone()
    while len(plain) < 10:
        best = min((i for i in range(30) if i not in plain), key=lambda i: C.kl_to_uniform(pooled + hist[i]))
        plain.append(best)
        pooled += hist[best]
    assert chosen == plain


@pytest.mark.parametrize("name", ["ade20k", "cocostuff", "cityscapes"])
def test_select_few_shot_files_on_the_reader_fixtures(name):
    import importlib
    from pathlib import Path

    reader = importlib.import_module(f"nbsyn.data.{name}")
    root = Path(__file__).parent / "fixtures" / name
    n = len(reader.list_pairs(root, "train"))
    files = C.select_few_shot_files(reader, root, n, seed=0)
    assert sorted(files) == sorted(p[0].name for p in reader.list_pairs(root, "train"))
    assert C.select_few_shot_files(reader, root, 1, seed=0) == files[:1]
    with pytest.raises(ValueError, match="cannot select"):
        C.select_few_shot_files(reader, root, n + 1)


def test_check_target_map_errors():
    ok = torch.zeros(8, 8, dtype=torch.long)
    C.check_target_map(ok, 7, (8, 8))
    with pytest.raises(ValueError, match="outside"):
        C.check_target_map(torch.full((8, 8), 7), 7, (8, 8))  # class id 7 of 7 classes
    with pytest.raises(ValueError, match="must be 8x8"):
        C.check_target_map(torch.zeros(4, 8, dtype=torch.long), 7, (8, 8))
