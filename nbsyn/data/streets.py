"""``streets``: a harder procedural dataset for semantic image synthesis (notebook 01, issue 17).

The ``scenes`` data give every class its own colour, so a discriminator that reads the label map can
check "is this pixel the colour of its class?" and be done. The thesis credits OASIS with gains on
data unlike that [L1066-L1071, Table 4.2]: many classes, a long-tailed class frequency, and small
objects. ``streets`` is built to have those three properties, fixed before any model was trained
on it:

* **23 classes**, in the style of Cityscapes: sky, cloud, building, window, door, roof, wall, fence,
  sidewalk, road, lane marking, grass, hedge, tree, pole, traffic sign, traffic light, person, car,
  truck, bus, bench, bollard.
* **A long tail**: sky, buildings and road cover most pixels; people, signs, traffic lights,
  benches and bollards are small and appear in some images only.
* **Shared colours**: classes in one group below are painted from the *same* base colours and differ
  only in texture, shape or context, so the label -> colour shortcut fails:
  ``SAME_COLOUR_GROUPS`` (sky/window, building/wall, sidewalk/road, grass/hedge/tree,
  fence/pole/traffic light, car/truck/bus, door/bench).

A street is seen from the front: a row of facades on a ground line, a sidewalk band, the road.
Everything is drawn in continuous coordinates (x, y in [0, 1]) and rasterised at the end, so any
resolution can be rendered; thin objects (poles) are about one pixel wide at 64 px and may vanish
at 32 px, as thin objects do in low-resolution real data.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nbsyn.data.procedural import _colour, _grid, _paint, _rng, fractal_noise

STREET_CLASSES = ("sky", "cloud", "building", "window", "door", "roof", "wall", "fence", "sidewalk", "road",
                  "lane marking", "grass", "hedge", "tree", "pole", "traffic sign", "traffic light", "person",
                  "car", "truck", "bus", "bench", "bollard")
# label-map display colours (Cityscapes-like; these are NOT the rendered colours)
STREET_PALETTE = ((70, 130, 180), (220, 220, 240), (70, 70, 70), (0, 200, 255), (150, 60, 0), (160, 30, 60),
                  (102, 102, 156), (190, 153, 153), (244, 35, 232), (128, 64, 128), (250, 250, 140),
                  (152, 251, 152), (0, 120, 60), (107, 142, 35), (153, 153, 153), (220, 220, 0), (250, 170, 30),
                  (220, 20, 60), (0, 0, 142), (0, 0, 70), (0, 60, 100), (255, 128, 0), (255, 0, 255))
CLASS = {name: i for i, name in enumerate(STREET_CLASSES)}

# rendered base colours, shared within a group (the point of the dataset)
SKY = (115, 165, 225)              # sky and windows (windows reflect the sky)
FACADES = ((200, 180, 150), (180, 120, 90), (215, 205, 185), (160, 160, 150), (205, 160, 120))  # building, wall
PAVEMENT = (130, 130, 135)         # sidewalk and road
GREEN = (75, 135, 55)              # grass, hedge, tree
DARK = (55, 55, 60)                # fence, pole, traffic light
VEHICLES = ((180, 30, 30), (30, 60, 150), (230, 230, 230), (40, 40, 40), (200, 170, 40), (90, 120, 90))
BROWN = (120, 75, 40)              # door and bench
ROOFS = ((150, 60, 45), (90, 70, 70), (120, 90, 60))
SIGNS = ((200, 30, 30), (30, 80, 190), (230, 190, 20))
SAME_COLOUR_GROUPS = (("sky", "window"), ("building", "wall"), ("sidewalk", "road"), ("grass", "hedge", "tree"),
                      ("fence", "pole", "traffic light"), ("car", "truck", "bus"), ("door", "bench"))


class _Canvas:
    """An image, its labels and the pixel grid; ``paint`` fills a mask with one class."""

    def __init__(self, rng: np.random.Generator, size: int):
        self.rng, self.size = rng, size
        self.x, self.y = _grid(size)
        self.image = torch.zeros(3, size, size)
        self.labels = torch.zeros(size, size, dtype=torch.long)
        self.light = rng.uniform(0.85, 1.1)

    def noise(self, base: int, amount: float) -> torch.Tensor:
        return amount * fractal_noise(self.rng, self.size, base=base)

    def paint(self, mask, name, rgb, texture=None, shade=None, jitter=0.04):
        texture = torch.zeros_like(self.y) if texture is None else texture
        shade = self.light * torch.ones_like(self.y) if shade is None else self.light * shade
        _paint(self.image, self.labels, mask, CLASS[name], _colour(rgb, jitter, self.rng), texture, shade)

    def box(self, x0, x1, y0, y1):
        return (self.x >= x0) & (self.x < x1) & (self.y >= y0) & (self.y < y1)

    def ellipse(self, cx, cy, rx, ry):
        return ((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2 < 1

    def pick(self, choices):
        return choices[self.rng.integers(len(choices))]


def _sky(c: _Canvas, ground: float):
    c.paint(torch.ones_like(c.y, dtype=torch.bool), "sky", SKY, c.noise(3, 0.03), 0.8 + 0.3 * (c.y / ground).clamp(max=1))
    field = c.noise(3, 1.0) - 3.0 * (c.y / 0.35 - 0.5).clamp(min=0)
    c.paint(field > c.rng.uniform(0.9, 1.4), "cloud", (240, 240, 245), c.noise(6, 0.04), 1.0 - 0.1 * c.y, jitter=0.02)


def _building(c: _Canvas, x0: float, x1: float, ground: float):
    top = c.rng.uniform(0.06, 0.36)
    c.paint(c.box(x0, x1, top, ground), "building", c.pick(FACADES), c.noise(8, 0.06), c.rng.uniform(0.9, 1.05))
    if c.rng.random() < 0.5:  # pitched roof: a triangle on the facade's top edge
        peak = c.rng.uniform(0.04, 0.08)
        roof = (c.y < top) & (c.y >= top - peak * (1 - (2 * (c.x - x0) / (x1 - x0) - 1).abs())) & (c.x >= x0) & (c.x < x1)
    else:  # flat roof: a cornice band
        roof = c.box(x0, x1, top, top + 0.02)
    c.paint(roof, "roof", c.pick(ROOFS), c.noise(12, 0.08))
    # windows: a grid of rectangles that reflect the sky (sky-coloured, with a diagonal sheen)
    step_x, step_y = c.rng.uniform(0.05, 0.08), c.rng.uniform(0.07, 0.1)
    w, h = step_x * c.rng.uniform(0.45, 0.6), step_y * c.rng.uniform(0.45, 0.6)
    fx, fy = ((c.x - x0) % step_x), ((c.y - top - 0.03) % step_y)
    windows = (fx > (step_x - w) / 2) & (fx < (step_x + w) / 2) & (fy < h) & c.box(x0 + 0.01, x1 - 0.01, top + 0.03, ground - 0.09)
    sheen = 0.25 * torch.sin(2 * math.pi * 8 * (c.x + c.y))
    c.paint(windows, "window", SKY, sheen, 0.85 * torch.ones_like(c.y))
    if c.rng.random() < 0.6:
        dx, dw = c.rng.uniform(x0 + 0.02, max(x0 + 0.03, x1 - 0.07)), c.rng.uniform(0.035, 0.05)
        c.paint(c.box(dx, dx + dw, ground - c.rng.uniform(0.07, 0.1), ground), "door", BROWN, c.noise(16, 0.05))


def _ground(c: _Canvas, ground: float, kerb: float):
    """Sidewalk (tiles) and road (asphalt, dashed lane marking): the same grey, other textures."""
    tiles = (((c.x * 28) % 1 < 0.08) | (((c.y - ground) * 70) % 1 < 0.12)).float()
    c.paint(c.box(0, 1, ground, kerb), "sidewalk", PAVEMENT, c.noise(16, 0.03) - 0.3 * tiles)
    c.paint(c.box(0, 1, kerb, 1.01), "road", PAVEMENT, c.noise(24, 0.12))
    lane_y, thick = kerb + (1 - kerb) * c.rng.uniform(0.45, 0.6), c.rng.uniform(0.015, 0.022)
    dashes = ((c.x + c.rng.uniform(0, 1)) % 0.16) < 0.08
    c.paint(c.box(0, 1, lane_y, lane_y + thick) & dashes, "lane marking", (235, 235, 225), jitter=0.02)


def _street_furniture(c: _Canvas, ground: float, kerb: float):
    """Grass, walls, hedges, fences along the facades; trees, poles, signs, lights, benches, bollards."""
    back = ground + 0.3 * (kerb - ground)
    if c.rng.random() < 0.5:  # grass: fine vertical blades
        a = c.rng.uniform(0, 0.8)
        c.paint(c.box(a, a + c.rng.uniform(0.12, 0.35), ground, back), "grass", GREEN,
                0.25 * torch.sin(2 * math.pi * 90 * c.x + 3 * c.noise(8, 1.0)))
    if c.rng.random() < 0.4:  # a low wall: facade colours with a brick pattern
        a, h = c.rng.uniform(0, 0.8), c.rng.uniform(0.03, 0.05)
        rows = ((c.y - ground) / 0.018).floor()
        joints = (((c.y - ground) / 0.018) % 1 < 0.2) | (((c.x / 0.04) + 0.5 * (rows % 2)) % 1 < 0.12)
        c.paint(c.box(a, a + c.rng.uniform(0.1, 0.3), ground - h, back), "wall", c.pick(FACADES), -0.3 * joints.float())
    if c.rng.random() < 0.5:  # a hedge: a green box with a fine leafy texture
        a, h = c.rng.uniform(0, 0.8), c.rng.uniform(0.04, 0.07)
        c.paint(c.box(a, a + c.rng.uniform(0.1, 0.3), ground - h, back), "hedge", GREEN, c.noise(32, 0.2),
                0.8 + 0.3 * ((back - c.y) / (h + back - ground)).clamp(0, 1))
    if c.rng.random() < 0.35:  # a fence: dark bars and two rails
        a, h = c.rng.uniform(0, 0.75), c.rng.uniform(0.05, 0.08)
        top = ground - h
        bars = ((c.x * 60) % 1 < 0.35) | ((c.y - top).abs() < 0.008) | ((c.y - (top + h / 2)).abs() < 0.008)
        c.paint(c.box(a, a + c.rng.uniform(0.12, 0.3), top, back) & bars, "fence", DARK)
    for _ in range(c.rng.integers(0, 3)):  # trees: a trunk and a round, leafy crown
        cx, r = c.rng.uniform(0.05, 0.95), c.rng.uniform(0.06, 0.1)
        cy = c.rng.uniform(0.25, 0.4)
        c.paint(c.box(cx - 0.01, cx + 0.01, cy, kerb - 0.01), "tree", BROWN, c.noise(16, 0.1))
        crown = ((c.x - cx) ** 2 + (c.y - cy) ** 2).sqrt() / r < 1 + c.noise(10, 0.15)
        c.paint(crown, "tree", GREEN, c.noise(20, 0.3), 1.1 - 0.3 * ((c.x - cx + c.y - cy) / r + 1).clamp(0, 2) / 2)
    foot = kerb - 0.012
    for _ in range(c.rng.integers(1, 3)):  # street lamps: a thin pole with an arm
        px, top = c.rng.uniform(0.03, 0.97), c.rng.uniform(0.18, 0.32)
        c.paint(c.box(px - 0.009, px + 0.009, top, foot) | c.box(px - 0.04, px + 0.009, top, top + 0.012), "pole", DARK)
    if c.rng.random() < 0.5:  # a traffic sign on its own pole: a disc, a triangle or a square
        px, top = c.rng.uniform(0.05, 0.95), c.rng.uniform(0.38, 0.46)
        c.paint(c.box(px - 0.008, px + 0.008, top, foot), "pole", DARK)
        r = c.rng.uniform(0.025, 0.035)
        shape = c.rng.integers(3)
        dx, dy = (c.x - px).abs(), c.y - (top - r)
        sign = [dx ** 2 + dy ** 2 < r * r, (dy > -r) & (dy < r) & (dx < (dy + r) / 2), (dx < r) & (dy.abs() < r)][shape]
        c.paint(sign, "traffic sign", c.pick(SIGNS), 0.3 * ((dx ** 2 + dy ** 2).sqrt() < 0.5 * r).float(), jitter=0.02)
    if c.rng.random() < 0.35:  # a traffic light: a dark box with one lit lamp
        px, top = c.rng.uniform(0.05, 0.95), c.rng.uniform(0.3, 0.4)
        c.paint(c.box(px - 0.008, px + 0.008, top, foot), "pole", DARK)
        c.paint(c.box(px - 0.015, px + 0.015, top - 0.06, top), "traffic light", DARK)
        lamp = c.rng.integers(3)
        c.paint(c.ellipse(px, top - 0.05 + 0.02 * lamp, 0.008, 0.008), "traffic light",
                ((220, 40, 30), (240, 180, 20), (40, 200, 60))[lamp], jitter=0.02)
    if c.rng.random() < 0.25:  # a bench: seat, back and legs (the colour of doors)
        a = c.rng.uniform(0.05, 0.85)
        seat_y = back + 0.2 * (kerb - back)
        bench = c.box(a, a + 0.07, seat_y - 0.03, seat_y - 0.018) | c.box(a, a + 0.07, seat_y, seat_y + 0.01) | (
            c.box(a + 0.005, a + 0.065, seat_y, seat_y + 0.03) & (((c.x - a) % 0.06) < 0.01))
        c.paint(bench, "bench", BROWN, c.noise(16, 0.05))
    for _ in range(c.rng.integers(0, 4)):  # bollards: tiny red posts at the kerb
        bx = c.rng.uniform(0.02, 0.98)
        c.paint(c.box(bx - 0.008, bx + 0.008, kerb - 0.04, kerb - 0.003), "bollard", (190, 40, 40), jitter=0.03)


def _people(c: _Canvas, ground: float, kerb: float):
    for _ in range(c.rng.integers(0, 4)):
        foot, px = c.rng.uniform(ground + 0.02, kerb - 0.005), c.rng.uniform(0.03, 0.97)
        h = c.rng.uniform(0.1, 0.15)
        legs = c.box(px - 0.012, px + 0.012, foot - 0.45 * h, foot) & (((c.x - px).abs() > 0.003) | (c.y < foot - 0.3 * h))
        c.paint(legs, "person", c.pick(((40, 40, 60), (60, 50, 40), (90, 90, 100))), jitter=0.05)
        c.paint(c.ellipse(px, foot - 0.62 * h, 0.02, 0.2 * h), "person",
                (c.rng.uniform(20, 240), c.rng.uniform(20, 240), c.rng.uniform(20, 240)), c.noise(16, 0.05), jitter=0)
        tone = c.rng.uniform(0, 1)
        c.paint(c.ellipse(px, foot - 0.9 * h, 0.011, 0.1 * h), "person",
                tuple((1 - tone) * np.array([240, 200, 170]) + tone * np.array([105, 65, 45])), jitter=0.02)


def _vehicle(c: _Canvas, kind: str, x0: float, bottom: float):
    """A car, truck or bus: a body from the shared vehicle palette, windows and wheels (one class)."""
    length, height = {"car": (c.rng.uniform(0.16, 0.22), 0.08), "truck": (0.3, 0.16), "bus": (0.45, 0.15)}[kind]
    paint = c.pick(VEHICLES)
    wheel_r = 0.018 if kind == "car" else 0.024
    body_top = bottom - wheel_r - (height * 0.55 if kind == "car" else height)
    body = c.box(x0, x0 + length, body_top, bottom - wheel_r * 0.6)
    if kind == "car":  # a cabin on top of the body
        cab = (c.y >= bottom - wheel_r - height) & (c.y < body_top) & ((c.x - (x0 + length / 2)).abs() < 0.3 * length)
        body = body | cab
        glass = cab & ((c.x - (x0 + length / 2)).abs() < 0.26 * length) & (c.y > bottom - wheel_r - height * 0.95)
    elif kind == "truck":  # a cab in front of a cargo box
        body = body | c.box(x0 + length, x0 + length + 0.07, bottom - wheel_r - 0.1, bottom - wheel_r * 0.6)
        glass = c.box(x0 + length + 0.03, x0 + length + 0.065, bottom - wheel_r - 0.09, bottom - wheel_r - 0.05)
    else:  # a row of bus windows
        glass = c.box(x0 + 0.02, x0 + length - 0.02, body_top + 0.02, body_top + 0.06) & (((c.x - x0) % 0.05) < 0.04)
    c.paint(body, kind, paint, c.noise(16, 0.04), 0.9 + 0.2 * ((bottom - c.y) / 0.2).clamp(0, 1))
    c.paint(glass, kind, (60, 70, 90), 0.2 * torch.sin(2 * math.pi * 10 * (c.x + c.y)), jitter=0.02)
    wheels = torch.zeros_like(body)
    for wx in (x0 + 0.2 * length, x0 + 0.8 * length + (0.05 if kind == "truck" else 0)):
        wheels |= c.ellipse(wx, bottom - wheel_r, wheel_r, wheel_r)
    c.paint(wheels, kind, (25, 25, 25), jitter=0.01)


def render_street(seed: int, index: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A street: sky, a row of facades, sidewalk with furniture and people, a road with vehicles."""
    c = _Canvas(_rng(seed, index), size)
    ground = c.rng.uniform(0.52, 0.6)
    kerb = ground + c.rng.uniform(0.09, 0.13)
    _sky(c, ground)
    x = -c.rng.uniform(0, 0.15)
    while x < 1:
        width = c.rng.uniform(0.14, 0.3)
        _building(c, x, x + width, ground)
        x += width
    _ground(c, ground, kerb)
    _street_furniture(c, ground, kerb)
    _people(c, ground, kerb)
    kinds = ["car"] * c.rng.integers(0, 4)
    kinds += ["truck"] * int(c.rng.random() < 0.15) + ["bus"] * int(c.rng.random() < 0.1)
    bottoms = sorted(c.rng.uniform(kerb + 0.12, 0.99, len(kinds)))  # far to near: nearer ones in front
    for kind, bottom in zip(c.rng.permutation(kinds), bottoms):
        _vehicle(c, str(kind), c.rng.uniform(-0.1, 0.85), float(bottom))
    return c.image.clamp(0, 1) * 2 - 1, c.labels
