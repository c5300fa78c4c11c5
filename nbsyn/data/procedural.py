"""Procedural semantic datasets: textured, shaded images with per-pixel labels.

Every sample ``i`` of a dataset with seed ``s`` is drawn from its own random generator seeded with
``(s, i)``, so a sample does not depend on how many others were asked for, and any resolution can
be rendered. Scenes are drawn in continuous coordinates (x, y in [0, 1]) and rasterised at the end.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

SCENE_CLASSES = ("sky", "cloud", "mountain", "grass", "water", "tree", "rock", "road")
SCENE_COLOURS = ((70, 130, 220), (235, 235, 245), (120, 100, 90), (70, 160, 60),
                 (40, 90, 170), (20, 90, 30), (140, 140, 140), (90, 85, 80))

FACE_CLASSES = ("background", "skin", "hair", "eyes", "brows", "nose", "mouth", "neck", "clothes")
FACE_COLOURS = ((30, 30, 30), (230, 180, 150), (120, 70, 30), (40, 120, 220), (200, 40, 40),
                (250, 140, 60), (220, 40, 140), (180, 200, 90), (90, 60, 160))

HAIR_COLOURS = ((25, 20, 20), (90, 55, 30), (150, 100, 50), (220, 190, 120), (170, 60, 30), (180, 180, 180))


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def fractal_noise(rng: np.random.Generator, size: int, octaves: int = 4, base: int = 4) -> torch.Tensor:
    """Value noise summed over octaves (coarse to fine), normalised to zero mean, unit std. (H, W)."""
    total = torch.zeros(1, 1, size, size)
    for o in range(octaves):
        cells = base * 2**o
        grid = torch.from_numpy(rng.standard_normal((1, 1, cells, cells))).float()
        total += F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=False) * 0.55**o
    total = total[0, 0]
    return (total - total.mean()) / (total.std() + 1e-8)


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    return x, y


def _colour(rgb, jitter: float, rng: np.random.Generator) -> torch.Tensor:
    c = np.clip(np.asarray(rgb, dtype=np.float64) / 255.0 + rng.normal(0, jitter, 3), 0.02, 0.98)
    return torch.tensor(c, dtype=torch.float32).view(3, 1, 1)


def _paint(image, labels, mask, cls, colour, texture, shade):
    """Fill ``mask`` with class ``cls``: base colour times (1 + texture) times shading."""
    pixels = colour * (1.0 + texture) * shade
    image[:] = torch.where(mask, pixels, image)
    labels[mask] = cls


def render_scene(seed: int, index: int, size: int, colours=SCENE_COLOURS) -> tuple[torch.Tensor, torch.Tensor]:
    """An outdoor scene: sky and clouds, a mountain ridge, grass, a lake, a road, trees and rocks.

    ``colours`` gives the base colour of each of the 8 classes (the default is the ``scenes``
    palette); the random draws do not depend on it, so a recoloured scene has the same layout.
    """
    rng = _rng(seed, index)
    x, y = _grid(size)
    image = torch.zeros(3, size, size)
    labels = torch.zeros(size, size, dtype=torch.long)
    horizon = rng.uniform(0.45, 0.65)
    light = rng.uniform(0.85, 1.1)

    # sky: brighter towards the horizon; clouds: thresholded fractal noise above the horizon
    sky_shade = light * (0.75 + 0.35 * (y / horizon).clamp(max=1.0))
    _paint(image, labels, torch.ones_like(y, dtype=torch.bool), 0, _colour(colours[0], 0.06, rng),
           0.03 * fractal_noise(rng, size), sky_shade)
    cloud_field = fractal_noise(rng, size, octaves=4, base=3) - 2.5 * (y / horizon - 0.35).clamp(min=0)
    clouds = (cloud_field > rng.uniform(0.5, 1.1)) & (y < horizon)
    _paint(image, labels, clouds, 1, _colour(colours[1], 0.03, rng), 0.05 * fractal_noise(rng, size),
           light * (1.0 - 0.25 * (cloud_field - 1).clamp(0, 1)))

    # mountain ridge: a sum of sines with random phases, shaded by height
    freqs = rng.uniform(1.5, 6.0, 4)
    phases = rng.uniform(0, 2 * math.pi, 4)
    amps = rng.uniform(0.02, 0.08, 4)
    ridge = horizon - rng.uniform(0.08, 0.22) + sum(
        float(a) * torch.sin(2 * math.pi * float(f) * x[0] + float(p)) for a, f, p in zip(amps, freqs, phases)
    )
    mountain = (y >= ridge.view(1, -1)) & (y < horizon)
    height = ((horizon - y) / (horizon - ridge.view(1, -1) + 1e-6)).clamp(0, 1)
    snow = 0.35 * (height > 0.8).float()
    _paint(image, labels, mountain, 2, _colour(colours[2], 0.05, rng), 0.12 * fractal_noise(rng, size, base=6),
           light * (0.7 + 0.4 * height + snow))

    # ground: grass everywhere below the horizon, darker in the distance
    ground = y >= horizon
    depth = ((y - horizon) / (1 - horizon)).clamp(0, 1)
    _paint(image, labels, ground, 3, _colour(colours[3], 0.06, rng), 0.18 * fractal_noise(rng, size, base=8),
           light * (0.65 + 0.45 * depth))

    # lake: an ellipse on the ground, reflecting the sky colour
    if rng.random() < 0.7:
        cx, cy = rng.uniform(0.2, 0.8), horizon + rng.uniform(0.08, 0.2) * (1 - horizon) / 0.4
        rx, ry = rng.uniform(0.15, 0.3), rng.uniform(0.04, 0.09)
        lake = (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1) & ground
        ripples = 0.06 * torch.sin(2 * math.pi * 40 * y + 3 * fractal_noise(rng, size, base=8))
        _paint(image, labels, lake, 4, _colour(colours[4], 0.05, rng), ripples, light * (0.8 + 0.3 * depth))

    # road: a trapezoid from the bottom edge to a vanishing point on the horizon
    if rng.random() < 0.6:
        vx, bottom = rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.8)
        t = ((y - horizon) / (1 - horizon)).clamp(0, 1)
        centre = vx + (bottom - vx) * t
        half = 0.01 + rng.uniform(0.12, 0.22) * t
        road = ground & ((x - centre).abs() < half)
        stripe = road & ((x - centre).abs() < 0.08 * half) & (torch.sin(2 * math.pi * 12 * t**0.5) > 0)
        _paint(image, labels, road, 7, _colour(colours[7], 0.03, rng), 0.08 * fractal_noise(rng, size, base=16),
               light * (0.7 + 0.3 * depth) + 0.8 * stripe.float())

    # rocks: small shaded ellipses on the ground
    for _ in range(rng.integers(0, 4)):
        cx, cy = rng.uniform(0.05, 0.95), rng.uniform(horizon + 0.05, 0.97)
        r = rng.uniform(0.03, 0.07) * (0.5 + (cy - horizon) / (1 - horizon))
        d = ((x - cx) / r) ** 2 + ((y - cy) / (0.7 * r)) ** 2
        rock = d < 1
        _paint(image, labels, rock, 6, _colour(colours[6], 0.05, rng), 0.1 * fractal_noise(rng, size, base=12),
               light * (1.05 - 0.45 * (y - cy + 0.7 * r).clamp(min=0) / (1.4 * r)))

    # trees: round crowns standing on the horizon line, shaded from the upper left
    for _ in range(rng.integers(1, 6)):
        cx = rng.uniform(0.0, 1.0)
        r = rng.uniform(0.05, 0.1)
        cy = horizon - r * rng.uniform(0.3, 0.9) + rng.uniform(0, 0.15)
        d = ((x - cx) ** 2 + (y - cy) ** 2).sqrt() / r
        crown = d < 1 + 0.15 * fractal_noise(rng, size, base=12)
        shade = 1.1 - 0.35 * ((x - cx + y - cy) / r + 1).clamp(0, 2) / 2
        _paint(image, labels, crown, 5, _colour(colours[5], 0.04, rng), 0.2 * fractal_noise(rng, size, base=16),
               light * shade)
    return image.clamp(0, 1) * 2 - 1, labels


def render_face(seed: int, index: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A frontal portrait: background, hair, neck, clothes, face with eyes, brows, nose and mouth."""
    rng = _rng(seed, index)
    x, y = _grid(size)
    image = torch.zeros(3, size, size)
    labels = torch.zeros(size, size, dtype=torch.long)
    fx, fy = 0.5 + rng.uniform(-0.06, 0.06), 0.45 + rng.uniform(-0.04, 0.04)
    rx, ry = rng.uniform(0.2, 0.26), rng.uniform(0.27, 0.33)
    tilt = rng.uniform(-0.015, 0.015)
    light = rng.uniform(0.85, 1.1)
    tone = rng.uniform(0, 1)  # from light to dark skin, along a natural range
    skin = _colour(tuple((1 - tone) * np.array([240, 200, 170]) + tone * np.array([105, 65, 45])), 0.02, rng)
    skin_tex = 0.04 * fractal_noise(rng, size, base=8)

    # background: a vertical gradient with soft noise
    _paint(image, labels, torch.ones_like(y, dtype=torch.bool), 0,
           _colour((rng.uniform(40, 220), rng.uniform(40, 220), rng.uniform(40, 220)), 0.0, rng),
           0.05 * fractal_noise(rng, size, base=3), light * (1.1 - 0.3 * y))
    # hair behind the head: a bigger ellipse shifted up
    hair_col = _colour(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], 0.04, rng)
    hair_tex = 0.25 * torch.sin(2 * math.pi * 30 * (x + 0.3 * fractal_noise(rng, size, base=4) / 10)) * 0.5
    hx, hy = rx * rng.uniform(1.1, 1.3), ry * rng.uniform(0.95, 1.25)
    hair_back = ((x - fx) / hx) ** 2 + ((y - fy + 0.05) / hy) ** 2 < 1
    _paint(image, labels, hair_back, 2, hair_col, hair_tex, light * (1.1 - 0.4 * y))
    # neck and clothes
    neck = ((x - fx).abs() < rx * 0.45) & (y > fy) & (y < fy + ry + 0.15)
    _paint(image, labels, neck, 7, skin, skin_tex, light * 0.8 * torch.ones_like(y))
    shoulders = ((x - fx) / 0.45) ** 2 + ((y - 1.08) / 0.3) ** 2 < 1
    _paint(image, labels, shoulders, 8, _colour((rng.uniform(0, 255), rng.uniform(0, 255), rng.uniform(0, 255)), 0, rng),
           0.08 * fractal_noise(rng, size, base=6), light * (1.0 - 0.3 * (x - fx).abs()))
    # face: an ellipse, shaded as a sphere lit from the upper left
    u, v = (x - fx + tilt * (y - fy) * 5) / rx, (y - fy) / ry
    face = u**2 + v**2 < 1
    sphere = (1 - (u**2 + v**2).clamp(max=1)).sqrt()
    _paint(image, labels, face, 1, skin, skin_tex, light * (0.55 + 0.35 * sphere + 0.15 * (-u - v).clamp(-1, 1)))
    # fringe: hair over the top of the face
    fringe = face & (v < -0.55 + 0.12 * torch.sin(2 * math.pi * rng.uniform(1, 3) * u + rng.uniform(0, 6)))
    _paint(image, labels, fringe, 2, hair_col, hair_tex, light * 0.9 * torch.ones_like(y))
    # eyes, brows, nose and mouth in face coordinates (u, v)
    eye_dx, eye_v = rng.uniform(0.33, 0.45), rng.uniform(-0.2, -0.08)
    eye_r = rng.uniform(0.1, 0.15)
    iris = _colour((rng.uniform(30, 120), rng.uniform(40, 140), rng.uniform(40, 200)), 0, rng)
    for side in (-1, 1):
        eu, ev = (u - side * eye_dx) / eye_r, (v - eye_v) / (eye_r * 0.55)
        eye = (eu**2 + ev**2 < 1) & face
        pupil = (eu**2 + (ev * 0.55) ** 2).sqrt() < 0.45
        white = torch.tensor([0.95, 0.95, 0.95]).view(3, 1, 1)
        _paint(image, labels, eye, 3, white, torch.zeros_like(y), torch.ones_like(y))
        _paint(image, labels, eye & pupil, 3, iris, torch.zeros_like(y), light * torch.ones_like(y))
        bu, bv = (u - side * eye_dx) / (eye_r * 1.3), v - eye_v + eye_r * 1.1 + 0.03 * (u - side * eye_dx) ** 2 * 20
        brow = (bu.abs() < 1) & (bv.abs() < 0.035 * rng.uniform(0.8, 1.5)) & face
        _paint(image, labels, brow, 4, hair_col * 0.6, torch.zeros_like(y), torch.ones_like(y))
    nose_len = rng.uniform(0.22, 0.32)
    nose = (v > eye_v + 0.05) & (v < eye_v + 0.05 + nose_len) & (u.abs() < 0.09 + 0.4 * (v - eye_v - 0.05)) & face
    _paint(image, labels, nose, 5, skin, skin_tex, light * (0.7 + 0.3 * (-u).clamp(-0.5, 0.5) + 0.3))
    mouth_v, mouth_w = eye_v + 0.1 + nose_len + rng.uniform(0.1, 0.18), rng.uniform(0.25, 0.4)
    smile = rng.uniform(-0.5, 1.0)
    mu = u / mouth_w
    mouth = (mu.abs() < 1) & ((v - mouth_v + 0.12 * smile * (1 - mu**2)).abs() < rng.uniform(0.04, 0.09) * (1 - mu**2) + 0.01) & face
    lips = _colour((rng.uniform(150, 220), rng.uniform(50, 110), rng.uniform(60, 120)), 0, rng)
    _paint(image, labels, mouth, 6, lips, torch.zeros_like(y), light * torch.ones_like(y))
    return image.clamp(0, 1) * 2 - 1, labels


# "autumn valley" (notebook 06, CAT): the scenes renderer with an autumn palette (sky, grass and
# trees recoloured) and its own taxonomy of 7 classes, renamed, merged (sky + cloud) and re-ordered.
# The true class correspondence is known by construction: AUTUMN_FROM_SCENES[source id] = target id.
AUTUMN_CLASSES = ("lake", "forest", "sky", "hill", "meadow", "boulder", "path")
AUTUMN_FROM_SCENES = (2, 2, 3, 4, 0, 1, 5, 6)  # sky, cloud -> sky; mountain -> hill; grass -> meadow; ...
AUTUMN_SCENE_COLOURS = ((150, 170, 210), (235, 235, 245), (120, 100, 90), (175, 150, 70),
                        (40, 90, 170), (200, 90, 30), (140, 140, 140), (90, 85, 80))  # per source class
AUTUMN_COLOURS = tuple(AUTUMN_SCENE_COLOURS[AUTUMN_FROM_SCENES.index(t)] for t in range(len(AUTUMN_CLASSES)))


def render_autumn_with_source(seed: int, index: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An autumn scene, its target labels (7 classes) and the scenes labels it was drawn with (8 classes)."""
    image, source_labels = render_scene(seed, index, size, colours=AUTUMN_SCENE_COLOURS)
    return image, torch.tensor(AUTUMN_FROM_SCENES)[source_labels], source_labels


def render_autumn(seed: int, index: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An autumn scene with its labels in the autumn taxonomy (``AUTUMN_CLASSES``)."""
    image, labels, _ = render_autumn_with_source(seed, index, size)
    return image, labels


RENDERERS = {"scenes": (render_scene, SCENE_CLASSES, SCENE_COLOURS),
             "faces": (render_face, FACE_CLASSES, FACE_COLOURS),
             "autumn": (render_autumn, AUTUMN_CLASSES, AUTUMN_COLOURS)}


def _register_streets():
    from nbsyn.data.streets import STREET_CLASSES, STREET_PALETTE, render_street  # imports this module
    RENDERERS["streets"] = (render_street, STREET_CLASSES, STREET_PALETTE)


_register_streets()
