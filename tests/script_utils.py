"""Load a stand-alone script (data_scripts/*.py, fixture makers) as a module, so tests can call it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_SCRIPTS = ROOT / "data_scripts"


def load_module(path: Path, name: str | None = None):
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_data_script(name: str):
    """``data_scripts/<name>.py`` as a module."""
    return load_module(DATA_SCRIPTS / f"{name}.py", name)
