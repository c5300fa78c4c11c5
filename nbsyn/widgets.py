"""Interactive panels: resample noise, interpolate latents, paint a label map and regenerate.

The logic (what a click or a slider does to a tensor) is in plain functions that the tests call;
the classes only wire ipywidgets / ipycanvas to them. Every panel has ``render()``, the image it
currently shows, so a notebook can follow each widget with a static figure.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import torch

from nbsyn.viz import colorize, grid, to_numpy_image


# ----------------------------------------------------------------------------- logic
def paint_disc(labels: torch.Tensor, cy: float, cx: float, radius: float, cls: int) -> torch.Tensor:
    """A copy of an (H, W) label map with a disc of class ``cls`` painted at (cy, cx)."""
    h, w = labels.shape
    ys = torch.arange(h, dtype=torch.float32)[:, None]
    xs = torch.arange(w, dtype=torch.float32)[None, :]
    out = labels.clone()
    out[(ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2] = cls
    return out


def paste_shifted(base: torch.Tensor, region: torch.Tensor, cls: int, dy: int, dx: int) -> torch.Tensor:
    """Write class ``cls`` into ``base`` (H, W) at the pixels of ``region`` (bool) moved by (dy, dx), in
    place, and return it; pixels moved off the map are dropped. Moving a region = fill its old footprint
    (each notebook has its own rule) and paste it shifted."""
    h, w = base.shape
    ys, xs = torch.nonzero(region, as_tuple=True)
    ys, xs = ys + dy, xs + dx
    keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    base[ys[keep], xs[keep]] = cls
    return base


def paint_stroke(labels: torch.Tensor, points: Sequence[tuple[float, float]], radius: float, cls: int) -> torch.Tensor:
    """Paint discs along a polyline of (y, x) points, interpolated so fast strokes leave no gaps."""
    out = labels
    for (y0, x0), (y1, x1) in zip(points, list(points[1:]) or points):
        steps = max(1, int(max(abs(y1 - y0), abs(x1 - x0)) / max(radius / 2, 0.5)))
        for t in torch.linspace(0, 1, steps + 1):
            out = paint_disc(out, y0 + (y1 - y0) * float(t), x0 + (x1 - x0) * float(t), radius, cls)
    return out


def canvas_to_label(px: float, py: float, canvas_size: int, label_size: int) -> tuple[float, float]:
    """Canvas pixel (x, y) -> label-map coordinates (row, column)."""
    scale = label_size / canvas_size
    return py * scale, px * scale


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (along the great circle), per row for batched latents."""
    a_n = a / a.norm(dim=-1, keepdim=True)
    b_n = b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def side_by_side(images: Sequence[torch.Tensor], pad: int = 2) -> torch.Tensor:
    """(3, H_i, W_i) images of any sizes in one row on white padding, each scaled (nearest) to the
    tallest height; the layout of ``grid`` for equal sizes."""
    height = max(img.shape[-2] for img in images)
    scaled = []
    for img in images:
        h, w = img.shape[-2:]
        if h != height:
            img = torch.nn.functional.interpolate(img[None].float(), size=(height, round(w * height / h)),
                                                  mode="nearest")[0]
        scaled.append(img.float())
    canvas = torch.ones(3, height + 2 * pad, sum(img.shape[-1] for img in scaled) + pad * (len(scaled) + 1))
    x = pad
    for img in scaled:
        canvas[:, pad:pad + height, x:x + img.shape[-1]] = img
        x += img.shape[-1] + pad
    return canvas


def png_bytes(image: torch.Tensor, upscale: int = 1) -> bytes:
    """(3, H, W) in [-1, 1] -> PNG bytes (nearest-neighbour upscaling keeps pixels crisp)."""
    from PIL import Image

    array = (to_numpy_image(image) * 255).round().astype("uint8")
    pil = Image.fromarray(array)
    if upscale > 1:
        pil = pil.resize((pil.width * upscale, pil.height * upscale), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- panels
class ResamplePanel:
    """A seed slider and a 'resample' button; ``generate(seed)`` returns (N, 3, H, W) images."""

    def __init__(self, generate: Callable[[int], torch.Tensor], nrow: int = 8, seed: int = 0, upscale: int = 2,
                 title: str = "samples"):
        self.generate, self.nrow, self.upscale, self.seed = generate, nrow, upscale, seed
        self.title = title

    def render(self) -> torch.Tensor:
        return grid(self.generate(self.seed), self.nrow)

    def widget(self):
        import ipywidgets as W

        image = W.Image(value=png_bytes(self.render(), self.upscale), format="png")
        seed = W.IntSlider(value=self.seed, min=0, max=10_000, description="seed")
        button = W.Button(description="resample", icon="refresh")

        def redraw(*_):
            self.seed = seed.value
            image.value = png_bytes(self.render(), self.upscale)

        def resample(_):
            seed.value = int(torch.randint(0, 10_000, ()).item())

        seed.observe(redraw, names="value")
        button.on_click(resample)
        return W.VBox([W.HTML(f"<b>{self.title}</b>"), W.HBox([seed, button]), image])


class InterpolationPanel:
    """A slider t in [0, 1] between two latents; ``generate(latent)`` returns (N, 3, H, W) images."""

    def __init__(self, generate: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, z1: torch.Tensor,
                 spherical: bool = False, upscale: int = 2, nrow: int = 8):
        self.generate, self.z0, self.z1, self.spherical = generate, z0, z1, spherical
        self.upscale, self.nrow, self.t = upscale, nrow, 0.0

    def latent(self, t: float) -> torch.Tensor:
        return (slerp if self.spherical else lerp)(self.z0, self.z1, t)

    def render(self, t: float | None = None) -> torch.Tensor:
        return grid(self.generate(self.latent(self.t if t is None else t)), self.nrow)

    def strip(self, steps: int = 8) -> torch.Tensor:
        """All interpolation steps side by side: (steps * N, 3, H, W)."""
        return torch.cat([self.generate(self.latent(float(t))) for t in torch.linspace(0, 1, steps)])

    def widget(self):
        import ipywidgets as W

        image = W.Image(value=png_bytes(self.render(), self.upscale), format="png")
        slider = W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="t")

        def redraw(change):
            self.t = change["new"]
            image.value = png_bytes(self.render(), self.upscale)

        slider.observe(redraw, names="value")
        return W.VBox([slider, image])


class MaskPainter:
    """Paint classes onto a label map with the mouse, then regenerate an image from it.

    ``generate(labels (H, W)) -> (3, H, W)`` image. The left canvas shows the label map in class
    colours; drag to paint with the chosen class and brush; the right image follows on 'generate'
    (or live, with 'live' ticked).
    """

    def __init__(self, labels: torch.Tensor, class_names: Sequence[str], palette, generate: Callable,
                 canvas_size: int = 256):
        self.original = labels.clone()
        self.labels = labels.clone()
        self.class_names, self.palette, self.generate = list(class_names), palette, generate
        self.canvas_size = canvas_size
        self.cls, self.radius = 0, max(1.0, labels.shape[0] / 16)

    def paint(self, points: Sequence[tuple[float, float]]) -> torch.Tensor:
        """Paint a stroke given in canvas pixel (x, y) coordinates with the current class and brush."""
        pts = [canvas_to_label(px, py, self.canvas_size, self.labels.shape[0]) for px, py in points]
        self.labels = paint_stroke(self.labels, pts, self.radius, self.cls)
        return self.labels

    def reset(self) -> None:
        self.labels = self.original.clone()

    def render(self) -> torch.Tensor:
        """Label map and generated image side by side on white, (3, H + 2 pad, W + W' + 3 pad).

        ``generate`` may return any (3, H', W'): a wider image (e.g. image and mask side by side) or a
        larger one; the label map is scaled (nearest) to the image's height.
        """
        return side_by_side([colorize(self.labels, self.palette), self.generate(self.labels).detach().float().cpu()])

    def widget(self):
        import ipywidgets as W
        from ipycanvas import Canvas

        up = max(1, self.canvas_size // self.labels.shape[0])
        canvas = Canvas(width=self.canvas_size, height=self.canvas_size)
        result = W.Image(value=png_bytes(self.generate(self.labels).cpu(), up), format="png")
        cls = W.Dropdown(options=[(n, i) for i, n in enumerate(self.class_names)], value=self.cls, description="class")
        brush = W.FloatSlider(value=self.radius, min=0.5, max=self.labels.shape[0] / 4, step=0.5, description="brush")
        live = W.Checkbox(value=False, description="live")
        gen_button, reset_button = W.Button(description="generate", icon="play"), W.Button(description="reset")
        stroke: list[tuple[float, float]] = []

        def draw_labels():
            canvas.clear()
            canvas.put_image_data((to_numpy_image(colorize(self.labels, self.palette)).repeat(up, 0).repeat(up, 1) * 255)
                                  .astype("uint8"), 0, 0)

        def regenerate(*_):
            result.value = png_bytes(self.generate(self.labels).cpu(), up)

        def down(x, y):
            stroke[:] = [(x, y)]
            self.cls, self.radius = cls.value, brush.value
            self.paint(stroke)
            draw_labels()

        def move(x, y):
            if stroke:
                self.paint([stroke[-1], (x, y)])
                stroke.append((x, y))
                draw_labels()

        def release(x, y):
            stroke.clear()
            if live.value:
                regenerate()

        def reset(_):
            self.reset()
            draw_labels()
            regenerate()

        canvas.on_mouse_down(down)
        canvas.on_mouse_move(move)
        canvas.on_mouse_up(release)
        gen_button.on_click(regenerate)
        reset_button.on_click(reset)
        draw_labels()
        return W.VBox([W.HBox([cls, brush, live, gen_button, reset_button]), W.HBox([canvas, result])])
