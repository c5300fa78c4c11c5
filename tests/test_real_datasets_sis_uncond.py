"""Notebook 07's paper data: CelebAMask-HQ and LSUN readers and data_scripts, on fixtures in the official layouts
(made by tests/fixtures/make_chae_fixtures.py)."""

import shutil
from pathlib import Path

import pytest
import torch

from nbsyn.data import celebamask_hq as cm
from nbsyn.data import lsun
from script_utils import load_data_script

FIXTURES = Path(__file__).parent / "fixtures"


def test_celebamask_split_and_composition_order():
    root = FIXTURES / "celebamask_hq"  # the parent of CelebAMask-HQ works too
    assert cm.list_ids(root, "train") == [0, 1] and cm.list_ids(root, "test") == [28000]
    label = cm.compose_label(root, 0)
    assert label.shape == (16, 16)
    assert label[3, 6] == cm.CLASS_NAMES.index("hair")  # hair (13) painted over skin (1)
    assert label[8, 10] == cm.CLASS_NAMES.index("skin") and label[8, 5] == cm.CLASS_NAMES.index("l_eye")
    assert label[0, 0] == 0
    no_hair = cm.compose_label(root, 1)  # a missing part file = that part is absent
    assert (no_hair == cm.CLASS_NAMES.index("hair")).sum() == 0 and no_hair[4, 6] == 1
    assert len(cm.CLASS_NAMES) == cm.NUM_CLASSES == 19 == len(cm.PALETTE)


def test_celebamask_load_resizes_image_and_label_together():
    data = cm.load(FIXTURES / "celebamask_hq", "train", size=8)
    assert data.images.shape == (2, 3, 8, 8) and data.labels.shape == (2, 8, 8)
    assert data.images.min() >= -1 and data.images.max() <= 1 and data.num_classes == 19
    test = cm.load(FIXTURES / "celebamask_hq", "test", size=None)
    assert test.images.shape == (1, 3, 16, 16)  # the image is brought to the masks' size


def test_celebamask_reader_agrees_with_the_shared_prepare_script(tmp_path):
    """data_scripts/prepare_celebamask_hq.py (shared with notebook 05) composes the same maps."""
    from nbsyn.data import fewshot_smis
    from nbsyn.data.semantic_pairs import read_ids

    assert fewshot_smis.CELEBAMASK_CLASSES == cm.CLASS_NAMES
    script = load_data_script("prepare_celebamask_hq")
    release = FIXTURES / "celebamask_hq" / "CelebAMask-HQ"
    assert script.main(["--release", str(release), "--out", str(tmp_path)]) == 0
    for idx in (0, 1, 28000):
        split = "test" if idx == 28000 else "train"
        prepared = read_ids(tmp_path / "CelebAMask-HQ" / split / "labels" / f"{idx:05d}.png")
        assert (prepared == cm.compose_label(release, idx)).all()
    root = tmp_path / "composed" / "CelebAMask-HQ"  # a composed CelebAMask-HQ-label/ folder is read as well
    shutil.copytree(release, root)
    (root / "CelebAMask-HQ-label").mkdir()
    from PIL import Image

    Image.fromarray(cm.compose_label(root, 0).astype("uint8")).save(root / "CelebAMask-HQ-label" / "0.png")
    shutil.rmtree(root / "CelebAMask-HQ-mask-anno" / "0")
    assert (cm.read_label(root, 0) == cm.compose_label(release, 0)).all()


def test_celebamask_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="CelebAMask-HQ root"):
        cm.list_ids(tmp_path)
    with pytest.raises(ValueError, match="unknown CelebAMask-HQ split"):
        cm.list_ids(FIXTURES / "celebamask_hq", "val")


def test_lsun_exported_folder_centre_crop():
    images = lsun.load(FIXTURES / "lsun", "church_outdoor", size=8)
    assert images.shape == (2, 3, 8, 8) and images.min() >= -1 and images.max() <= 1
    # 24x16 image: the 16x16 centre crop keeps columns 4..19, half red (cols < 12), half not
    assert images[0, 0, :, 1] .mean() > images[0, 0, :, 6].mean()


def test_lsun_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown LSUN category"):
        lsun.load(tmp_path, "kitchen")
    with pytest.raises(FileNotFoundError, match="no LSUN church_outdoor data"):
        lsun.load(tmp_path, "church_outdoor")
    (tmp_path / "church_outdoor_train_lmdb").mkdir()
    try:
        import lmdb  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install lmdb"):
            lsun.load(tmp_path, "church_outdoor")


def test_prepare_lsun_checks_an_exported_folder(capsys):
    script = load_data_script("prepare_lsun")
    assert script.main(["--root", str(FIXTURES / "lsun"), "--category", "church_outdoor"]) == 0
    assert "readable" in capsys.readouterr().out
