import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nbsyn.metrics as M
fid_module = importlib.import_module("nbsyn.metrics.fid")
lpips_module = importlib.import_module("nbsyn.metrics.lpips")
from nbsyn.metrics.weights import WEIGHTS, sha256_of, verify
from script_utils import load_data_script


def random_cov(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_matches_scipy_sqrtm():
    from scipy import linalg

    rng = np.random.default_rng(0)
    for d in (2, 5, 16):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = random_cov(rng, d), random_cov(rng, d)
        covmean = linalg.sqrtm(s1 @ s2).real
        expected = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1 + s2 - 2 * covmean)
        assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6, abs=1e-8)


def test_frechet_distance_closed_form_for_diagonal_covariances():
    # diagonal: Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (sqrt(a_i) - sqrt(b_i))^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    expected = 5.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()  # = 5 + 1 + 1 + 0
    assert M.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
    assert M.frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_handles_singular_covariances():
    feats = np.random.default_rng(1).standard_normal((5, 20))  # fewer samples than dimensions
    mu, sigma = M.gaussian_stats(feats)
    assert M.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-5 * np.trace(sigma))


def test_fid_lpips_sifid_say_unavailable_without_weights(empty_torch_home):
    x = torch.zeros(4, 3, 32, 32)
    for result in (M.fid(x, x), M.lpips_distance(x, x), M.sifid(x[0], x), M.lpips_diversity(x)):
        assert result.value is None and not result.available
        assert "fetch_metric_weights.py" in result.unavailable_reason
        assert "unavailable" in str(result) and result.format() == "unavailable"


def place_state_dict(torch_home: Path, key: str, model: torch.nn.Module) -> Path:
    path = torch_home / "hub" / "checkpoints" / WEIGHTS[key].filename
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def test_fid_loading_path_with_a_cached_weight_file(empty_torch_home, monkeypatch):
    """A weight file in TORCH_HOME is found and loaded (random weights here: the value means nothing)."""
    from pytorch_fid import inception as pf

    torch.manual_seed(0)
    # the FID architecture as pytorch-fid builds it, without its download
    net = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = pf.FIDInceptionA(192, 32), pf.FIDInceptionA(256, 64), pf.FIDInceptionA(288, 64)
    net.Mixed_6b, net.Mixed_6c = pf.FIDInceptionC(768, 128), pf.FIDInceptionC(768, 160)
    net.Mixed_6d, net.Mixed_6e = pf.FIDInceptionC(768, 160), pf.FIDInceptionC(768, 192)
    net.Mixed_7b, net.Mixed_7c = pf.FIDInceptionE_1(1280), pf.FIDInceptionE_2(2048)
    place_state_dict(empty_torch_home, "inception_fid", net)
    monkeypatch.setattr(fid_module, "_INCEPTION", {})
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    result = M.fid(x, x.flip(0))
    assert result.available and result.value == pytest.approx(0.0, abs=1e-2)  # same set, other order
    assert M.sifid(x[0], x[:1]).value == pytest.approx(0.0, abs=1e-3)


def test_lpips_loading_path_with_a_cached_weight_file(empty_torch_home, monkeypatch):
    import torchvision

    torch.manual_seed(0)
    place_state_dict(empty_torch_home, "alexnet", torchvision.models.alexnet())
    monkeypatch.setattr(lpips_module, "_NETS", {})
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert M.lpips_distance(x, x).value == pytest.approx(0.0, abs=1e-6)
    assert M.lpips_distance(x, -x).value > 0
    assert M.lpips_diversity(x).available


def test_ms_ssim_identity_symmetry_and_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    noisy = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    very_noisy = (x + 0.8 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    assert torch.allclose(M.ms_ssim(x, x), torch.ones(2))
    assert torch.allclose(M.ms_ssim(x, noisy), M.ms_ssim(noisy, x))
    assert (M.ms_ssim(x, noisy) > M.ms_ssim(x, very_noisy)).all()


def test_ms_ssim_hand_computed_constant_images():
    # constant images: every contrast-structure term is C2/C2 = 1; only the coarsest luminance term
    # l = (2ab + C1) / (a^2 + b^2 + C1) remains, raised to its renormalised weight (2 scales at 32 px)
    x = torch.zeros(1, 3, 32, 32)  # 0.5 in [0, 1]
    y = torch.ones(1, 3, 32, 32)  # 1.0
    lum = (2 * 0.5 * 1.0 + 1e-4) / (0.25 + 1.0 + 1e-4)
    expected = lum ** (0.2856 / (0.0448 + 0.2856))
    assert M.ms_ssim(x, y).item() == pytest.approx(expected, rel=1e-5)


def test_confusion_matrix_and_miou_by_hand():
    pred = torch.tensor([[[0, 0], [1, 1]]])
    target = torch.tensor([[[0, 1], [1, 1]]])
    cm = M.confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[1, 0, 0], [1, 2, 0], [0, 0, 0]]
    scores = M.miou_and_accuracy(pred, target, 3)
    # IoU_0 = 1 / (1 + 1 + 0), IoU_1 = 2 / (2 + 0 + 1); class 2 is absent from both -> not averaged
    assert scores["miou"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert scores["accuracy"] == pytest.approx(0.75)
    assert np.isnan(scores["per_class_iou"][2])


def test_ignored_pixels_do_not_count():
    pred = torch.tensor([[[0, 1]]])
    target = torch.tensor([[[0, 255]]])
    scores = M.miou_and_accuracy(pred, target, 2)
    assert scores["miou"] == 1.0 and scores["accuracy"] == 1.0  # the wrong prediction sits on an ignored pixel
    with pytest.raises(ValueError, match="class ids"):
        M.confusion_matrix(torch.tensor([[[5]]]), torch.tensor([[[0]]]), 2)


def test_diversity_and_memorisation():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(5, 3, 16, 16, generator=g) * 2 - 1
    copies = train[[3, 1]]
    result = M.nn_distance(copies, train)
    assert result.value == pytest.approx(0.0) and result.per_item[1].tolist() == [3.0, 1.0]
    same = train[:1].repeat(4, 1, 1, 1)
    assert M.msssim_diversity(same).value == pytest.approx(1.0)
    assert M.msssim_diversity(train).value < 0.5
    with pytest.raises(ValueError, match="at least 2"):
        M.msssim_diversity(train[:1])


def test_segmenter_learns_a_simple_split():
    from nbsyn.data import make_dataset

    ds = make_dataset("scenes", 16, 32, 0)
    net = M.train_segmenter(ds.images, ds.labels, ds.num_classes, steps=60, seed=0)
    scores = M.segmentation_scores(net, ds.images, ds.labels, ds.num_classes)
    assert scores["accuracy"] > 0.6  # sky/grass/mountain dominate and are easy


def test_fetch_script_verifies_hashes_with_a_local_file(tmp_path, monkeypatch):
    fetch = load_data_script("fetch_metric_weights")
    source = tmp_path / "weights.bin"
    source.write_bytes(b"not really weights")
    prefix = sha256_of(source)[:8]
    assert verify(source, prefix) and not verify(source, "deadbeef")
    # a spec whose name carries the right hash: the download (from a file:// URL) is kept
    from nbsyn.metrics.weights import WeightFile

    good = WeightFile("test", f"thing-{prefix}.pth", source.as_uri())
    monkeypatch.setitem(fetch.WEIGHTS, "test", good)
    dest = fetch.fetch("test", tmp_path / "cache")
    assert dest.read_bytes() == source.read_bytes() and fetch.status("test", tmp_path / "cache") == "ok"
    # a wrong hash: the download is deleted and the error says why
    monkeypatch.setitem(fetch.WEIGHTS, "bad", WeightFile("test", "thing-deadbeef.pth", source.as_uri()))
    with pytest.raises(RuntimeError, match="does not start with deadbeef"):
        fetch.fetch("bad", tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [good.filename]
    (tmp_path / "cache" / "thing-deadbeef.pth").write_bytes(b"tampered")
    assert fetch.status("bad", tmp_path / "cache") == "corrupt (hash mismatch)"
