"""Few-shot SIS with a StyleGAN prior (notebook 05): the equations on hand-computed cases, the
encoder's shapes and published sizes, what is frozen stays frozen, determinism, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

from nbsyn import presets
from nbsyn.data import IGNORE_INDEX, SemanticDataset, make_dataset
from nbsyn.metrics import confusion_matrix
from nbsyn.models import fewshot_sis as fs
from nbsyn.models import stylegan2 as sg


# ----------------------------------------------------------------------------- Eq. 1
def test_representative_vectors_hand_computed():
    # two shots, 2x2 features (Z = 2); class 0 in both shots, class 1 only in shot 1, class 2 nowhere
    feats = torch.zeros(2, 2, 2, 2)
    feats[0, :, 0, 0] = torch.tensor([1.0, 0.0])
    feats[0, :, 0, 1] = torch.tensor([3.0, 0.0])
    feats[0, :, 1, :] = torch.tensor([0.0, 2.0])[:, None]
    feats[1, :, :, :] = torch.tensor([0.0, 1.0])[:, None, None]
    labels = torch.tensor([[[0, 0], [1, 1]], [[0, 0], [0, 0]]])
    protos, present = fs.representative_vectors(feats, labels, 3)
    # class 0: shot 0 mean (2, 0), shot 1 mean (0, 1) -> mean over shots (1, 0.5) -> normalised
    assert torch.allclose(protos[0], torch.tensor([1.0, 0.5]) / math.sqrt(1.25))
    assert torch.allclose(protos[1], torch.tensor([0.0, 1.0]))  # only shot 0 has class 1: not halved
    assert torch.equal(protos[2], torch.zeros(2)) and present.tolist() == [True, True, False]
    # raw features are averaged (not unit vectors): a larger vector weighs more
    assert protos[0, 0] > protos[0, 1]


def test_representative_vectors_nearest_downsample_drops_a_thin_class():
    feats = torch.randn(1, 4, 2, 2)
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 1, 1] = 1  # one pixel that nearest-neighbour 4 -> 2 does not sample (it keeps rows/cols 0, 2)
    _, present = fs.representative_vectors(feats, labels, 2)
    assert present.tolist() == [True, False]
    labels[0, 0, 0] = 1  # a pixel that is sampled
    _, present = fs.representative_vectors(feats, labels, 2)
    assert present.tolist() == [True, True]


# ----------------------------------------------------------------------------- Eq. 2
def test_dense_labels_equal_a_brute_force_loop_and_ignore_scale():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 3, 3, generator=g)
    protos = F.normalize(torch.randn(4, 5, generator=g), dim=1)
    labels = fs.dense_pseudo_labels(feats, protos)
    for b in range(2):
        for y in range(3):
            for x in range(3):
                v = feats[b, :, y, x]
                cos = [F.cosine_similarity(v, p, dim=0).item() for p in protos]
                assert labels[b, y, x] == max(range(4), key=lambda c: cos[c])
    scale = torch.rand(2, 1, 3, 3, generator=g) * 10 + 0.1  # positive per-pixel rescaling
    assert torch.equal(fs.dense_pseudo_labels(feats * scale, protos), labels)
    up = fs.dense_pseudo_labels(feats, protos, out_size=12)
    assert up.shape == (2, 12, 12) and up.dtype == torch.long
    assert torch.equal(up[:, ::4, ::4], labels)  # nearest upsampling


# ----------------------------------------------------------------------------- sparse labels
def _unit(*v):
    return F.normalize(torch.tensor(v, dtype=torch.float32), dim=0)


def _feats_from(vectors):
    """A (1, Z, 1, P) feature map whose P positions hold the given vectors."""
    return torch.stack(vectors, dim=1)[None, :, None, :]


def test_sparse_k1_is_nearest_neighbour_and_higher_cosine_wins():
    feats = _feats_from([_unit(1, 0, 0), _unit(0, 1, 0), _unit(0, 0, 1), _unit(1, 1, 0)])
    vectors = torch.stack([_unit(1, 0.1, 0), _unit(0, 0, 1)])
    classes = torch.tensor([0, 1])
    out = fs.sparse_pseudo_labels(feats, vectors, classes, 2, k=1, t=-1.0)
    assert out[0, 0].tolist() == [0, IGNORE_INDEX, 1, IGNORE_INDEX]
    # two classes claim the same position: the more similar vector's class wins
    vectors = torch.stack([_unit(1, 0.5, 0), _unit(1, 0.1, 0)])
    out = fs.sparse_pseudo_labels(feats, vectors, torch.tensor([0, 1]), 2, k=1, t=0.0)
    assert out[0, 0, 0] == 1


def test_sparse_threshold_duplicates_and_topk():
    feats = _feats_from([_unit(1, 0), _unit(1, 0.2), _unit(0, 1), _unit(-1, 0)])
    # two vectors of class 0 that both claim positions 0 and 1: duplicates collapse, nothing breaks
    vectors = torch.stack([_unit(1, 0), _unit(1, 0.1)])
    out = fs.sparse_pseudo_labels(feats, vectors, torch.tensor([0, 0]), 1, k=2, t=0.5)
    assert out[0, 0].tolist() == [0, 0, IGNORE_INDEX, IGNORE_INDEX]
    # with k = 3 position 2 (cos 0 < t) stays unknown: below the threshold means unknown
    out = fs.sparse_pseudo_labels(feats, vectors[:1], torch.tensor([0]), 1, k=3, t=0.5)
    assert out[0, 0].tolist() == [0, 0, IGNORE_INDEX, IGNORE_INDEX]
    out = fs.sparse_pseudo_labels(feats, vectors[:1], torch.tensor([0]), 1, k=3, t=-0.5)
    assert out[0, 0].tolist() == [0, 0, 0, IGNORE_INDEX]  # a lower threshold lets the 3rd match in


def test_sparse_matching_uses_cosine_not_the_dot_product():
    feats = _feats_from([10 * _unit(0.6, 0.8), _unit(1, 0)])  # a long vector off-axis, a short one on it
    out = fs.sparse_pseudo_labels(feats, _unit(1, 0)[None], torch.tensor([0]), 1, k=1, t=0.5)
    assert out[0, 0].tolist() == [IGNORE_INDEX, 0]


def test_sparse_vectors_skip_unknown_and_conversion_round_trips():
    sparse = torch.full((1, 4, 4), IGNORE_INDEX)
    sparse[0, 0, 0] = 2
    sparse[0, 2, 2] = 0
    assert torch.equal(fs.from_unknown0(fs.to_unknown0(sparse)), sparse)
    assert fs.to_unknown0(sparse)[0, 0, 0] == 3 and fs.to_unknown0(sparse)[0, 1, 1] == 0
    feats = torch.randn(1, 3, 4, 4)
    vectors, classes = fs.sparse_vectors(feats, sparse, 3)
    assert vectors.shape == (2, 3) and sorted(classes.tolist()) == [0, 2]  # unknown pixels never stored
    assert torch.allclose(vectors.norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match="outside"):
        fs.sparse_vectors(feats, torch.full((1, 4, 4), 5), 3)


# ----------------------------------------------------------------------------- metrics
def test_fw_iou_hand_computed():
    cm = torch.tensor([[3, 1], [0, 2]])  # rows = truth
    # IoU_0 = 3 / (3 + 1 + 0) = 0.75, IoU_1 = 2 / (2 + 1 + 0) = 2/3; weights 4/6 and 2/6
    assert fs.fw_iou(cm) == pytest.approx(4 / 6 * 0.75 + 2 / 6 * 2 / 3)
    pred = torch.tensor([[0, 0, 0, 1], [1, 1, 1, 1]])
    target = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]])
    assert fs.fw_iou(confusion_matrix(pred, target, 2)) == pytest.approx(0.5 * 0.75 + 0.5 * 0.8)


# ----------------------------------------------------------------------------- encoder
@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    G, _ = sg.build("smoke", image_size=16)
    G.mapping.w_avg.normal_()
    G.requires_grad_(False).eval()
    E = fs.StyleEncoder(3, G.num_ws, G.cfg.w_dim, 16, stages=((8, 1), (8, 1), (16, 1)), stem=8, coarse=2, middle=1)
    return G, E


def test_encoder_shapes_and_head_split(small):
    G, E = small
    out = E(torch.rand(2, 3, 16, 16))
    assert out.shape == (2, G.num_ws, G.cfg.w_dim)
    # c3 is 2x2, p2 4x4, p1 8x8: 1, 2 and 3 stride-2 convs per head
    n_convs = [sum(isinstance(m, torch.nn.Conv2d) for m in h.convs) for h in E.heads]
    assert n_convs == [1, 1, 2] + [3] * (G.num_ws - 3)
    with pytest.raises(ValueError, match="one-hot"):
        E(torch.rand(2, 4, 16, 16))


def test_zero_init_encoder_synthesises_w_avg(small):
    G, E = small
    E0 = fs.StyleEncoder(3, G.num_ws, G.cfg.w_dim, 16, stages=((8, 1), (8, 1), (16, 1)), stem=8).zero_init_last()
    labels = torch.randint(0, 3, (2, 16, 16))
    img = fs.synthesize(E0, G, labels)
    ref = G.synthesis(G.mapping.w_avg.expand(2, G.num_ws, -1), noise_mode="const").clamp(-1, 1)
    assert torch.allclose(img, ref, atol=1e-6)


@pytest.mark.parametrize("label_nc,style_num,count", [(19, 18, 267_145_920), (151, 14, 209_535_936),
                                                      (5, 16, 238_294_848), (71, 18, 267_175_872),
                                                      (9, 14, 209_454_144)])
def test_paper_encoder_parameter_counts(label_nc, style_num, count):
    with torch.device("meta"):
        E = fs.StyleEncoder.paper(label_nc, style_num)
    assert fs.count_parameters(E) == count  # spec §11.3
    assert [len(s) for s in E.stages] == [3, 4, 14, 3]


@pytest.mark.parametrize("size,base,count", [(1024, 32768, 30_370_060), (512, 32768, 30_276_583),
                                             (256, 32768, 30_034_338), (256, 16384, 24_767_458)])
def test_paper_generator_sizes(size, base, count):
    with torch.device("meta"):
        G = sg.Generator(sg.make_config("paper", image_size=size, channel_base=base))
    assert sg.count_parameters(G) == count
    assert sg.count_parameters(G.mapping) == 2_101_248


# ----------------------------------------------------------------------------- training step
def test_encoder_step_trains_only_the_encoder_with_fresh_masks(small):
    G, E = small
    g_before = [p.clone() for p in G.parameters()]
    feats = fs.features(G, G.map(torch.randn(3, G.cfg.z_dim)), 8)
    protos, _ = fs.representative_vectors(feats, torch.randint(0, 3, (3, 16, 16)), 3)
    gen = torch.Generator().manual_seed(0)
    source = fs.pseudo_source(G, protos, 8, 16, gen)
    seen = []

    def spy(b):
        labels, ws = source(b)
        seen.append((labels, ws))
        return labels, ws

    opt = torch.optim.Adam(E.parameters(), lr=1e-3)
    e_before = [p.clone() for p in E.parameters()]
    step = fs.make_encoder_step(E, G, opt, spy, batch_size=4)
    out = step(0)
    labels, ws = seen[0]
    assert labels.shape == (4, 16, 16) and ws.shape == (4, G.num_ws, G.cfg.w_dim)
    assert torch.allclose(ws, ws[:, :1].expand_as(ws))  # W: one w repeated (the code's default target)
    step(1)
    assert not torch.equal(seen[0][1], seen[1][1])  # fresh z every step, so fresh masks
    assert all(p.grad is None and not p.requires_grad for p in G.parameters())
    assert all(torch.equal(a, b) for a, b in zip(g_before, G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(e_before, E.parameters()))
    assert out["loss"] > 0 and math.isfinite(out["loss"])


def test_encoder_step_loss_matches_mse():
    torch.manual_seed(0)
    G, _ = sg.build("smoke", image_size=16)
    G.requires_grad_(False)
    E = fs.StyleEncoder(2, G.num_ws, G.cfg.w_dim, 16, stages=((4, 1), (4, 1), (4, 1)), stem=4)
    labels = torch.randint(0, 2, (2, 16, 16))
    target = torch.randn(2, G.num_ws, G.cfg.w_dim)
    opt = torch.optim.SGD(E.parameters(), lr=0.0)
    state = {k: v.clone() for k, v in E.state_dict().items()}
    loss = fs.make_encoder_step(E, G, opt, lambda b: (labels, target), batch_size=2)(0)["loss"]
    E.load_state_dict(state)
    E.train()
    assert loss == pytest.approx(F.mse_loss(G.mapping.w_avg + E(fs.onehot(labels, 2)), target).item(), rel=1e-5)


def test_a_gradient_into_g_is_caught():
    G, _ = sg.build("smoke", image_size=16)  # requires_grad left on: the step must notice
    E = fs.StyleEncoder(2, G.num_ws, G.cfg.w_dim, 16, stages=((4, 1), (4, 1), (4, 1)), stem=4)
    labels = torch.randint(0, 2, (2, 16, 16))

    def leaky(b):
        return labels, G.map(torch.randn(b, G.cfg.z_dim))  # target with a graph into G

    step = fs.make_encoder_step(E, G, torch.optim.Adam(E.parameters()), leaky, 2)
    with pytest.raises(RuntimeError, match="frozen generator"):
        step(0)


def test_pairs_source_and_determinism(small):
    G, E = small
    labels = torch.randint(0, 3, (2, 16, 16))
    ws = torch.randn(2, G.num_ws, G.cfg.w_dim)
    a = fs.pairs_source(labels, ws, torch.Generator().manual_seed(1))(6)
    b = fs.pairs_source(labels, ws, torch.Generator().manual_seed(1))(6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert all(any(torch.equal(x, y) for y in labels) for x in a[0])
    with pytest.raises(ValueError, match="latents"):
        fs.pairs_source(labels, ws[:1], torch.Generator())


# ----------------------------------------------------------------------------- mixing, inversion
def test_mixing_keeps_the_layout_layers(small):
    G, E = small
    ws = torch.randn(2, G.num_ws, G.cfg.w_dim)
    free = torch.randn(1, G.num_ws, G.cfg.w_dim)
    assert torch.equal(fs.mix_styles(ws, free, G.num_ws), ws)  # l = num_ws: the encoder's ws unchanged
    assert torch.equal(fs.mix_styles(ws, free, 0), free.expand(2, -1, -1))  # l = 0: the encoder ignored
    mixed = fs.mix_styles(ws, free, 3)
    assert torch.equal(mixed[:, :3], ws[:, :3]) and torch.equal(mixed[:, 3:], free[:, 3:].expand(2, -1, -1))
    labels = torch.randint(0, 3, (2, 16, 16))
    z1, z2 = torch.randn(1, G.cfg.z_dim), torch.randn(1, G.cfg.z_dim)
    assert not torch.equal(fs.synthesize(E, G, labels, 2, z1), fs.synthesize(E, G, labels, 2, z2))
    assert torch.equal(fs.synthesize(E, G, labels, G.num_ws, z1), fs.synthesize(E, G, labels, G.num_ws, z2))


def test_inversion_reduces_the_error_and_keeps_g_frozen(small):
    G, _ = small
    target_ws = G.map(torch.randn(2, G.cfg.z_dim, generator=torch.Generator().manual_seed(3)))
    images = G.synthesis(target_ws, noise_mode="const").detach()
    ws0, err0 = fs.invert(G, images, 0, 0.05, torch.Generator().manual_seed(0))
    ws, err = fs.invert(G, images, 40, 0.05, torch.Generator().manual_seed(0))
    assert ws.shape == target_ws.shape and (err < err0).all()
    assert all(p.grad is None for p in G.parameters())
    again, _ = fs.invert(G, images, 40, 0.05, torch.Generator().manual_seed(0))
    assert torch.equal(ws, again)  # deterministic


# ----------------------------------------------------------------------------- presets and data
def test_presets_registered_and_consistent():
    table = presets.table("05_fewshot_sis_stylegan_prior")
    for name, p in table.items():
        assert p["time_budget_s"] is None and p["shots"] == (1, 5) and (p["sparse_k"], p["sparse_t"]) == (3, 0.5)
    assert table["paper"]["batch_size"] == 2 and table["paper"]["iterations"] == 100_000
    assert table["paper"]["enc_lr"] == 1e-4 and table["paper"]["mix_from"] == 8
    with pytest.raises(ValueError, match="unknown preset"):
        presets.resolve("05_fewshot_sis_stylegan_prior", "fast")


def test_prior_size_mismatch_is_a_clear_error():
    G, _ = sg.build("smoke", image_size=16)
    cfg = presets.resolve("05_fewshot_sis_stylegan_prior", "smoke", image_size=64)
    with pytest.raises(ValueError, match="does not match the prior"):
        fs.check_prior_matches(cfg, G)


def test_repeated_pairs_feed_batches_larger_than_the_shots():
    shots = make_dataset("scenes", 2, 16, seed=0)
    rep = fs.repeated_pairs(shots, 10, torch.Generator().manual_seed(0))
    assert isinstance(rep, SemanticDataset) and len(rep) == 10
    assert torch.equal(rep.images[:2], shots.images)
    images, labels = next(rep.batches(8, torch.Generator().manual_seed(0)))
    assert images.shape == (8, 3, 16, 16) and labels.shape == (8, 16, 16)
    with pytest.raises(ValueError, match="at least"):
        fs.repeated_pairs(shots, 1, torch.Generator())


def test_bad_label_maps_are_rejected_before_training(small):
    G, E = small
    with pytest.raises(ValueError, match="outside"):
        fs.synthesize(E, G, torch.full((1, 16, 16), 7))
    with pytest.raises(ValueError, match="shape"):
        fs.synthesize(E, G, torch.zeros(16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="16x16 label maps, got 32x32"):
        fs.synthesize(E, G, torch.zeros(1, 32, 32, dtype=torch.long))


# ----------------------------------------------------------------------------- official checkpoints
def test_rosinality_conversion_maps_every_tensor():
    cfg = sg.make_config("smoke", image_size=16)
    G = sg.Generator(cfg)
    names = fs.rosinality_key_map(cfg)
    assert set(names) == set(G.state_dict()) - {"mapping.w_avg"}
    # a fake rosinality state dict in their shapes: (1, O, I, k, k) weights, (1,) noise, (1, 3, 1, 1) rgb bias
    theirs = {}
    for ours, key in names.items():
        t = G.state_dict()[ours].clone()
        if ours.endswith("conv.weight"):
            t = t[None]
        elif ours.endswith("torgb.bias"):
            t = t.view(1, -1, 1, 1)
        elif ours.endswith("noise_strength"):
            t = t.view(1)
        theirs[key] = t
    theirs["latent_avg"] = torch.randn(cfg.w_dim)
    converted = fs.convert_rosinality(theirs, cfg)
    G2 = sg.Generator(cfg)
    G2.load_state_dict(converted)
    z = torch.randn(2, cfg.z_dim)
    assert torch.equal(G2.mapping.w_avg, theirs["latent_avg"])
    assert torch.allclose(G(z, noise_mode="const"), G2(z, noise_mode="const"))
    del theirs["style.1.weight"]
    with pytest.raises(ValueError, match="style.1.weight"):
        fs.convert_rosinality(theirs, cfg)


def test_missing_official_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="stylegan2-ffhq-config-f.pt"):
        fs.load_official_generator("stylegan2-ffhq-config-f", root=str(tmp_path))
    with pytest.raises(ValueError, match="unknown official checkpoint"):
        fs.load_official_generator("biggan", root=str(tmp_path))


def test_slider_panel_renders_what_the_sliders_say():
    calls = []

    def render(l, t):
        calls.append((l, t))
        return torch.full((3, 4, 4), float(l) / 10)

    panel = fs.SliderPanel(render, {"l": (1, 8, 1, 5), "t": (0.0, 1.0, 0.1, 0.5)})
    assert panel.render().mean().item() == pytest.approx(0.5)
    assert panel.render(l=2).mean().item() == pytest.approx(0.2) and calls[-1] == (2, 0.5)
    assert panel.render(t=0.9) is not None and calls[-1] == (2, 0.9)  # the other slider keeps its value
    with pytest.raises(ValueError, match="unknown slider"):
        panel.render(k=3)
    with pytest.raises(ValueError, match="outside"):
        fs.SliderPanel(render, {"l": (1, 8, 1, 9)})
