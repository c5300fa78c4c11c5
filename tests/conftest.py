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


def _group_for_xdist(items):
    """Give tests marked ``xdist_group(name)`` the nodeid suffix ``@name`` by which ``--dist loadgroup``
    sends a group to one worker. pytest-xdist 3.8 writes it to ``item._nodeid``, which pytest 9 no longer
    reads (the id lives in ``item._id``), so without this the browser tests were spread over both workers."""
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # pytest < 9: xdist's own suffix works
        return
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        if names and hasattr(item, "_id") and "@" not in item.nodeid.rsplit("]", 1)[-1]:
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")


def pytest_collection_modifyitems(config, items):
    if getattr(config.option, "loadgroup", False):
        _group_for_xdist(items)
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
