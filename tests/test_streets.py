"""The `streets` dataset (issue 17): deterministic, long-tailed, classes that share colours, aligned labels."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from nbsyn import data
from nbsyn.data.streets import SAME_COLOUR_GROUPS, STREET_CLASSES, render_street
from nbsyn.metrics import mean_iou_over, rare_classes


@pytest.fixture(scope="module")
def streets():
    return data.make_dataset("streets", 120, 64, seed=0)


def class_mean_colours(ds):
    pixels, labels = ds.images.permute(0, 2, 3, 1).reshape(-1, 3), ds.labels.flatten()
    return {ds.class_names[k]: pixels[labels == k].mean(0) for k in range(ds.num_classes) if (labels == k).any()}


def test_shapes_classes_and_every_class_occurs(streets):
    assert len(STREET_CLASSES) >= 20 and streets.num_classes == len(STREET_CLASSES)
    assert streets.images.shape == (120, 3, 64, 64) and streets.images.min() >= -1 and streets.images.max() <= 1
    assert set(streets.labels.unique().tolist()) == set(range(len(STREET_CLASSES)))
    assert len(set(map(tuple, streets.palette))) == len(STREET_CLASSES), "label display colours must differ"


def test_deterministic_and_independent_of_how_many_are_drawn():
    a_img, a_lab = render_street(3, 5, 48)
    b_img, b_lab = render_street(3, 5, 48)
    assert torch.equal(a_img, b_img) and torch.equal(a_lab, b_lab)
    assert torch.equal(data.make_dataset("streets", 6, 32, seed=3).labels[5], render_street(3, 5, 32)[1])
    assert not torch.equal(render_street(3, 6, 48)[1], a_lab)
    assert not torch.equal(render_street(4, 5, 48)[1], a_lab)


def test_any_resolution_renders_the_same_layout():
    small = render_street(0, 2, 64)[1]
    large = render_street(0, 2, 256)[1]
    down = F.interpolate(large[None, None].float(), size=(64, 64), mode="nearest")[0, 0].long()
    assert (down == small).float().mean() > 0.9


def test_class_frequencies_are_long_tailed(streets):
    share = torch.bincount(streets.labels.flatten(), minlength=streets.num_classes).double()
    share = (share / share.sum()).sort(descending=True).values
    assert share[:3].sum() > 0.5, "a few classes (sky, building, road) cover most pixels"
    rare = share[-(streets.num_classes // 3):]
    assert rare.max() < 0.005 and rare.sum() < 0.02, "the bottom third are small, rare classes"
    assert share[0] / share[-1] > 100, "head and tail differ by more than two orders of magnitude"
    # scenes, for contrast, has 8 classes and no class below 1 % ... the tail is what is new
    presence = (streets.labels.flatten(1)[:, :, None] == torch.arange(streets.num_classes)).any(1).float().mean(0)
    assert (presence < 0.5).sum() >= 4, "several classes appear in fewer than half of the images"


def test_classes_share_colours_unlike_scenes(streets):
    """Each declared group holds classes whose rendered mean colours nearly coincide ([-1, 1] RGB)."""
    means = class_mean_colours(streets)
    for group in SAME_COLOUR_GROUPS:
        closest = min((means[a] - means[b]).norm().item() for a, b in itertools.combinations(group, 2))
        assert closest < 0.15, f"{group} should share a colour, closest pair differs by {closest:.3f}"
    scenes = class_mean_colours(data.make_dataset("scenes", 60, 64, seed=0))
    assert min((scenes[a] - scenes[b]).norm().item() for a, b in itertools.combinations(scenes, 2)) > 0.15


def test_labels_align_with_the_rendered_objects(streets):
    """Pixels of one label are more alike than pixels of the same label map shifted by 2 px."""
    def within_segment_variance(images, labels):
        total = 0.0
        for k in labels.unique():
            px = images.permute(0, 2, 3, 1)[labels == k]
            total += px.var(0).sum().item() * len(px)
        return total / labels.numel()

    images, labels = streets.images[:40], streets.labels[:40]
    aligned = within_segment_variance(images, labels)
    for shift in [(2, 0), (0, 2), (-2, 0)]:
        shifted = torch.roll(labels, shifts=shift, dims=(1, 2))
        assert aligned < 0.8 * within_segment_variance(images, shifted)
    means = class_mean_colours(streets)
    assert means["lane marking"].min() > 0.6, "lane markings are white"
    assert means["window"][2] > means["window"][0] + 0.2, "windows are blue (they reflect the sky)"
    assert means["grass"][1] > means["grass"][0] and means["grass"][1] > means["grass"][2]


def test_rare_classes_and_their_mean_iou():
    labels = torch.tensor([[0, 0, 0, 0, 1, 1, 2, 3]])
    assert rare_classes(labels, 4, fraction=0.5) == [2, 3]
    assert rare_classes(torch.tensor([[0, 0, 1]]), 3, fraction=1 / 3) == [2]  # absent = rarest
    nan = float("nan")
    assert mean_iou_over([0.9, 0.5, 0.2, nan], [2, 3]) == pytest.approx(0.2)
    assert mean_iou_over([0.9, 0.5, nan, nan], [2, 3]) != mean_iou_over([0.9, 0.5, nan, nan], [2, 3])  # NaN


def test_streets_is_a_known_dataset_with_clear_errors():
    assert "streets" in data.DATASETS
    with pytest.raises(ValueError, match="streets"):
        data.make_dataset("street", 2, 32)
