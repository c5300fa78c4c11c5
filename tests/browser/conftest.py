"""Fixtures of the browser tests: one JupyterLab server and one headless Chromium for the session.

A missing browser or playwright skips these tests for a user (``tests/conftest.py`` prints one line
saying so) and fails them in CI (``CI=1`` or ``NBSYN_REQUIRE_BROWSER=1``, set by ``.ci/run``).
"""

import pytest

from jlab import ARTIFACTS, INSTALL_HINT, JupyterLab, find_chromium, missing


@pytest.fixture(scope="session")
def notebook_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("lab_root")


@pytest.fixture(scope="session")
def lab(notebook_dir, tmp_path_factory):
    why = missing()
    if why:  # only reached in CI: elsewhere the tests are deselected (tests/conftest.py)
        pytest.fail(f"browser tests cannot run: {why}; install with: {INSTALL_HINT}")
    server = JupyterLab(notebook_dir, tmp_path_factory.mktemp("lab_scratch")).start()
    yield server
    server.stop()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "jupyterlab.log").write_text(server.log())


@pytest.fixture(scope="session")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=find_chromium(),
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()
