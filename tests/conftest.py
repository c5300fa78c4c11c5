import os

import pytest
import torch

# Fixed thread count: two threads can collapse on a loaded 2-core machine, and results must not
# depend on the machine's load.
torch.set_num_threads(int(os.environ.get("NBSYN_THREADS", "1")))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """A TORCH_HOME with no cached weights, whatever the machine has."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


# ------------------------------------------------------------------ browser tests (tests/browser/)
# Without Chromium or playwright they are left out for a user, with one line saying so and how to
# install them; in CI (CI=1 or NBSYN_REQUIRE_BROWSER=1, set by .ci/run) they run and fail instead.
BROWSER_DIR = os.path.join(os.path.dirname(__file__), "browser")


def _browser_missing():
    import sys

    sys.path.insert(0, BROWSER_DIR)
    try:
        import jlab
    finally:
        sys.path.remove(BROWSER_DIR)
    why = jlab.missing()
    return (why, jlab.INSTALL_HINT) if why and not jlab.required() else None


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives JupyterLab in headless Chromium (tests/browser/)")


def pytest_collection_modifyitems(config, items):
    if not any(item.get_closest_marker("browser") for item in items) or _browser_missing() is None:
        return
    left_out = [item for item in items if item.get_closest_marker("browser")]
    items[:] = [item for item in items if not item.get_closest_marker("browser")]
    config.hook.pytest_deselected(items=left_out)
    config._nbsyn_browser_skipped = True


def pytest_terminal_summary(terminalreporter, config):
    # with xdist the workers collect, so decide here from what was asked for
    asked = [os.path.abspath(str(a).split("::")[0]) for a in (config.args or ["tests"])]
    touches = any(BROWSER_DIR.startswith(a) or a.startswith(BROWSER_DIR) for a in asked)
    missing = _browser_missing()
    if missing and (touches or getattr(config, "_nbsyn_browser_skipped", False)):
        terminalreporter.write_line(f"browser tests skipped ({missing[0]}); to run them install: {missing[1]}",
                                    yellow=True)
