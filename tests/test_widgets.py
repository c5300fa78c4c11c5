import math

import pytest
import torch

from nbsyn.viz import colorize
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
    # the fake generator draws flat images of value tanh(z): z(0.5) = 0 -> 0, z(1) = (1, 1) -> tanh(1)
    inner = lambda image: image[:, 2:10, 2:10]  # noqa: E731  (the first tile, inside the padding)
    assert torch.equal(inner(interp.render(0.5)), torch.zeros(3, 8, 8))
    assert torch.allclose(inner(interp.render(0.0)), torch.full((3, 8, 8), math.tanh(-1.0)))
    interp.t = 1.0  # render() shows the slider's position
    assert torch.allclose(inner(interp.render()), torch.full((3, 8, 8), math.tanh(1.0)))
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


@pytest.mark.parametrize("height,width", [(16, 32), (32, 64), (16, 16)])
def test_mask_painter_renders_a_generated_image_of_any_width(height, width):
    # e.g. OSMIS-style generators that return the image and its mask side by side
    labels = torch.zeros(16, 16, dtype=torch.long)
    labels[:, 8:] = 1
    palette = [(0, 0, 0), (255, 255, 255)]
    image = torch.linspace(-1, 1, width).expand(3, height, width)
    painter = MaskPainter(labels, ["a", "b"], palette, lambda lab: image, canvas_size=64)
    out = painter.render()
    assert out.shape == (3, height + 4, 2 + height + 2 + width + 2)
    assert torch.equal(out[:, 2:2 + height, 2 + height + 2:2 + height + 2 + width], image)
    label_part = out[:, 2:2 + height, 2:2 + height]  # the label map, scaled to the image's height
    scale = height // 16
    assert torch.equal(label_part[:, ::scale, ::scale], colorize(labels, palette))
    assert (out[:, :2] == 1).all() and (out[:, :, 2 + height:4 + height] == 1).all()  # white padding
