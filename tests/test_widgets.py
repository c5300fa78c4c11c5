import io
import math

import pytest
import torch

from nbsyn.viz import colorize
from nbsyn.widgets import (InterpolationPanel, MaskPainter, ResamplePanel, canvas_to_label, display_scale, frame,
                           image_widget, lerp, paint_disc, paint_stroke, png_bytes, slerp, walk)


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
    # 10 canvas px per label px: canvas x in [100, 110) is label column 10, whose centre is 10.0
    assert canvas_to_label(px=105, py=55, canvas_size=200, label_size=20) == (5.0, 10.0)
    assert canvas_to_label(px=0, py=0, canvas_size=200, label_size=20) == (-0.5, -0.5)


@pytest.mark.parametrize("px,py", [(105, 55), (103, 53), (106.5, 56.5)])
def test_a_click_inside_a_label_pixel_paints_that_pixel(px, py):
    # the smallest brush (radius 0.5) paints exactly the label pixel under the mouse
    labels = torch.zeros(20, 20, dtype=torch.long)
    row, col = canvas_to_label(px, py, canvas_size=200, label_size=20)
    out = paint_disc(labels, row, col, 0.5, 1)
    assert out[5, 10] == 1 and out.sum() == 1


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


# ------------------------------------------------------------------ what the student sees
def error_text(box) -> str:
    return "".join(o.get("text", "") for o in box.errors.outputs)


def test_an_exception_in_a_click_or_slider_callback_is_shown_in_the_widget():
    calls = []

    def generate(seed):
        calls.append(seed)
        if seed == 7:
            raise ValueError("seed 7 is cursed")
        return torch.full((2, 3, 8, 8), (seed % 10) / 10)

    box = ResamplePanel(generate, nrow=2).widget()
    assert error_text(box) == ""  # nothing shown while all goes well
    seed = next(w for w in walk(box) if getattr(w, "description", "") == "seed")
    image = next(w for w in walk(box) if type(w).__name__ == "Image")
    before = bytes(image.value)
    seed.value = 3  # an observer: redraws
    assert calls[-1] == 3 and bytes(image.value) != before and error_text(box) == ""
    seed.value = 7  # the observer raises: the message appears in the widget's error area, nothing is raised
    assert "ValueError: seed 7 is cursed" in error_text(box)
    assert error_text(box).startswith("Error in redraw")
    box.errors.outputs = ()
    button = next(w for w in walk(box) if getattr(w, "description", "") == "resample")
    torch.manual_seed(0)
    button.click()  # a click handler: goes through ipywidgets' CallbackDispatcher, also guarded
    assert calls[-1] != 7 and error_text(box) == ""


def test_guard_callbacks_covers_canvas_mouse_events_and_foreign_panels():
    import ipywidgets as W

    labels = torch.zeros(8, 8, dtype=torch.long)
    painter = MaskPainter(labels, ["a", "b"], [(0, 0, 0), (255, 0, 0)], lambda lab: torch.zeros(3, 8, 8), canvas_size=32)
    box = painter.widget()
    canvas = next(w for w in walk(box) if hasattr(w, "put_image_data"))
    painter.paint = lambda points: (_ for _ in ()).throw(RuntimeError("brush broke"))
    canvas._handle_frontend_event(None, {"event": "mouse_down", "x": 4, "y": 4}, [])
    assert "RuntimeError: brush broke" in error_text(box)
    # a panel built elsewhere (e.g. in a model module): frame() guards its callbacks too
    button, slider = W.Button(description="go"), W.FloatSlider(description="brush")
    button.on_click(lambda _: 1 / 0)
    outer = frame(W.VBox([button, slider]), "foreign")
    button.click()
    assert "ZeroDivisionError" in error_text(outer)
    assert slider.description == "brush radius (label px)"


def test_frame_has_title_legend_and_pins_images_to_their_pixel_size():
    import ipywidgets as W

    image = image_widget(torch.zeros(3, 32, 48))
    assert display_scale(32, 48) == 10 and image.layout.width == "480px" and image.layout.height == "320px"
    raw = W.Image(value=png_bytes(torch.zeros(3, 5, 7), upscale=3), format="png")
    box = frame(W.VBox([image, raw]), "a <title>", legend=(["sky", "sea"], [(0, 0, 255), (0, 128, 0)], [1]))
    html_parts = " ".join(w.value for w in walk(box) if type(w).__name__ == "HTML")
    assert "a &lt;title&gt;" in html_parts and "nbsyn-title" in html_parts
    assert "sea" in html_parts and "sky" not in html_parts and "rgb(0,128,0)" in html_parts  # only classes present
    assert (raw.layout.width, raw.layout.height) == ("21px", "15px")
    raw.value = png_bytes(torch.zeros(3, 5, 7), upscale=4)  # follows a new image
    assert raw.layout.width == "28px"
    assert "nbsyn-widget" in box._dom_classes


def test_display_scale_is_an_integer_factor_that_fits():
    assert display_scale(32, 32) == 10  # a small sample is shown large
    assert display_scale(70, 274) == 2  # a wide grid fits the column (800 px)
    assert display_scale(1000, 1000) == 1  # never shrinks
    # nearest-neighbour: every label pixel becomes an s x s block of the same colour
    view = image_widget(torch.tensor([[[-1.0, 1.0]]]).expand(3, 1, 2))
    from PIL import Image

    import numpy as np

    pixels = np.asarray(Image.open(io.BytesIO(view.value)).convert("L"))
    s = display_scale(1, 2)
    assert pixels.shape == (s, 2 * s)
    assert (pixels[:, :s] == 0).all() and (pixels[:, s:] == 255).all()


def test_framed_canvases_send_label_colours_losslessly():
    # ipycanvas sends an RGB array as JPEG (quality 75), which smears class colours; frame() sends RGBA (PNG)
    from ipycanvas import Canvas

    canvas, sent = Canvas(width=4, height=4), []
    canvas.put_image_data = lambda data, x=0, y=0: sent.append(data)
    frame(canvas, "c")
    rgb = torch.randint(0, 255, (4, 4, 3), dtype=torch.uint8).numpy()
    canvas.put_image_data(rgb, 0, 0)
    assert sent[-1].shape == (4, 4, 4) and (sent[-1][..., :3] == rgb).all() and (sent[-1][..., 3] == 255).all()
