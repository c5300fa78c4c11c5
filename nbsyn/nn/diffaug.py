"""Differentiable augmentation (DA) applied identically where it must be.

The limited-data GANs of the thesis (SIV-GAN, OSMIS, SSR) show the discriminator only augmented
images, real *and* fake, so that it cannot memorise the few training images and so that the
augmentations do not leak into the generator [thesis L918-927]. SIV-GAN uses "translation, cropping,
rotation, and horizontal flipping ... with a probability of 0.7 at each forward pass" [L1460].

Every geometric op here is an affine map in normalised coordinates, so one sampled transform can be
applied to tensors of different resolutions (the MSG image pyramid of SIV-GAN) and to label masks
(OSMIS) and lands on the same content everywhere. Sampling and applying are separate:

    params = sample_params(batch, policy="translation,crop,rotation,flip", p=0.7, generator=g)
    img_aug = apply_params(img, params)                 # bilinear, differentiable
    mask_aug = apply_params(mask, params, kind="mask")  # nearest, geometric ops only

or in one call, ``diff_augment(x, policy=..., p=..., generator=None, masks=None)`` where ``x`` (and
``masks``) may be a tensor or a list of tensors that all share the batch's transform.

Magnitudes (the thesis gives none; [CODE] = the authors' kornia pipeline, see specs A.6):
translation up to ``max_translate`` = 1/8 of the side (DiffAugment's default; [CODE] uses 5-30 %),
crop = a window of 75-100 % of the side resized back ([CODE]), rotation up to +-8 degrees with a
1.25x zoom (the 80 % centre crop of [CODE]) so no border enters, horizontal flip. ``p`` is drawn
independently per op and per sample (as in ADA). Out-of-image samples use reflection padding.
Two image-only ops from DiffAugment are also offered for other notebooks: ``color`` (brightness,
saturation, contrast) and ``cutout`` (a square of half the side set to zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import torch
import torch.nn.functional as F

GEOMETRIC_OPS = ("translation", "crop", "rotation", "flip")
IMAGE_ONLY_OPS = ("color", "cutout")
VALID_OPS = GEOMETRIC_OPS + IMAGE_ONLY_OPS
DEFAULT_POLICY = "translation,crop,rotation,flip"

TensorOrList = Union[torch.Tensor, Sequence[torch.Tensor]]


@dataclass
class AugmentParams:
    """One sampled augmentation for a batch.

    ``theta`` (B, 2, 3) maps output to input coordinates (``F.affine_grid`` convention) in a
    square-pixel frame; ``geometric`` (B,) says which samples move at all; ``color`` holds per-sample
    (brightness, saturation, contrast) factors or None; ``cutout`` per-sample (active, cy, cx) or None.
    """

    theta: torch.Tensor
    geometric: torch.Tensor
    color: torch.Tensor | None = None
    cutout: torch.Tensor | None = None


def parse_policy(policy: str | Sequence[str]) -> tuple[str, ...]:
    """Split ``"translation,crop"`` into ops and reject unknown names with a clear error."""
    ops = tuple(o.strip() for o in policy.split(",")) if isinstance(policy, str) else tuple(policy)
    ops = tuple(o for o in ops if o)
    unknown = [o for o in ops if o not in VALID_OPS]
    if unknown:
        raise ValueError(f"unknown augmentation op(s) {unknown}; valid ops: {', '.join(VALID_OPS)}")
    return ops


def _rand(n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator)


def sample_params(batch: int, policy: str | Sequence[str] = DEFAULT_POLICY, p: float = 0.7,
                  generator: torch.Generator | None = None, aspect: float = 1.0,
                  max_translate: float = 0.125, crop_range: tuple[float, float] = (0.75, 1.0),
                  max_rotate_deg: float = 8.0, rotate_zoom: float = 1.25) -> AugmentParams:
    """Sample one transform per sample. ``aspect`` = W / H of the images it will be applied to.

    Random numbers are drawn on the CPU from ``generator`` (reproducible), in a fixed order that does
    not depend on ``p``, so changing ``p`` does not reshuffle the other draws.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"augmentation probability p must be in [0, 1], got {p}")
    ops = parse_policy(policy)
    eye = torch.eye(3).expand(batch, 3, 3).clone()
    matrix = eye.clone()
    geometric = torch.zeros(batch, dtype=torch.bool)
    # square-pixel frame: x in [-aspect, aspect], y in [-1, 1]; S maps normalised -> square frame
    scale_to_square = torch.diag(torch.tensor([aspect, 1.0, 1.0]))
    scale_from_square = torch.diag(torch.tensor([1.0 / aspect, 1.0, 1.0]))

    def compose(active: torch.Tensor, op_matrix: torch.Tensor) -> None:
        nonlocal matrix, geometric
        op_matrix = torch.where(active[:, None, None], op_matrix, eye)
        matrix = matrix @ op_matrix
        geometric = geometric | active

    for op in ops:
        if op == "flip":
            active = _rand(batch, generator) < p
            m = eye.clone()
            m[:, 0, 0] = -1.0  # x_in = -x_out
            compose(active, m)
        elif op == "translation":
            active = _rand(batch, generator) < p
            shift = (2 * _rand(2 * batch, generator).view(batch, 2) - 1) * max_translate
            m = eye.clone()
            m[:, 0, 2] = -2 * shift[:, 0]  # content moves by +shift (fraction of the side)
            m[:, 1, 2] = -2 * shift[:, 1]
            compose(active, m)
        elif op == "crop":
            active = _rand(batch, generator) < p
            lo, hi = crop_range
            s = lo + (hi - lo) * _rand(batch, generator)
            centre = (2 * _rand(2 * batch, generator).view(batch, 2) - 1) * (1 - s)[:, None]
            m = eye.clone()
            m[:, 0, 0], m[:, 1, 1] = s, s  # x_in = s * x_out + c: a window of side s, resized
            m[:, 0, 2], m[:, 1, 2] = centre[:, 0], centre[:, 1]
            compose(active, m)
        elif op == "rotation":
            active = _rand(batch, generator) < p
            angle = (2 * _rand(batch, generator) - 1) * math.radians(max_rotate_deg)
            cos, sin = torch.cos(angle) / rotate_zoom, torch.sin(angle) / rotate_zoom
            rot = eye.clone()
            rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = cos, -sin, sin, cos
            compose(active, scale_from_square @ rot @ scale_to_square)
    color = cutout = None
    if "color" in ops:
        active = (_rand(batch, generator) < p).float()
        u = _rand(3 * batch, generator).view(batch, 3)
        brightness = (u[:, 0] - 0.5) * active  # DiffAugment: + U(-0.5, 0.5)
        saturation = 1 + (2 * u[:, 1] - 1) * active  # x U(0, 2) around the mean over channels
        contrast = 1 + (u[:, 2] - 0.5) * active  # x U(0.5, 1.5) around the image mean
        color = torch.stack([brightness, saturation, contrast], dim=1)
    if "cutout" in ops:
        active = (_rand(batch, generator) < p).float()
        centre = 2 * _rand(2 * batch, generator).view(batch, 2) - 1
        cutout = torch.cat([active[:, None], centre], dim=1)
    return AugmentParams(theta=matrix[:, :2, :], geometric=geometric, color=color, cutout=cutout)


def apply_params(x: torch.Tensor, params: AugmentParams, kind: str = "image") -> torch.Tensor:
    """Apply a sampled transform to ``x`` (B, C, H, W) of any resolution.

    ``kind="image"``: bilinear resampling, then colour and cutout (if sampled); differentiable in x.
    ``kind="mask"``: nearest resampling of the geometric ops only, so label ids stay label ids; a long
    tensor (B, H, W) of class ids is accepted and returned as long.
    """
    if kind not in ("image", "mask"):
        raise ValueError(f"kind must be 'image' or 'mask', got {kind!r}")
    squeeze = False
    if kind == "mask" and x.dim() == 3:
        x, squeeze = x[:, None], True
    if x.dim() != 4 or x.shape[0] != params.theta.shape[0]:
        raise ValueError(f"expected a batch of {params.theta.shape[0]} maps (B, C, H, W), got shape {tuple(x.shape)}")
    out = _warp(x, params, mode="bilinear" if kind == "image" else "nearest")
    if kind == "image":
        if params.color is not None:
            out = _color(out, params.color.to(out.device, out.dtype))
        if params.cutout is not None:
            out = _cutout(out, params.cutout.to(out.device, out.dtype))
    if squeeze:
        out = out[:, 0]
    return out


def _warp(x: torch.Tensor, params: AugmentParams, mode: str) -> torch.Tensor:
    if not bool(params.geometric.any()):
        return x
    is_long = not x.is_floating_point()
    xf = x.float() if is_long else x
    theta = params.theta.to(xf.device, xf.dtype)
    grid = F.affine_grid(theta, list(xf.shape), align_corners=False)
    warped = F.grid_sample(xf, grid, mode=mode, padding_mode="reflection", align_corners=False)
    keep = params.geometric.to(xf.device)[:, None, None, None]
    out = torch.where(keep, warped, xf)  # untouched samples stay bit-identical
    return out.round().to(x.dtype) if is_long else out


def _color(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    brightness, saturation, contrast = (c[:, i, None, None, None] for i in range(3))
    x = x + brightness
    mean_c = x.mean(dim=1, keepdim=True)
    x = (x - mean_c) * saturation + mean_c
    mean_all = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean_all) * contrast + mean_all


def _cutout(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    _, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device)[None, :, None]
    xs = torch.linspace(-1, 1, w, device=x.device)[None, None, :]
    inside = ((ys - c[:, 1, None, None]).abs() < 0.5) & ((xs - c[:, 2, None, None]).abs() < 0.5)
    inside = inside & (c[:, 0, None, None] > 0)
    return x * (~inside)[:, None].to(x.dtype)


def diff_augment(x: TensorOrList, policy: str | Sequence[str] = DEFAULT_POLICY, p: float = 0.7,
                 generator: torch.Generator | None = None, masks: TensorOrList | None = None,
                 **magnitudes):
    """Augment a batch (or a list of batches sharing one transform, e.g. an image pyramid).

    Returns the augmented ``x`` with the same structure; with ``masks`` returns ``(x_aug, masks_aug)``
    where the masks got exactly the same geometric transform (nearest resampling).
    ``magnitudes`` are passed to :func:`sample_params` (``max_translate``, ``crop_range``, ...).
    """
    xs = [x] if torch.is_tensor(x) else list(x)
    if not xs:
        raise ValueError("diff_augment needs at least one tensor")
    batch, (h, w) = xs[0].shape[0], xs[0].shape[-2:]
    params = sample_params(batch, policy, p, generator, aspect=w / h, **magnitudes)
    out = [apply_params(t, params) for t in xs]
    out = out[0] if torch.is_tensor(x) else out
    if masks is None:
        return out
    ms = [masks] if torch.is_tensor(masks) else list(masks)
    m_out = [apply_params(m, params, kind="mask") for m in ms]
    return out, (m_out[0] if torch.is_tensor(masks) else m_out)
