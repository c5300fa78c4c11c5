"""Every notebook's widgets in a real JupyterLab, driven by headless Chromium (Playwright).

For each notebook with widgets: a papermill ``--prepare-only`` copy at ``preset=smoke`` in a temporary
folder is opened in JupyterLab and all its cells are run. Then every ``nbsyn-widget`` box is operated
the way a student would: sliders are dragged, dropdowns changed, buttons clicked; on a mask painter a
class is chosen and a stroke dragged across the canvas, then generate and reset. The test asserts that
each of these changes the displayed image, that the canvas has the chosen class's colour where the
mouse went and nowhere far from it, that reset restores the canvas, and that no error appeared: not in
a cell, not in a widget's error area, not in the kernel's websocket messages, not in the server log.

Screenshots of every widget after every step: ``runs/browser/<notebook>/``.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jlab import ARTIFACTS, ROOT

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

# notebook -> how many widgets it shows (a new widget, or a notebook with widgets, must be added here)
WIDGETS = {"00_gan_foundations": 2, "01_oasis": 2, "02_sivgan": 2, "03_osmis": 1, "04_stylegan2_ssr": 3,
           "05_fewshot_sis_stylegan_prior": 3, "06_class_affinity_transfer": 2,
           "07_sis_unconditional_generator": 1, "08_semantic_image_analogy": 1}
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
RUN_TIMEOUT_S = 600  # all cells at smoke (under a minute alone; the machine is shared in CI)
CHANGE_TIMEOUT_S = 90  # one widget callback


def test_every_notebook_with_widgets_is_listed():
    with_widgets = {p.stem for p in NOTEBOOKS if re.search(r"\.widget\(\)|widgets\.frame\(", p.read_text())}
    assert with_widgets == set(WIDGETS), "update WIDGETS in tests/browser/test_widgets_browser.py"


# ------------------------------------------------------------------ kernel messages over the websocket
def decode_frame(payload) -> dict | None:
    """A kernel message from a websocket frame of the legacy protocol (JSON text, or binary: a count,
    big-endian uint32 offsets, the JSON message, then buffers)."""
    try:
        if isinstance(payload, str):
            return json.loads(payload)
        n = struct.unpack("!I", payload[:4])[0]
        offsets = struct.unpack("!" + "I" * n, payload[4:4 + 4 * n])
        return json.loads(payload[offsets[0]:offsets[1]].decode())
    except (ValueError, struct.error, UnicodeDecodeError):
        return None


def is_error(msg: dict) -> bool:
    kind = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
    content = msg.get("content", {})
    if kind == "error":
        return True
    if kind == "stream" and content.get("name") == "stderr":
        return "Traceback (most recent call last)" in content.get("text", "")
    return False


# ------------------------------------------------------------------ page helpers
def pixels(locator) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(locator.screenshot(animations="disabled"))).convert("RGB")).astype(int)


class Notebook:
    """One notebook open in JupyterLab, its kernel messages and its screenshots."""

    def __init__(self, page, out: Path):
        self.page, self.out, self.messages, self.shots = page, out, [], 0
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame) if "/channels" in ws.url else None)

    def _frame(self, payload):
        msg = decode_frame(payload)
        if msg is not None:
            self.messages.append(msg)

    def errors(self) -> list[str]:
        found = [json.dumps(m.get("content", {}))[:1500] for m in self.messages if is_error(m)]
        for el in self.page.locator(".nbsyn-errors .jp-OutputArea-output").all():
            found.append("widget error area: " + el.inner_text()[:1500])
        return found

    def idle(self) -> bool:
        return self.page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() > 0

    def wait_idle(self, timeout: float = CHANGE_TIMEOUT_S, quiet: float = 1.0) -> None:
        """Until the kernel has been idle for ``quiet`` seconds."""
        deadline, since = time.time() + timeout, None
        while time.time() < deadline:
            if self.idle():
                since = since or time.time()
                if time.time() - since >= quiet:
                    return
            else:
                since = None
            time.sleep(0.2)
        raise AssertionError("the kernel stayed busy")

    def run_all(self) -> None:
        page = self.page
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        self.accept_dialogs()
        connected = wait_until(lambda: self.accept_dialogs() or page.evaluate(KERNEL_READY), timeout=120)
        assert connected, "the notebook's kernel did not connect"
        time.sleep(1)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        started = wait_until(lambda: self.accept_dialogs() or page.locator(".jp-CodeCell .jp-InputPrompt")
                             .first.inner_text().strip() != "[ ]:", timeout=60)
        assert started, "Run All Cells did not start the first cell (see the screenshot)"
        deadline = time.time() + RUN_TIMEOUT_S
        while time.time() < deadline:
            prompts = page.eval_on_selector_all(".jp-CodeCell .jp-InputPrompt", "els => els.map(e => e.textContent)")
            done = all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts)
            if done and self.idle() or self.errors():
                break
            time.sleep(1)
        assert not self.errors(), "error while running the notebook:\n" + "\n".join(self.errors())
        assert done, f"cells still running after {RUN_TIMEOUT_S} s: {prompts}"
        self.wait_idle(quiet=2.0)

    def accept_dialogs(self) -> bool:
        """Accept a dialog in the way (e.g. a kernel choice); False when there was none."""
        accept = self.page.locator(".jp-Dialog .jp-mod-accept")
        if accept.count():
            accept.first.click()
            return False
        return False

    def shot(self, box, name: str) -> None:
        self.shots += 1
        box.screenshot(path=str(self.out / f"{self.shots:02d}_{name}.png"), animations="disabled")

    def images(self, box) -> list[np.ndarray]:
        return [pixels(el) for el in box.locator("img.widget-image, canvas").all()]

    def wait_change(self, box, before: list[np.ndarray], what: str, fail: bool = True):
        """Wait until an image or canvas in ``box`` differs from ``before`` and the kernel is idle;
        fail if nothing changed (or return None, with ``fail=False``)."""
        deadline = time.time() + CHANGE_TIMEOUT_S
        while time.time() < deadline:
            time.sleep(0.3)
            if self.errors():
                break
            now = self.images(box)
            if self.idle() and changed(before, now):
                self.wait_idle()
                return self.images(box)
            if self.idle() and time.time() > deadline - CHANGE_TIMEOUT_S + 15 and not changed(before, self.images(box)):
                self.wait_idle(quiet=3.0)  # idle for a while and still the same: nothing will change
                if not changed(before, self.images(box)):
                    break
        assert not self.errors(), f"{what}: error\n" + "\n".join(self.errors())
        if fail:
            raise AssertionError(f"{what}: the displayed image did not change")
        return None


KERNEL_READY = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""


def changed(before, after) -> bool:
    return len(before) != len(after) or any(a.shape != b.shape or np.abs(a - b).max() > 0 for a, b in zip(before, after))


def wait_until(condition, timeout: float = CHANGE_TIMEOUT_S) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return False


def drag_slider(page, slider, fraction: float = 0.3, end: str | None = None) -> None:
    """Drag a noUiSlider handle by ``fraction`` of the track (right; left if it is near the end), or
    to one ``end`` ("min" / "max")."""
    slider.scroll_into_view_if_needed()
    handle = slider.locator(".noUi-handle").bounding_box()
    track = slider.locator(".noUi-base").bounding_box()
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    dx = fraction * track["width"] * (1 if x < track["x"] + 0.6 * track["width"] else -1)
    if end is not None:
        dx = (track["x"] - 5 - x) if end == "min" else (track["x"] + track["width"] + 5 - x)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=8)
    page.mouse.up()


# ------------------------------------------------------------------ operating the widgets
def operate_plain(nb: Notebook, box, index: int) -> None:
    """A widget without a canvas: every slider, dropdown and button must change the image."""
    page = nb.page
    for i, slider in enumerate(box.locator(".widget-slider").all()):
        before = nb.images(box)
        what = f"widget {index}: dragging slider {i} ({slider.inner_text().strip()!r})"
        drag_slider(page, slider)
        if nb.wait_change(box, before, what, fail=False) is None:
            # a value can legitimately give the same image (e.g. top-k votes that agree): try both ends
            drag_slider(page, slider, end="min")
            if nb.wait_change(box, before, what, fail=False) is None:
                drag_slider(page, slider, end="max")
                nb.wait_change(box, before, what + ", to its minimum and to its maximum")
        nb.shot(box, f"w{index}_slider{i}")
    for i, select in enumerate(box.locator("select").all()):
        options = select.locator("option").all_inner_texts()
        current = select.evaluate("s => s.selectedIndex")
        before = nb.images(box)
        select.select_option(index=(current + 1) % len(options))
        nb.wait_change(box, before, f"widget {index}: dropdown {i} -> {options[(current + 1) % len(options)]!r}")
        nb.shot(box, f"w{index}_dropdown{i}")
    for i, button in enumerate(box.locator("button").all()):
        before = nb.images(box)
        button.click()
        nb.wait_change(box, before, f"widget {index}: button {button.inner_text().strip()!r}")
        nb.shot(box, f"w{index}_button_{button.inner_text().strip().replace(' ', '_')}")


def legend(box) -> dict[int, np.ndarray]:
    items = box.locator(".nbsyn-legend-item").all()
    assert items, "a widget that shows a mask must show the class legend"
    return {int(it.get_attribute("data-class")): np.array([int(v) for v in it.get_attribute("data-rgb").split(",")])
            for it in items}


def operate_painter(nb: Notebook, box, index: int) -> None:
    """Choose a class, drag a stroke on the canvas, generate, operate the other controls, reset."""
    page = nb.page
    colours = legend(box)
    canvas = box.locator("canvas").first
    canvas.scroll_into_view_if_needed()
    buttons = {bt.inner_text().strip(): bt for bt in box.locator("button").all()}
    assert "reset" in buttons, f"widget {index}: a painter needs a reset button"
    buttons["reset"].click()  # the state reset returns to, drawn the way reset draws it
    nb.wait_idle()
    result = box.locator("img.widget-image").first
    canvas0, result0 = pixels(canvas), pixels(result)
    h, w = canvas0.shape[:2]
    ys = int(0.5 * h)
    path_x = [int(x) for x in np.linspace(0.3 * w, 0.7 * w, 9)]
    # the class whose colour is rarest under the stroke, so that painting it must show
    under = canvas0[ys, path_x]
    cls = min(colours, key=lambda c: (int((np.abs(under - colours[c]).max(1) <= 3).sum()), c))
    box.locator("select").first.select_option(index=cls)
    nb.wait_idle()
    b = canvas.bounding_box()
    page.mouse.move(b["x"] + path_x[0], b["y"] + ys)
    page.mouse.down()
    for x in path_x[1:]:
        page.mouse.move(b["x"] + x, b["y"] + ys, steps=3)
    page.mouse.up()
    wait_until(lambda: changed([canvas0], [pixels(canvas)]))
    nb.wait_idle()
    canvas1 = pixels(canvas)
    nb.shot(box, f"w{index}_painted_class{cls}")
    # the stroke's pixels have the class colour ...
    on_path = canvas1[ys, path_x]
    wrong = np.abs(on_path - colours[cls]).max(1) > 3
    assert not wrong.any(), (f"widget {index}: painted class {cls} {colours[cls].tolist()}, but the canvas under "
                             f"the stroke shows {on_path[wrong].tolist()}")
    # ... and nothing far from the stroke changed (the brush is at most a quarter of the map high)
    far = np.ones((h, w), bool)
    far[max(0, ys - h // 3):ys + h // 3 + 1] = False
    far[:4], far[-4:], far[:, :4], far[:, -4:] = False, False, False, False  # the focus outline
    assert (canvas1[far] == canvas0[far]).all(), f"widget {index}: pixels far from the stroke changed"
    assert not nb.errors(), "\n".join(nb.errors())

    if "generate" in buttons:
        buttons["generate"].click()
    wait_until(lambda: changed([result0], [pixels(result)]))
    nb.wait_idle()
    assert changed([result0], [pixels(result)]), f"widget {index}: the generated image did not change after painting"
    nb.shot(box, f"w{index}_generated")

    # the other controls: every slider but the brush (dy, dx, scale ...) and dropdown, then each action button
    for slider in box.locator(".widget-slider").all():
        if "brush" not in slider.inner_text():
            drag_slider(page, slider, 0.2)
            nb.wait_idle()
    for select in box.locator("select").all()[1:]:
        n = len(select.locator("option").all())
        select.select_option(index=min(1, n - 1))
        nb.wait_idle()
    for name, button in buttons.items():
        if name in ("generate", "reset"):
            continue
        before = nb.images(box)
        button.click()
        nb.wait_change(box, before, f"widget {index}: button {name!r}")
        nb.shot(box, f"w{index}_button_{name.replace(' ', '_')}")
    for check in box.locator(".widget-checkbox input").all():  # e.g. 'live': regenerate after each stroke
        check.set_checked(not check.is_checked())
        nb.wait_idle()

    buttons["reset"].click()
    wait_until(lambda: not changed([canvas0], [pixels(canvas)]))
    nb.wait_idle()
    assert not changed([canvas0], [pixels(canvas)]), f"widget {index}: reset did not restore the canvas"
    nb.shot(box, f"w{index}_reset")
    assert not nb.errors(), "\n".join(nb.errors())


# ------------------------------------------------------------------ the test
@pytest.mark.parametrize("name", sorted(WIDGETS))
def test_widgets_in_jupyterlab(name, lab, browser, notebook_dir):
    import papermill

    started = time.time()
    out = ARTIFACTS / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    papermill.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(notebook_dir / f"{name}.ipynb"),
                               parameters={"preset": "smoke", "out_dir": str(notebook_dir / f"{name}_out")},
                               prepare_only=True, kernel_name="python3", progress_bar=False)
    log_start = len(lab.log())
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    page = context.new_page()
    nb = Notebook(page, out)
    try:
        page.goto(lab.url(f"{name}.ipynb"))
        nb.run_all()
        page.screenshot(path=str(out / "00_notebook.png"))
        boxes = page.locator(".nbsyn-widget").all()
        assert len(boxes) == WIDGETS[name], f"{len(boxes)} widgets on the page, expected {WIDGETS[name]}"
        for index, box in enumerate(boxes):
            box.scroll_into_view_if_needed()
            assert box.locator(".nbsyn-title").inner_text().strip(), f"widget {index} has no title"
            for img in box.locator("img.widget-image").all():  # shown at its pixel size: crisp, not stretched
                size = img.evaluate("i => [i.naturalWidth, i.naturalHeight, i.clientWidth, i.clientHeight]")
                assert size[:2] == size[2:], f"widget {index}: a {size[0]}x{size[1]} image shown at {size[2]}x{size[3]}"
            nb.shot(box, f"w{index}_start")
            if box.locator("canvas").count():
                operate_painter(nb, box, index)
            else:
                operate_plain(nb, box, index)
        assert not nb.errors(), "\n".join(nb.errors())
        log = lab.log()[log_start:]
        bad = [line for line in log.splitlines() if re.search(r"Traceback|Exception in|\[E ", line)]
        assert not bad, "errors in the JupyterLab server log:\n" + "\n".join(bad[:20])
    finally:
        page.screenshot(path=str(out / "99_last.png"), full_page=False)
        (out / "elapsed_s.txt").write_text(f"{time.time() - started:.1f}\n")
        try:
            for kernel in lab.api("/api/kernels"):  # free the kernel's memory for the next notebook
                lab.api(f"/api/kernels/{kernel['id']}", method="DELETE")
        except OSError:
            pass
        context.close()
