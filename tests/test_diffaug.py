"""Differentiable augmentation: identical transforms where they must be, gradients, bad input."""

import pytest
import torch
import torch.nn.functional as F

from nbsyn.nn.diffaug import apply_params, diff_augment, parse_policy, sample_params

torch.set_num_threads(1)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_p_zero_is_identity():
    x = torch.randn(4, 3, 16, 24)
    assert torch.equal(diff_augment(x, p=0.0, generator=_gen()), x)


def test_flip_only_mirrors_exactly():
    x = torch.randn(6, 3, 8, 12)
    y = diff_augment(x, policy="flip", p=1.0, generator=_gen())
    assert torch.allclose(y, x.flip(-1), atol=1e-5)


def test_translation_moves_content_by_whole_pixels():
    # a shift of exactly 2 of 16 pixels: the interior is the shifted input
    x = torch.randn(1, 1, 16, 16)
    params = sample_params(1, "translation", p=1.0, generator=_gen())
    params.theta[:] = torch.tensor([[1.0, 0.0, -2 * 2 / 16], [0.0, 1.0, 0.0]])
    y = apply_params(x, params)
    assert torch.allclose(y[..., 2:], x[..., :-2], atol=1e-5)


def test_same_seed_same_transform_and_different_seed_differs():
    x = torch.randn(5, 3, 16, 16)
    a = diff_augment(x, generator=_gen(1))
    b = diff_augment(x, generator=_gen(1))
    c = diff_augment(x, generator=_gen(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_pyramid_levels_get_the_same_transform():
    # augmenting then downsampling == downsampling then augmenting (up to resampling error)
    x = torch.rand(5, 3, 32, 48)
    x = F.avg_pool2d(F.interpolate(x, scale_factor=0.25, mode="bilinear"), 1)
    x = F.interpolate(x, size=(32, 48), mode="bilinear", align_corners=False)  # smooth image
    small = F.interpolate(x, size=(16, 24), mode="bilinear", align_corners=False, antialias=True)
    big_aug, small_aug = diff_augment([x, small], p=1.0, generator=_gen(3))
    big_aug_down = F.interpolate(big_aug, size=(16, 24), mode="bilinear", align_corners=False, antialias=True)
    assert (big_aug_down - small_aug).abs().mean() < 0.02
    # an independent transform is much further away
    other = diff_augment(small, p=1.0, generator=_gen(4))
    assert (big_aug_down - other).abs().mean() > 3 * (big_aug_down - small_aug).abs().mean()


def test_mask_gets_the_same_geometry_as_the_image():
    # the image *is* the mask (as floats): after augmentation they must agree almost everywhere
    labels = torch.zeros(4, 24, 32, dtype=torch.long)
    labels[:, 6:18, 4:14] = 1
    labels[:, 2:10, 18:30] = 2
    image = labels[:, None].float().repeat(1, 3, 1, 1)
    img_aug, mask_aug = diff_augment(image, p=1.0, generator=_gen(5), masks=labels)
    assert mask_aug.dtype == torch.long and mask_aug.shape == labels.shape
    assert set(mask_aug.unique().tolist()) <= {0, 1, 2}
    agree = (img_aug[:, 0].round().long() == mask_aug).float().mean()
    assert agree > 0.95  # only boundary pixels may differ (bilinear vs nearest)
    assert not torch.equal(mask_aug, labels)  # it did move
    _, other = diff_augment(image, p=1.0, generator=_gen(6), masks=labels)
    assert (img_aug[:, 0].round().long() == other).float().mean() < agree - 0.05


def test_color_and_cutout_leave_masks_alone():
    labels = torch.randint(0, 3, (3, 8, 8))
    img = torch.randn(3, 3, 8, 8)
    img_aug, mask_aug = diff_augment(img, policy="color,cutout", p=1.0, generator=_gen(), masks=labels)
    assert torch.equal(mask_aug, labels)
    assert not torch.allclose(img_aug, img)


def test_gradients_flow_through_every_op():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x, policy="translation,crop,rotation,flip,color,cutout", p=1.0, generator=_gen())
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="unknown augmentation"):
        parse_policy("translation,zoomz")
    with pytest.raises(ValueError, match="probability"):
        diff_augment(torch.zeros(1, 3, 4, 4), p=1.5)
    params = sample_params(2, p=1.0)
    with pytest.raises(ValueError, match="batch of 2"):
        apply_params(torch.zeros(3, 3, 4, 4), params)
