"""Real-dataset readers and prepare scripts of notebook 02, on fixtures in the real on-disk formats."""

from pathlib import Path

import pytest
import torch

from nbsyn.data.davis import load_davis_video, select_frames
from nbsyn.data.oneshot_folder import load_oneshot_folder
from nbsyn.data.single import load_training_frames
from script_utils import load_data_script

FIXTURES = Path(__file__).parent / "fixtures"


def test_select_frames_spreads_evenly_and_keeps_short_clips():
    assert select_frames(5, 100) == [0, 1, 2, 3, 4]
    idx = select_frames(250, 100)
    assert len(idx) == 100 and idx[0] == 0 and idx[-1] == 249 and idx == sorted(set(idx))
    with pytest.raises(ValueError):
        select_frames(0, 10)


def test_davis_video_reader_on_the_fixture():
    frames, stems = load_davis_video(FIXTURES / "davis17" / "DAVIS", "cows", max_frames=2)
    assert frames.shape == (2, 3, 16, 24) and stems == ["00000", "00002"]
    assert frames.min() >= -1 and frames.max() <= 1
    # the red object (id 1) moves right by 2 px per frame in the fixture
    red = (frames[:, 0] > 0.4) & (frames[:, 2] < 0)
    first_col = [int(r.any(0).nonzero()[0]) for r in red]
    assert first_col[1] - first_col[0] == 4
    with pytest.raises(FileNotFoundError, match="no frames"):
        load_davis_video(FIXTURES / "davis17" / "DAVIS", "nope")


def test_prepare_davis_writes_a_oneshot_folder_the_notebook_reads(tmp_path):
    prepare = load_data_script("prepare_davis")
    assert prepare.main(["--davis-root", str(FIXTURES / "davis17" / "DAVIS"), "--videos", "val",
                         "--out", str(tmp_path / "davis")]) == 0
    frames = load_oneshot_folder(tmp_path / "davis" / "cows")
    assert frames.shape == (3, 3, 16, 24)
    loaded, labels, text = load_training_frames("davis:cows", 8, 12, root=str(tmp_path))
    assert loaded.shape == (3, 3, 8, 12) and labels is None and "cows" in text
    prepare.main(["--davis-root", str(FIXTURES / "davis17" / "DAVIS"), "--videos", "binary", "--middle-only",
                  "--out", str(tmp_path / "mid")])
    assert load_oneshot_folder(tmp_path / "mid" / "binary").shape[0] == 1


def test_prepare_places_single_by_category_and_list(tmp_path):
    prepare = load_data_script("prepare_places_single")
    root = FIXTURES / "places365"
    assert prepare.main(["--places-root", str(root), "--out", str(tmp_path / "places_single"),
                         "--categories", "mountain", "--n", "50"]) == 0
    names = sorted(p.name for p in (tmp_path / "places_single" / "image").iterdir())
    assert names == ["Places365_val_00000001.jpg", "Places365_val_00000004.jpg"]  # the class-1 images
    img, _, _ = load_training_frames("places_single:Places365_val_00000004", 8, 12, root=str(tmp_path))
    assert img.shape == (1, 3, 8, 12)
    (tmp_path / "list.txt").write_text("Places365_val_00000003.jpg\n")
    prepare.main(["--places-root", str(root), "--out", str(tmp_path / "b"), "--list", str(tmp_path / "list.txt")])
    assert [p.name for p in (tmp_path / "b" / "image").iterdir()] == ["Places365_val_00000003.jpg"]
    with pytest.raises(ValueError, match="unknown Places365 categories"):
        prepare.main(["--places-root", str(root), "--out", str(tmp_path / "c"), "--categories", "moon"])


def test_oneshot_folder_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare the data"):
        load_oneshot_folder(tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_training_frames("imagenet", 8, 12)


def test_offline_modes_have_the_requested_shape():
    for name, n in [("scene", 1), ("scene_video", 7), ("scene_few", 5), ("photo:chelsea", 1),
                    ("photo_video:rocket", 7)]:
        frames, _, _ = load_training_frames(name, 16, 24, n_frames=7)
        assert frames.shape == (n, 3, 16, 24), name
        assert frames.min() >= -1 and frames.max() <= 1
    video, labels, _ = load_training_frames("scene_video", 16, 24, n_frames=7)
    assert not torch.equal(video[0], video[-1]) and labels.shape == (7, 16, 24)
