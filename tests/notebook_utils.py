"""Helpers to execute notebooks in tests: papermill for the smoke run, nbval for re-execution."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
SANITIZE = Path(__file__).resolve().parent / "nbval_sanitize.cfg"
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


def notebook_sources() -> list[Path]:
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))


def run_papermill(src: Path, dest: Path, **parameters) -> None:
    """Execute ``src`` into ``dest``; ``NBSYN_TEST_DEVICE`` (e.g. cuda) sets every notebook's device."""
    import papermill

    if os.environ.get("NBSYN_TEST_DEVICE"):
        parameters.setdefault("device", os.environ["NBSYN_TEST_DEVICE"])

    papermill.execute_notebook(str(src), str(dest), parameters=parameters, kernel_name="python3",
                               cwd=str(ROOT), progress_bar=False)


def run_nbval(notebook: Path) -> subprocess.CompletedProcess:
    """Re-execute ``notebook`` with nbval in lax mode: only cells marked NBVAL_CHECK_OUTPUT are compared."""
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with",
           str(SANITIZE), "-p", "no:cacheprovider", "-q", "--rootdir", str(notebook.parent), str(notebook)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
