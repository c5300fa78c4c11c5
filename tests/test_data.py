import pytest
import torch

from nbsyn.data import (PHOTOS, PairedAugment, apply_affine, check_images, check_labels, landmarks, load_photo,
                        make_dataset, one_hot, scribbles)
from nbsyn.data.procedural import FACE_CLASSES, SCENE_CLASSES


@pytest.mark.parametrize("name,classes", [("scenes", SCENE_CLASSES), ("faces", FACE_CLASSES)])
def test_procedural_dataset_shapes_ranges_and_classes(name, classes):
    ds = make_dataset(name, 6, 32, seed=1)
    assert ds.images.shape == (6, 3, 32, 32) and ds.labels.shape == (6, 32, 32)
    assert ds.images.min() >= -1 and ds.images.max() <= 1
    assert list(ds.class_names) == list(classes) and len(ds.palette) == ds.num_classes
    assert ds.labels.max() < ds.num_classes
    # most classes appear somewhere in a handful of images
    assert len(ds.labels.unique()) >= ds.num_classes - 2


def test_procedural_is_deterministic_and_sample_independent_of_n():
    a = make_dataset("scenes", 3, 24, seed=5)
    b = make_dataset("scenes", 5, 24, seed=5)
    c = make_dataset("scenes", 3, 24, seed=6)
    assert torch.equal(a.images, b.images[:3]) and torch.equal(a.labels, b.labels[:3])
    assert not torch.equal(a.images, c.images)


def test_any_resolution_keeps_the_layout():
    small, large = make_dataset("faces", 1, 32, 0), make_dataset("faces", 1, 128, 0)
    down = torch.nn.functional.interpolate(one_hot(large.labels, 9), size=32, mode="area").argmax(1)
    assert (down == small.labels).float().mean() > 0.85


def test_images_are_textured_not_flat():
    ds = make_dataset("scenes", 4, 64, 0)
    for cls in (0, 3):  # sky and grass: shaded and textured within a class
        pixels = ds.images.permute(0, 2, 3, 1)[ds.labels == cls]
        assert pixels.std(0).mean() > 0.02


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown dataset 'cityscape'.*scenes, faces"):
        make_dataset("cityscape", 2, 32)


def test_check_labels_reports_out_of_range_ids():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 0, 0] = 9
    with pytest.raises(ValueError, match=r"class ids \[9\] outside \[0, 7\]"):
        check_labels(labels, 8)
    with pytest.raises(ValueError, match="integer"):
        check_labels(labels.float(), 8)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        check_labels(labels[0], 8)
    labels[0, 0, 0] = 255
    check_labels(labels, 8, ignore_index=255)


def test_check_images_reports_wrong_shapes_and_ranges():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        check_images(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="must be 16x16"):
        check_images(torch.zeros(2, 3, 8, 8), size=16)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        check_images(torch.full((1, 3, 4, 4), 255.0))


def test_one_hot():
    labels = torch.tensor([[[0, 2], [1, 2]]])
    oh = one_hot(labels, 3)
    assert oh.shape == (1, 3, 2, 2) and torch.equal(oh.argmax(1), labels) and torch.equal(oh.sum(1), torch.ones(1, 2, 2))


def test_paired_augment_moves_image_and_mask_together():
    # an image whose colour encodes its label: after the shared warp they must still agree
    labels = make_dataset("scenes", 4, 32, 0).labels
    images = (labels.float() / 7 * 2 - 1)[:, None].repeat(1, 3, 1, 1)
    aug = PairedAugment(flip=True, zoom=(1.0, 1.5), max_degrees=10)
    warped, warped_labels = aug(images, labels, torch.Generator().manual_seed(0))
    assert warped_labels.dtype == torch.long and set(warped_labels.unique().tolist()) <= set(labels.unique().tolist())
    recovered = ((warped[:, 0] + 1) / 2 * 7).round().long()
    assert (recovered == warped_labels).float().mean() > 0.9


def test_flip_is_exact():
    images = torch.randn(1, 3, 8, 8).clamp(-1, 1)
    labels = torch.randint(0, 4, (1, 8, 8))
    theta = torch.tensor([[[-1.0, 0, 0], [0, 1.0, 0]]])
    x, y = apply_affine(images, labels, theta)
    assert torch.allclose(x, images.flip(-1), atol=1e-5) and torch.equal(y, labels.flip(-1))


def test_scribbles_and_landmarks():
    labels = torch.zeros(20, 20, dtype=torch.long)
    labels[:, 10:] = 1
    s = scribbles(labels)
    assert set(s.unique().tolist()) == {0, 1, 255}
    assert ((s == labels) | (s == 255)).all()  # scribbles never contradict the dense map
    assert (s != 255).float().mean() < 0.3
    pts = landmarks(labels)
    assert pts[0] == (9.5, 4.5) and pts[1] == (9.5, 14.5)


@pytest.mark.parametrize("name", PHOTOS[:2])
def test_offline_photo_and_its_mask(name):
    image, labels, names = load_photo(name, 48, k=4)
    assert image.shape == (3, 48, 48) and labels.shape == (48, 48) and len(names) == 4
    assert set(labels.unique().tolist()) <= {0, 1, 2, 3} and len(labels.unique()) >= 3
    with pytest.raises(ValueError, match="unknown photo"):
        load_photo("mona_lisa", 32)
