"""A throw-away JupyterLab server for the browser tests, and where to find Chromium.

The server runs on 127.0.0.1 with a random token and fresh (temporary) config, settings, workspace and
runtime folders, so nothing of the user's JupyterLab setup leaks in or is changed. Kernel messages go
over the legacy JSON websocket protocol, which the tests read to spot errors.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "runs" / "browser"  # screenshots and server logs (runs/ is gitignored)
INSTALL_HINT = "sudo apt-get install -y chromium && .venv/bin/pip install -e '.[dev]'"


def find_chromium() -> str | None:
    """A Chromium/Chrome executable: $NBSYN_CHROMIUM, else the first of chromium, chromium-browser,
    google-chrome on PATH (Playwright's own browser download is not needed)."""
    if os.environ.get("NBSYN_CHROMIUM"):
        return os.environ["NBSYN_CHROMIUM"] if Path(os.environ["NBSYN_CHROMIUM"]).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed"
    if find_chromium() is None:
        return "no chromium executable found"
    return None


def required() -> bool:
    """In CI (CI=1, or NBSYN_REQUIRE_BROWSER=1 from .ci/run) a missing browser is a failure."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("CI", "NBSYN_REQUIRE_BROWSER"))


SETTINGS = {
    # every cell stays in the DOM (JupyterLab 4 otherwise detaches cells scrolled out of view)
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # no news / update pop-ups over the notebook
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """``with JupyterLab(root, tmp) as lab: lab.url("x.ipynb")``; ``lab.log()`` is the server's output."""

    def __init__(self, root: Path, scratch: Path, env: dict | None = None):
        self.root, self.scratch = Path(root), Path(scratch)
        self.token, self.port = secrets.token_hex(16), free_port()
        self.env = dict(os.environ, **(env or {}))
        self.log_path = self.scratch / "jupyterlab.log"
        self.proc = None

    def start(self, timeout: float = 120) -> JupyterLab:
        dirs = {name: self.scratch / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for rel, value in SETTINGS.items():
            path = dirs["settings"] / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        env = dict(self.env, JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
                   JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), IPYTHONDIR=str(dirs["ipython"]),
                   JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]), JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]))
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--port-retries=0", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               f"--LabApp.user_settings_dir={dirs['settings']}", f"--LabApp.workspaces_dir={dirs['workspaces']}",
               "--ZMQChannelsWebsocketConnection.kernel_ws_protocol=", "--LabApp.news_url=",
               "--ServerApp.log_level=INFO", "--allow-root",
               "--LabApp.expose_app_in_browser=True"]  # window.jupyterapp: run commands, read kernel status
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT, env=env, cwd=self.root)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}", timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer within {timeout} s:\n{self.log()[-3000:]}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?token={self.token}&reset"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.base}{path}?token={self.token}", method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:  # shut the kernels down cleanly first
                for kernel in self.api("/api/kernels"):
                    self.api(f"/api/kernels/{kernel['id']}", method="DELETE")
            except OSError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "log_file", None):
            self.log_file.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
