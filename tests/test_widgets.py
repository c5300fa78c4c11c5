import math

import pytest
import torch

from nbsyn.widgets import (InterpolationPanel, MaskPainter, ResamplePanel, canvas_to_label, lerp, paint_disc,
                           paint_stroke, png_bytes, slerp)


def test_paint_disc_paints_only_inside_the_radius():
    labels = torch.zeros(9, 9, dtype=torch.long)
    out = paint_disc(labels, 4, 4, 1.0, 2)
    assert (out == 2).sum() == 5  # centre and its 4 neighbours
    assert labels.sum() == 0  # the input is not modified


def test_paint_stroke_leaves_no_gaps():
    labels = torch.zeros(32, 32, dtype=torch.long)
    out = paint_stroke(labels, [(16, 0), (16, 31)], radius=1.0, cls=1)
    assert (out[16] == 1).all()


def test_canvas_to_label_scales_coordinates():
    assert canvas_to_label(px=100, py=50, canvas_size=200, label_size=20) == (5.0, 10.0)


def test_lerp_and_slerp_endpoints_and_norm():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid, torch.tensor([[math.sqrt(0.5), math.sqrt(0.5)]]), atol=1e-6)
    assert torch.allclose(lerp(a, b, 0.5), torch.tensor([[0.5, 0.5]]))


def fake_generator(n=2):
    return lambda z: torch.tanh(z.view(-1, 1, 1, 1).expand(-1, 3, 8, 8))[:n]


def test_panels_render_and_build_without_a_frontend():
    panel = ResamplePanel(lambda seed: torch.full((4, 3, 8, 8), seed / 10_000), nrow=2)
    assert panel.render().shape == (3, 2 * 10 + 2, 2 * 10 + 2)
    panel.widget()
    interp = InterpolationPanel(fake_generator(), torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0]))
    assert interp.strip(steps=3).shape == (6, 3, 8, 8)
    assert torch.allclose(interp.render(0.5), interp.render(0.5)) and interp.render(0.0).mean() < interp.render(1.0).mean()
    interp.widget()


def test_mask_painter_paints_in_label_coordinates_and_resets():
    labels = torch.zeros(16, 16, dtype=torch.long)
    seen = []
    painter = MaskPainter(labels, ["a", "b"], [(0, 0, 0), (255, 0, 0)],
                          lambda lab: (seen.append(lab.clone()), torch.zeros(3, 16, 16))[1], canvas_size=64)
    painter.cls, painter.radius = 1, 1.0
    painter.paint([(32, 32)])  # canvas centre -> label (8, 8)
    assert painter.labels[8, 8] == 1 and painter.labels[0, 0] == 0
    assert painter.render().shape == (3, 20, 38) and seen[-1][8, 8] == 1
    painter.reset()
    assert painter.labels.sum() == 0
    painter.widget()


def test_png_bytes_is_a_png():
    assert png_bytes(torch.zeros(3, 4, 4), upscale=2)[:4] == b"\x89PNG"
