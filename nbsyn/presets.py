"""Presets: one validated configuration per notebook and scale.

Each model module defines ``PRESETS = {"smoke": {...}, "cpu": {...}, "gpu": {...}, "paper": {...}}``
with the same keys in every preset. A notebook asks for its configuration with
``resolve(notebook, preset, **overrides)``; every mistake is reported before any work starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

PRESET_NAMES = ("smoke", "cpu", "gpu", "paper")
REQUIRED_KEYS = ("seed", "iterations", "image_size", "batch_size", "dataset", "time_budget_s")

# notebook name -> module that holds its PRESETS table
NOTEBOOKS = {
    "00_gan_foundations": "nbsyn.models.toy",
    "01_oasis": "nbsyn.models.oasis",
    "02_sivgan": "nbsyn.models.sivgan",
    "03_osmis": "nbsyn.models.osmis",
    "04_stylegan2_ssr": "nbsyn.models.ssr",
    "08_semantic_image_analogy": "nbsyn.models.semia",
    "05_fewshot_sis_stylegan_prior": "nbsyn.models.fewshot_sis",
    "07_sis_unconditional_generator": "nbsyn.models.sis_uncond",
    "06_class_affinity_transfer": "nbsyn.models.cat",
}


class Config(Mapping):
    """A read-only configuration with attribute and item access."""

    def __init__(self, values: Mapping[str, Any], notebook: str = "", preset: str = ""):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "notebook", notebook)
        object.__setattr__(self, "preset", preset)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(
                f"{self.notebook} preset has no setting {key!r}; it has {', '.join(sorted(self._values))}"
            ) from None

    def __setattr__(self, key, value):
        raise AttributeError("Config is read-only; pass overrides to presets.resolve()")

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Config({self.notebook}:{self.preset}: {body})"


def auto_preset() -> str:
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def table(notebook: str) -> dict[str, dict[str, Any]]:
    """The PRESETS table of a registered notebook, checked for consistency."""
    if notebook not in NOTEBOOKS:
        raise ValueError(f"unknown notebook {notebook!r}; known notebooks: {', '.join(NOTEBOOKS)}")
    module = importlib.import_module(NOTEBOOKS[notebook])
    presets = getattr(module, "PRESETS", None)
    if presets is None:
        raise ValueError(f"{NOTEBOOKS[notebook]} defines no PRESETS table for {notebook}")
    validate_table(notebook, presets)
    return presets


def validate_table(notebook: str, presets: Mapping[str, Mapping[str, Any]]) -> None:
    if tuple(sorted(presets)) != tuple(sorted(PRESET_NAMES)):
        raise ValueError(f"{notebook}: PRESETS must define exactly {PRESET_NAMES}, got {tuple(presets)}")
    keys = set(presets["smoke"])
    missing = [k for k in REQUIRED_KEYS if k not in keys]
    if missing:
        raise ValueError(f"{notebook}: presets lack the required keys {missing}")
    for name, values in presets.items():
        if set(values) != keys:
            diff = sorted(set(values) ^ keys)
            raise ValueError(f"{notebook}: preset {name!r} differs from 'smoke' in keys {diff}")


def resolve(notebook: str, preset: str = "auto", **overrides: Any) -> Config:
    """The configuration of ``notebook`` at ``preset``, with ``overrides`` applied.

    ``preset="auto"`` means ``gpu`` when CUDA is present, else ``cpu``. Overrides whose value is
    None are ignored, so papermill parameters can default to None.
    """
    presets = table(notebook)
    name = auto_preset() if preset == "auto" else preset
    if name not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of auto, {', '.join(PRESET_NAMES)}")
    values = dict(presets[name])
    unknown = sorted(k for k in overrides if k not in values)
    if unknown:
        raise ValueError(
            f"unknown override(s) {unknown} for {notebook}; valid settings: {', '.join(sorted(values))}"
        )
    for key, value in overrides.items():
        if value is not None:
            values[key] = _coerce(key, values[key], value)
    return Config(values, notebook=notebook, preset=name)


def _coerce(key: str, default: Any, value: Any) -> Any:
    """Keep the preset's type where it is a number (papermill may pass '64' or 64.0)."""
    if isinstance(default, bool) or default is None or isinstance(value, type(default)):
        return value
    if isinstance(default, (int, float)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"setting {key!r} needs a number, got {value!r}") from None
        if isinstance(default, int):
            if number != int(number):
                raise ValueError(f"setting {key!r} needs a whole number, got {value!r}")
            return int(number)
        return number
    return value
