"""Notebook 05's paper datasets: the official code's folder layout (paired by sorted order), the
CelebAMask-HQ part-mask combination and the LSUN mask arrangement, on tiny fixtures made here."""

import numpy as np
import pytest
import torch
from PIL import Image

from nbsyn.data import fewshot_smis
from script_utils import load_data_script


def _write_release(root, indices, size=16):
    """A tiny CelebAMask-HQ release: CelebA-HQ-img/<i>.jpg and per-part masks in folder i // 2000."""
    (root / "CelebA-HQ-img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in indices:
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "CelebA-HQ-img" / f"{i}.jpg")
        folder = root / "CelebAMask-HQ-mask-anno" / str(i // 2000)
        folder.mkdir(parents=True, exist_ok=True)
        skin = np.zeros((size, size), np.uint8)
        skin[4:12, 4:12] = 255
        hair = np.zeros((size, size), np.uint8)
        hair[2:6, :] = 255  # overlaps skin: hair (class 13) comes later and wins
        Image.fromarray(skin).save(folder / f"{i:05d}_skin.png")
        Image.fromarray(hair).save(folder / f"{i:05d}_hair.png")


def test_celebamask_prepare_then_read(tmp_path, capsys):
    release = tmp_path / "CelebAMask-HQ"
    _write_release(release, [0, 1, 2, 2001])
    (tmp_path / "test.txt").write_text("2\n2001\n")
    script = load_data_script("prepare_celebamask_hq")
    assert script.main(["--release", str(release), "--out", str(tmp_path / "data"),
                        "--test-list", str(tmp_path / "test.txt")]) == 0
    assert "train: 2 pairs (the paper's split has 28000)" in capsys.readouterr().out
    train = fewshot_smis.load("celebamask_hq", "train", size=None, root=tmp_path / "data")
    test = fewshot_smis.load("celebamask_hq", "test", size=8, root=tmp_path / "data")
    assert len(train) == 2 and len(test) == 2 and test.labels.shape == (2, 8, 8)
    assert train.num_classes == 19 and train.class_names[13] == "hair" and train.class_names[1] == "skin"
    lab = train.labels[0]
    assert lab[5, 8] == 13 and lab[3, 8] == 13 and lab[8, 8] == 1 and lab[14, 14] == 0  # hair over skin; background elsewhere
    assert train.images.min() >= -1 and train.images.max() <= 1


def test_sorted_order_pairing_and_clear_errors(tmp_path):
    base = fewshot_smis.split_dir("lsun_car", "test", tmp_path)
    (base / "images").mkdir(parents=True)
    (base / "labels").mkdir(parents=True)
    for stem, value in (("b", 2), ("a", 1)):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(base / "images" / f"{stem}.jpg")
    # label files named differently: the code pairs by sorted order, not by name
    Image.fromarray(np.full((8, 8), 1, np.uint8), mode="L").save(base / "labels" / "0001.png")
    Image.fromarray(np.full((8, 8), 4, np.uint8), mode="L").save(base / "labels" / "0002.png")
    data = fewshot_smis.load("lsun_car", "test", size=None, root=tmp_path)
    assert data.labels[:, 0, 0].tolist() == [1, 4] and data.num_classes == 5
    Image.fromarray(np.full((8, 8), 9, np.uint8), mode="L").save(base / "labels" / "0003.png")
    with pytest.raises(ValueError, match="paired by sorted"):
        fewshot_smis.list_pairs("lsun_car", "test", tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(base / "images" / "c.jpg")
    with pytest.raises(ValueError, match="do not map"):
        fewshot_smis.load("lsun_car", "test", size=None, root=tmp_path)
    with pytest.raises(FileNotFoundError, match="images/ and labels/"):
        fewshot_smis.list_pairs("lsun_church", "train", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        fewshot_smis.list_pairs("celeba", "train", tmp_path)


def test_lsun_prepare_shifts_parser_ids(tmp_path, capsys):
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(imgs / "church_1.jpg")
    raw = np.zeros((8, 8), np.uint8)
    raw[:4] = 2  # ADE20K parser id 2 = "sky" (0-based) -> 3 with the unknown channel first
    Image.fromarray(raw, mode="L").save(masks / "church_1.png")
    script = load_data_script("prepare_lsun_masks")
    args = ["--dataset", "lsun_church", "--split", "test", "--images", str(imgs), "--masks", str(masks),
            "--out", str(tmp_path / "data")]
    assert script.main(args + ["--shift", "1"]) == 0
    assert "the paper used 300" in capsys.readouterr().out
    data = fewshot_smis.load("lsun_church", "test", size=None, root=tmp_path / "data")
    assert data.num_classes == 151 and data.class_names[3] == "sky" and data.class_names[0] == "unknown"
    assert data.labels[0, 0, 0] == 3 and data.labels[0, 7, 0] == 1
    Image.fromarray(np.full((8, 8), 200, np.uint8), mode="L").save(masks / "church_1.png")
    with pytest.raises(SystemExit, match="do not fit 151"):
        script.main(args)


def test_paper_inputs_check_names_everything_missing(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        fewshot_smis.check_paper_inputs("celebamask_hq", "official:stylegan2-ffhq-config-f", root=tmp_path,
                                        checkpoints=tmp_path)
    message = str(err.value)
    assert "CelebAMask-HQ/train" in message and "stylegan2-ffhq-config-f.pt" in message and "parser" in message
    with pytest.raises(FileNotFoundError, match="ADEChallengeData2016"):
        fewshot_smis.check_paper_inputs("ade20k", "official:stylegan2-church-config-f", root=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'cityscape'"):
        fewshot_smis.check_paper_inputs("cityscape", "stylegan2_scenes32")
