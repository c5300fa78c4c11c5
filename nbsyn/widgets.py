"""Interactive panels: resample noise, interpolate latents, paint a label map and regenerate.

The logic (what a click or a slider does to a tensor) is in plain functions that the tests call;
the classes only wire ipywidgets / ipycanvas to them. Every panel has ``render()``, the image it
currently shows, so a notebook can follow each widget with a static figure.

What a student sees: ``frame(body, title, legend=...)`` puts a title, the class legend and an error area
around any widget (also the panels of the model modules); an exception inside a callback (a click, a
slider move, a brush stroke) is shown there instead of disappearing into JupyterLab's log console.
Images are upscaled by an integer factor with nearest-neighbour (``display_scale``) and shown at exactly
that size, so pixels stay crisp and nothing is stretched by the browser.
"""

from __future__ import annotations

import html
import io
import traceback
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
    """Canvas position (x, y) -> label-map coordinates (row, column) in the frame of ``paint_disc``,
    where label pixel i has its centre at i: canvas x in [i * s, (i + 1) * s) lies in label pixel i."""
    scale = label_size / canvas_size
    return py * scale - 0.5, px * scale - 0.5


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


def display_scale(height: int, width: int, max_height: int = 320, max_width: int = 800) -> int:
    """The integer nearest-neighbour factor that shows an (height, width) image as large as fits in
    max_height x max_width display pixels (at least 1): a 32 px sample is shown at 320 px, a wide grid
    only as wide as a notebook column."""
    return max(1, min(max_height // max(1, height), max_width // max(1, width)))


def legend_html(class_names: Sequence[str], palette, present=None) -> str:
    """A row of colour swatches with the class names (the classes ``present``, default all)."""
    ids = range(len(class_names)) if present is None else sorted({int(i) for i in present})
    items = []
    for i in ids:
        r, g, b = (int(v) for v in palette[i])
        items.append(f"<span class='nbsyn-legend-item' data-class='{i}' data-rgb='{r},{g},{b}' "
                     f"style='margin-right:10px;white-space:nowrap'>"
                     f"<span style='display:inline-block;width:12px;height:12px;vertical-align:middle;"
                     f"border:1px solid #777;background:rgb({r},{g},{b})'></span> {html.escape(str(class_names[i]))}</span>")
    return "<div class='nbsyn-legend' style='line-height:1.8'>" + " ".join(items) + "</div>"


_STYLE = ("<style>.nbsyn-widget img, .nbsyn-widget canvas {image-rendering: pixelated;}"
          ".nbsyn-errors .jp-OutputArea-output {color: #b00020;}</style>")


def image_widget(image: torch.Tensor, scale: int | None = None, **limits):
    """An ipywidgets Image of (3, H, W) ``image`` in [-1, 1], upscaled (nearest) by ``scale`` (default:
    ``display_scale``) and pinned to that size in the page."""
    import ipywidgets as W

    view = W.Image(format="png")
    set_image(view, image, scale, **limits)
    return view


def set_image(view, image: torch.Tensor, scale: int | None = None, **limits) -> None:
    """Show ``image`` in an Image widget made by ``image_widget`` (same rules)."""
    h, w = image.shape[-2:]
    s = display_scale(h, w, **limits) if scale is None else min(scale, display_scale(h, w, **limits))
    view.value = png_bytes(image, s)
    view.layout.width, view.layout.height = f"{w * s}px", f"{h * s}px"


def walk(widget):
    """The widget and all widgets inside it (Box children), depth first."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def show_error(area, exc: BaseException, where: str = "") -> None:
    """Write an exception (type, message, the last frames) into an Output widget."""
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = f"Error{' in ' + where if where else ''}: {type(exc).__name__}: {exc}\n" + "".join(frames[-3:])
    area.outputs = ()
    area.append_stderr(text)


def guarded(fn: Callable, area) -> Callable:
    """``fn`` that shows its exceptions in the Output widget ``area`` instead of raising them."""
    if getattr(fn, "_nbsyn_area", None) is area:
        return fn

    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - shown to the student, not swallowed
            show_error(area, exc, getattr(fn, "__name__", ""))
            return None

    call._nbsyn_area = area
    call.__name__ = getattr(fn, "__name__", "callback")
    return call


def guard_callbacks(root, area) -> int:
    """Route the exceptions of every callback inside ``root`` (button clicks, canvas mouse events,
    value observers) to the Output widget ``area``; returns how many callbacks were wrapped.

    Without this, ipywidgets sends a callback's traceback to JupyterLab's log console (clicks) or the
    server log (observers), where a student never sees it."""
    from ipywidgets.widgets.widget import CallbackDispatcher
    from traitlets import EventHandler

    count = 0
    for widget in walk(root):
        # Button._click_handlers (an attribute), ipycanvas' Canvas._mouse_*_callbacks (traits), ...
        for value in [*vars(widget).values(), *getattr(widget, "_trait_values", {}).values()]:
            if isinstance(value, CallbackDispatcher):
                value.callbacks[:] = [guarded(cb, area) for cb in value.callbacks]
                count += len(value.callbacks)
        for by_type in widget._trait_notifiers.values():
            for handlers in by_type.values():
                for i, handler in enumerate(handlers):
                    if not isinstance(handler, EventHandler):  # leave the widget's own @observe methods
                        handlers[i] = guarded(handler, area)
                        count += 1
    return count


def pin_image_sizes(root) -> None:
    """Show every Image inside ``root`` at its PNG's own pixel size (the browser stretches an image to
    the column width otherwise, which blurs it)."""
    import ipywidgets as W
    from PIL import Image

    def pin(view):
        if view.value and view.format == "png":
            width, height = Image.open(io.BytesIO(view.value)).size
            view.layout.width, view.layout.height = f"{width}px", f"{height}px"

    for widget in walk(root):
        if hasattr(widget, "put_image_data") and not widget.layout.width:  # an ipycanvas Canvas
            widget.layout.width, widget.layout.height = f"{widget.width}px", f"{widget.height}px"
        if isinstance(widget, W.Image) and not getattr(widget, "_nbsyn_pinned", False):
            pin(widget)
            widget.observe(lambda change, v=widget: pin(v), names="value")
            widget._nbsyn_pinned = True


def lossless_canvases(root) -> None:
    """Make every ipycanvas Canvas inside ``root`` send its images losslessly: ipycanvas encodes an RGB
    array as JPEG (quality 75), which smears a label map's class colours; an RGBA array goes as PNG."""
    import numpy as np

    for widget in walk(root):
        if hasattr(widget, "put_image_data") and not getattr(widget, "_nbsyn_lossless", False):
            put = widget.put_image_data

            def put_rgba(image_data, x=0, y=0, put=put):
                image_data = np.asarray(image_data)
                if image_data.ndim == 3 and image_data.shape[2] == 3:
                    alpha = np.full(image_data.shape[:2] + (1,), 255, dtype=image_data.dtype)
                    image_data = np.concatenate([image_data, alpha], axis=2)
                return put(image_data, x, y)

            widget.put_image_data = put_rgba
            widget._nbsyn_lossless = True


def frame(body, title: str, legend: tuple | None = None, note: str | None = None):
    """``body`` with a title, an optional class legend ``(class_names, palette[, present ids])`` and a
    note above it, and an error area below it that shows any exception raised by the body's callbacks.
    Images inside are pinned to their pixel size; a slider described as just "brush" (the panels of the
    model modules) is labelled with its unit. The box carries the CSS class ``nbsyn-widget``."""
    import ipywidgets as W

    errors = W.Output()
    errors.add_class("nbsyn-errors")
    parts = [W.HTML(_STYLE + f"<div class='nbsyn-title' style='font-size:1.15em'><b>{html.escape(title)}</b></div>")]
    if legend is not None:
        parts.append(W.HTML(legend_html(*legend)))
    if note:
        parts.append(W.HTML(f"<div class='nbsyn-note' style='color:#555'>{html.escape(note)}</div>"))
    parts += [body, errors]
    box = W.VBox(parts)
    box.add_class("nbsyn-widget")
    pin_image_sizes(body)
    lossless_canvases(body)
    guard_callbacks(body, errors)
    for widget in walk(body):
        if getattr(widget, "description", None) == "brush":  # a radius in label-map pixels everywhere
            labelled(widget, "brush radius (label px)")
    box.errors = errors
    return box


def labelled(widget, text: str):
    """A control whose description is shown in full (ipywidgets truncates long descriptions)."""
    widget.description = text
    widget.style.description_width = "initial"
    return widget


# ----------------------------------------------------------------------------- panels
class ResamplePanel:
    """A seed slider and a 'resample' button; ``generate(seed)`` returns (N, 3, H, W) images.
    ``legend=(class_names, palette)`` adds a class legend (for generators that also draw masks)."""

    def __init__(self, generate: Callable[[int], torch.Tensor], nrow: int = 8, seed: int = 0,
                 upscale: int | None = None, title: str = "samples: move the seed or press resample",
                 legend: tuple | None = None):
        self.generate, self.nrow, self.upscale, self.seed = generate, nrow, upscale, seed
        self.title, self.legend = title, legend

    def render(self) -> torch.Tensor:
        return grid(self.generate(self.seed), self.nrow)

    def widget(self):
        import ipywidgets as W

        image = image_widget(self.render(), self.upscale)
        seed = W.IntSlider(value=self.seed, min=0, max=10_000, description="seed")
        button = W.Button(description="resample", icon="refresh", tooltip="draw a random seed")

        def redraw(*_):
            self.seed = seed.value
            set_image(image, self.render(), self.upscale)

        def resample(_):
            seed.value = int(torch.randint(0, 10_000, ()).item())

        seed.observe(redraw, names="value")
        button.on_click(resample)
        return frame(W.VBox([W.HBox([seed, button]), image]), self.title, legend=self.legend)


class InterpolationPanel:
    """A slider t in [0, 1] between two latents; ``generate(latent)`` returns (N, 3, H, W) images."""

    def __init__(self, generate: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, z1: torch.Tensor,
                 spherical: bool = False, upscale: int | None = None, nrow: int = 8,
                 title: str | None = None):
        self.generate, self.z0, self.z1, self.spherical = generate, z0, z1, spherical
        self.upscale, self.nrow, self.t = upscale, nrow, 0.0
        self.title = title or f"{'spherical' if spherical else 'linear'} interpolation between two latents z0 and z1"

    def latent(self, t: float) -> torch.Tensor:
        return (slerp if self.spherical else lerp)(self.z0, self.z1, t)

    def render(self, t: float | None = None) -> torch.Tensor:
        return grid(self.generate(self.latent(self.t if t is None else t)), self.nrow)

    def strip(self, steps: int = 8) -> torch.Tensor:
        """All interpolation steps side by side: (steps * N, 3, H, W)."""
        return torch.cat([self.generate(self.latent(float(t))) for t in torch.linspace(0, 1, steps)])

    def widget(self):
        import ipywidgets as W

        image = image_widget(self.render(), self.upscale)
        slider = labelled(W.FloatSlider(value=self.t, min=0.0, max=1.0, step=0.05), "t  (0 = z0, 1 = z1)")

        def redraw(change):
            self.t = change["new"]
            set_image(image, self.render(), self.upscale)

        slider.observe(redraw, names="value")
        return frame(W.VBox([slider, image]), self.title)


class MaskPainter:
    """Paint classes onto a label map with the mouse, then regenerate an image from it.

    ``generate(labels (H, W)) -> (3, H, W)`` image. The left canvas shows the label map in class
    colours; drag to paint with the chosen class and brush (radius in label-map pixels); the right
    image follows on 'generate' (or live, with 'live' ticked).
    """

    def __init__(self, labels: torch.Tensor, class_names: Sequence[str], palette, generate: Callable,
                 canvas_size: int = 256, title: str = "paint a label map (left), then press generate (right)"):
        self.original = labels.clone()
        self.labels = labels.clone()
        self.class_names, self.palette, self.generate = list(class_names), palette, generate
        self.up = max(1, canvas_size // labels.shape[0])  # canvas pixels per label pixel
        self.canvas_size = self.up * labels.shape[0]
        self.cls, self.radius = 0, max(1.0, labels.shape[0] / 16)
        self.title = title

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

        up, (h, w) = self.up, self.labels.shape
        canvas = Canvas(width=up * w, height=up * h, layout=W.Layout(width=f"{up * w}px", height=f"{up * h}px"))
        canvas.add_class("nbsyn-canvas")

        def result_scale(image):  # the generated image at the canvas's height
            return max(1, (up * h) // image.shape[-2])

        first = self.generate(self.labels).detach().float().cpu()
        result = image_widget(first, result_scale(first), max_height=up * h, max_width=3 * up * w)
        result.layout.margin = "0 0 0 12px"
        cls = W.Dropdown(options=[(n, i) for i, n in enumerate(self.class_names)], value=self.cls, description="class")
        brush = labelled(W.FloatSlider(value=self.radius, min=0.5, max=h / 4, step=0.5),
                         "brush radius (label px)")
        live = W.Checkbox(value=False, description="live", tooltip="regenerate after every stroke")
        gen_button = W.Button(description="generate", icon="play")
        reset_button = W.Button(description="reset", tooltip="back to the original label map")
        stroke: list[tuple[float, float]] = []

        def draw_labels():
            canvas.put_image_data((to_numpy_image(colorize(self.labels, self.palette)).repeat(up, 0).repeat(up, 1) * 255)
                                  .astype("uint8"), 0, 0)

        def regenerate(*_):
            image = self.generate(self.labels).detach().float().cpu()
            set_image(result, image, result_scale(image), max_height=up * h, max_width=3 * up * w)

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
            if stroke:
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
        canvas.on_mouse_out(release)
        gen_button.on_click(regenerate)
        reset_button.on_click(reset)
        body = W.VBox([W.HBox([cls, brush]), W.HBox([live, gen_button, reset_button]),
                       W.HBox([canvas, result])])
        box = frame(body, self.title, legend=(self.class_names, self.palette))
        draw_labels()
        return box
