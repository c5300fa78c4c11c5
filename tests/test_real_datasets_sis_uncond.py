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


def test_celebamask_prepared_labels_are_read(tmp_path):
    root = tmp_path / "CelebAMask-HQ"
    shutil.copytree(FIXTURES / "celebamask_hq" / "CelebAMask-HQ", root)
    script = load_data_script("prepare_celebamask_hq")
    assert script.main(["--root", str(root)]) == 0
    assert (root / "CelebAMask-HQ-label" / "28000.png").is_file()
    shutil.rmtree(root / "CelebAMask-HQ-mask-anno")  # now only the composed maps remain
    assert (cm.read_label(root, 0) == cm.compose_label(FIXTURES / "celebamask_hq", 0)).all()


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
