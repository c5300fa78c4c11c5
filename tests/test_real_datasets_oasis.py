"""ADE20K, Cityscapes and COCO-Stuff readers and their data_scripts, on fixtures in the official layouts.

The fixtures are made by tests/fixtures/make_oasis_fixtures.py: each image is painted with one flat
colour per raw label id (``colour(id)``), so the tests can check that pixels and labels stay aligned.
"""

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nbsyn.data import ade20k, cityscapes, cocostuff
from nbsyn.data.semantic_pairs import read_ids
from script_utils import load_data_script, load_module

FIXTURES = Path(__file__).parent / "fixtures"


MAKER = load_module(FIXTURES / "make_oasis_fixtures.py", "make_oasis_fixtures")


def assert_colours_follow_labels(dataset, raw_of_class, tol=0.12):
    """Every pixel of class c has (about) the colour the fixture painted for its raw id."""
    for image, labels in zip(dataset.images, dataset.labels):
        for c in labels.unique().tolist():
            expected = torch.tensor(MAKER.colour(raw_of_class(c)), dtype=torch.float32) / 127.5 - 1
            region = image[:, labels == c].mean(dim=1)
            assert torch.allclose(region, expected, atol=tol), (c, region, expected)


# --- ADE20K -----------------------------------------------------------------------------------


def test_ade20k_layout_and_class_names():
    root = FIXTURES / "ade20k"
    pairs = ade20k.list_pairs(root, "train")  # the parent of ADEChallengeData2016 works too
    assert [p[0].name for p in pairs] == ["ADE_train_00000001.jpg", "ADE_train_00000002.jpg"]
    assert [p[1].name for p in pairs] == ["ADE_train_00000001.png", "ADE_train_00000002.png"]
    names = ade20k.read_class_names(root)
    assert len(names) == 151 and names[0] == "other" and names[1] == "wall"
    assert names[2] == "building"  # first synonym of "building;edifice"
    assert names == ade20k.CLASS_NAMES


def test_ade20k_load_keeps_ids_and_alignment():
    data = ade20k.load(FIXTURES / "ade20k", "train", size=32)
    assert data.images.shape == (2, 3, 32, 32) and data.labels.shape == (2, 32, 32)
    assert data.num_classes == 151
    assert data.labels[0].unique().tolist() == [0, 3, 8]  # "other" stays class 0
    assert data.labels[1].unique().tolist() == [7, 13, 150]
    assert data.labels[0, 0, 0] == 3 and data.labels[0, -1, 0] == 8 and data.labels[0, -1, -1] == 0
    assert_colours_follow_labels(data, lambda c: c)
    val = ade20k.load(FIXTURES / "ade20k", "val", size=None)
    assert val.images.shape == (1, 3, 16, 16)


def test_ade20k_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an ADE20K root"):
        ade20k.list_pairs(tmp_path)
    with pytest.raises(ValueError, match="split"):
        ade20k.list_pairs(FIXTURES / "ade20k", "test")
    broken = tmp_path / "ADEChallengeData2016"
    shutil.copytree(FIXTURES / "ade20k" / "ADEChallengeData2016", broken)
    (broken / "annotations/training/ADE_train_00000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="ADE_train_00000002"):
        ade20k.list_pairs(tmp_path)


# --- Cityscapes -------------------------------------------------------------------------------


def test_cityscapes_pairs_use_label_ids_only():
    pairs = cityscapes.list_pairs(FIXTURES / "cityscapes", "train")
    assert [p[1].name for p in pairs] == ["aachen_000000_000019_gtFine_labelIds.png",
                                          "bochum_000000_000313_gtFine_labelIds.png"]
    assert all(p[0].name.endswith("_leftImg8bit.png") for p in pairs)


def test_cityscapes_load_and_licence_plate():
    data = cityscapes.load(FIXTURES / "cityscapes", "train", size=(32, 64))
    assert data.images.shape == (2, 3, 32, 64) and data.num_classes == 35
    assert data.labels[0].unique().tolist() == [7, 23, 26]  # road, sky, car
    assert data.class_names[26] == "car" and data.class_names[23] == "sky"
    # the licence plate (-1, stored as 255) becomes 0 "unlabeled"
    assert read_ids(cityscapes.list_pairs(FIXTURES / "cityscapes", "train")[1][1]).max() == 255
    assert data.labels[1].unique().tolist() == [0, 11]
    assert_colours_follow_labels(data.split(1)[0], lambda c: c, tol=0.02)  # PNG: lossless


def test_cityscapes_rejects_colour_maps(tmp_path):
    colour_png = next((FIXTURES / "cityscapes" / "gtFine" / "train").glob("*/*_color.png"))
    with pytest.raises(ValueError, match="single-channel"):
        read_ids(colour_png)


# --- COCO-Stuff -------------------------------------------------------------------------------


def test_cocostuff_shift_and_unlabeled():
    data = cocostuff.load(FIXTURES / "cocostuff", "train", size=16)
    assert data.num_classes == 183 and data.class_names[0] == "unlabeled"
    assert data.class_names[1] == "person" and data.class_names[182] == "wood"
    # raw 156 -> 157, raw 0 (person) -> 1, raw 255 -> 0
    assert data.labels[0].unique().tolist() == [0, 1, 157]
    assert data.class_names[157] == "sky-other"
    assert data.labels[1].unique().tolist() == [25, 106, 124]
    assert_colours_follow_labels(data, lambda c: 255 if c == 0 else c - 1)


def test_cocostuff_rejects_ids_outside_the_label_set(tmp_path):
    root = tmp_path / "cocostuff"
    shutil.copytree(FIXTURES / "cocostuff", root)
    label = root / "annotations/val2017/000000000139.png"
    from PIL import Image

    ids = read_ids(label).astype(np.uint8)
    ids[0, 0] = 200  # neither 0..181 nor 255
    Image.fromarray(ids).save(label)
    with pytest.raises(ValueError, match="do not map"):
        cocostuff.load(root, "val")


# --- data_scripts -----------------------------------------------------------------------------


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + str(path.relative_to(folder)))
    return archive


def test_prepare_ade20k_unpacks_and_checks(tmp_path, capsys):
    script = load_data_script("prepare_ade20k")
    archive = zip_folder(FIXTURES / "ade20k", tmp_path / "ADEChallengeData2016.zip")
    assert script.main(["--zip", str(archive), "--out", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "train: 2 image / label pairs (the official split has 20210)" in out
    data = ade20k.load(tmp_path / "data", "train", size=16)
    assert torch.equal(data.labels, ade20k.load(FIXTURES / "ade20k", "train", size=16).labels)
    with pytest.raises(FileNotFoundError, match="not an ADE20K root"):
        script.main(["--root", str(tmp_path)])


def test_prepare_cityscapes_unpacks_both_archives(tmp_path):
    script = load_data_script("prepare_cityscapes")
    images = zip_folder(FIXTURES / "cityscapes" / "leftImg8bit", tmp_path / "leftImg8bit.zip", "leftImg8bit/")
    labels = zip_folder(FIXTURES / "cityscapes" / "gtFine", tmp_path / "gtFine.zip", "gtFine/")
    assert script.main(["--zips", str(images), str(labels), "--out", str(tmp_path / "cs")]) == 0
    assert len(cityscapes.list_pairs(tmp_path / "cs", "val")) == 1


def test_prepare_cocostuff_official_archives(tmp_path):
    script = load_data_script("prepare_cocostuff")
    train = zip_folder(FIXTURES / "cocostuff" / "images" / "train2017", tmp_path / "train2017.zip", "train2017/")
    maps = zip_folder(FIXTURES / "cocostuff" / "annotations", tmp_path / "stuffthingmaps_trainval2017.zip")
    assert script.main(["--images", str(train), "--stuffthingmaps", str(maps), "--out", str(tmp_path / "cs")]) == 0
    assert len(cocostuff.list_pairs(tmp_path / "cs", "train")) == 2


def test_fixture_maker_reproduces_the_committed_label_maps(tmp_path, monkeypatch):
    monkeypatch.setattr(MAKER, "HERE", tmp_path)
    MAKER.ade20k()
    MAKER.cityscapes()
    MAKER.cocostuff()
    for committed in FIXTURES.glob("*/**/*.png"):
        if committed.parts[len(FIXTURES.parts)] not in ("ade20k", "cityscapes", "cocostuff"):
            continue
        if "labelIds" in committed.name or "annotations" in committed.parts:
            fresh = tmp_path / committed.relative_to(FIXTURES)
            assert np.array_equal(read_ids(fresh), read_ids(committed)), committed
