"""DAVIS-2017 and COCO one-shot readers and their data_scripts, on fixtures in the real on-disk format.

The fixtures (tests/fixtures/davis17, tests/fixtures/coco_oneshot) are made by
tests/fixtures/davis17/make_fixtures.py: palette PNG annotations with ids 0..K and 255 = void, a
DAVIS-2016 style 0/255 greyscale mask, JPEG frames; a COCO instances json with polygons and crowd RLE.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nbsyn.data import coco_oneshot, davis17
from script_utils import load_data_script

FIXTURES = Path(__file__).parent / "fixtures"
DAVIS = FIXTURES / "davis17" / "DAVIS"
COCO = FIXTURES / "coco_oneshot"


# --- DAVIS-2017 ------------------------------------------------------------------------------


def test_davis_splits_and_frames():
    assert davis17.list_videos(DAVIS, "val") == ["cows", "binary"]
    assert davis17.list_frames(DAVIS, "cows") == ["00000", "00001", "00002"]
    with pytest.raises(FileNotFoundError, match="split"):
        davis17.list_videos(DAVIS, "test-dev")
    with pytest.raises(FileNotFoundError, match="not a DAVIS root"):
        davis17.list_videos(FIXTURES)


def test_davis_palette_annotation_ids_and_void():
    ids = davis17.read_annotation(DAVIS / "Annotations/480p/cows/00000.png")
    assert set(np.unique(ids).tolist()) == {0, 1, 2, 255}
    image, labels = davis17.load_frame(DAVIS, "cows", 0)
    assert image.shape == (3, 16, 24) and labels.shape == (16, 24)
    assert image.min() >= -1 and image.max() <= 1
    assert set(labels.unique().tolist()) == {0, 1, 2}  # void -> background
    _, with_void = davis17.load_frame(DAVIS, "cows", 0, void_to=None)
    assert (with_void[0] == 255).all()
    # the object colours of the fixture sit where the mask says
    red, green = image[0], image[1]
    assert red[labels == 1].mean() > red[labels == 0].mean() + 0.5
    assert green[labels == 2].mean() > green[labels == 1].mean() + 0.3


def test_davis_binary_greyscale_mask_is_object_one():
    _, labels = davis17.load_frame(DAVIS, "binary", 0)
    assert set(labels.unique().tolist()) == {0, 1}
    assert labels.sum() == 6 * 6


def test_davis_first_frame_resize_keeps_ids_and_video_moves():
    image, labels, names = davis17.load_first_frame(DAVIS, "cows", size=(32, 48))
    assert image.shape == (3, 32, 48) and labels.shape == (32, 48)
    assert labels.dtype == torch.long and set(labels.unique().tolist()) <= {0, 1, 2}
    assert names == ["background", "cows object 1", "cows object 2"]
    images, masks = davis17.load_video(DAVIS, "cows", size=None)
    assert images.shape == (3, 3, 16, 24)
    cols = [torch.nonzero(m == 1)[:, 1].min().item() for m in masks]
    assert cols == [2, 4, 6]  # the fixture's object moves 2 px per frame


def test_prepare_davis_script_writes_loadable_pairs(tmp_path):
    script = load_data_script("prepare_davis17_first_frames")
    assert script.main(["--davis-root", str(DAVIS), "--out", str(tmp_path), "--size", "48x32"]) == 0
    image, labels, names = davis17.load_prepared_pair(tmp_path / "cows")
    ref_image, ref_labels, _ = davis17.load_first_frame(DAVIS, "cows", size=(32, 48))
    assert torch.equal(labels, ref_labels)
    assert (image - ref_image).abs().max() <= 1 / 127.5 + 1e-6  # 8-bit PNG round trip
    assert names == ["background", "object 1", "object 2"]
    with pytest.raises(SystemExit):
        script.main(["--davis-root", str(DAVIS), "--out", str(tmp_path), "--size", "big"])


def test_prepared_pair_needs_exactly_one_image(tmp_path):
    (tmp_path / "image").mkdir()
    with pytest.raises(ValueError, match="exactly one image"):
        davis17.load_prepared_pair(tmp_path)


# --- COCO ------------------------------------------------------------------------------------


def test_coco_polygons_and_rle_decode():
    data = coco_oneshot.load_instances(COCO / "annotations/instances_val2017.json")
    anns = {a["id"]: a for a in data["annotations"]}
    rect = coco_oneshot.annotation_mask(anns[101], 16, 24)
    assert rect.sum() == 48 and rect[2:8, 3:11].all()  # polygon area exact for a rectangle
    crowd = coco_oneshot.annotation_mask(anns[104], 16, 24)
    assert crowd.sum() == 4 and crowd[4:8, 20].all()  # column-major RLE


def encode_rle_string(runs):
    """COCO's compressed RLE encoder (maskApi rleToString), written independently for the test."""
    out = []
    for i, x in enumerate(runs):
        if i > 2:
            x -= runs[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def test_coco_compressed_rle_round_trip():
    rng = np.random.default_rng(0)
    mask = rng.random((7, 9)) > 0.6
    runs = coco_oneshot.mask_to_runs(mask)
    assert np.array_equal(coco_oneshot.rle_to_mask({"size": [7, 9], "counts": runs}), mask)
    counts = encode_rle_string(runs)
    assert coco_oneshot.decode_rle_string(counts) == runs
    assert np.array_equal(coco_oneshot.rle_to_mask({"size": [7, 9], "counts": counts}), mask)
    with pytest.raises(ValueError, match="sum"):
        coco_oneshot.rle_to_mask({"size": [7, 10], "counts": runs})


def test_coco_pair_modes():
    data = coco_oneshot.load_instances(COCO / "annotations/instances_val2017.json")
    image, labels, names = coco_oneshot.oneshot_pair(data, COCO / "val2017", 7, mode="class")
    assert image.shape == (3, 16, 24) and labels.shape == (16, 24)
    assert names == ["background", "person", "bicycle"]
    assert (labels == 1).sum() == 48 + 4 and (labels == 2).sum() == 8  # crowd region ignored
    _, inst, inst_names = coco_oneshot.oneshot_pair(data, COCO / "val2017", 7, mode="instance")
    assert len(inst_names) == 4 and set(inst.unique().tolist()) == {0, 1, 2, 3}
    _, binary, bin_names = coco_oneshot.oneshot_pair(data, COCO / "val2017", 7, 2, mode="binary")
    assert bin_names == ["background", "bicycle"] and binary.sum() == 8
    with pytest.raises(ValueError, match="category_id"):
        coco_oneshot.oneshot_pair(data, COCO / "val2017", 7, mode="binary")
    with pytest.raises(ValueError, match="not in the annotation"):
        coco_oneshot.oneshot_pair(data, COCO / "val2017", 8)


def test_coco20i_folds_partition_the_80_classes():
    data = coco_oneshot.load_instances(COCO / "annotations/instances_val2017.json")
    for convention in coco_oneshot.FOLD_CONVENTIONS:
        folds = [coco_oneshot.fold_classes(data, f, convention) for f in range(4)]
        assert all(len(f) == 20 for f in folds)
        assert sorted(sum(folds, [])) == sorted(data["_categories"])
    assert coco_oneshot.fold_classes(data, 0)[:2] == [1, 5]  # person, car: positions 1, 5
    assert coco_oneshot.fold_classes(data, 1)[0] == 2
    with pytest.raises(ValueError, match="folds 0..3"):
        coco_oneshot.fold_classes(data, 4)


def test_prepare_coco_script(tmp_path):
    script = load_data_script("prepare_coco_oneshot")
    assert script.main(["--coco-root", str(COCO), "--fold", "1", "--out", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {m["image_id"] for m in manifest} == {7, 9}  # bicycle (fold 1) occurs in both images
    _, labels, _ = davis17.load_prepared_pair(tmp_path / manifest[0]["name"])
    assert set(labels.unique().tolist()) == {0, 1}
    out2 = tmp_path / "ids"
    assert script.main(["--coco-root", str(COCO), "--image-ids", "7", "--max-side", "12", "--out", str(out2)]) == 0
    _, labels, _ = davis17.load_prepared_pair(out2 / "image_000000000007")
    assert labels.shape == (8, 12) and labels.max() == 2
