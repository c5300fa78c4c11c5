import pytest
import torch

from nbsyn import presets, runtime
from nbsyn.presets import Config, resolve, validate_table


def test_seed_everything_makes_torch_numpy_python_repeat():
    import random

    import numpy as np

    runtime.seed_everything(3)
    a = (torch.rand(3), np.random.rand(3), random.random())
    runtime.seed_everything(3)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all() and a[2] == b[2]


def test_pick_device_auto_and_errors():
    assert runtime.pick_device("cpu").type == "cpu"
    assert runtime.pick_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        runtime.pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            runtime.pick_device("cuda")


def test_setup_prints_banner_with_versions(capsys):
    threads = torch.get_num_threads()
    try:
        dev = runtime.setup(0, "cpu", threads=1)
        out = capsys.readouterr().out
        assert dev.type == "cpu" and "torch " + torch.__version__ in out and "threads 1" in out
    finally:
        torch.set_num_threads(threads)


TABLE = {
    name: {"seed": 0, "iterations": it, "image_size": 32, "batch_size": 4, "dataset": "scenes",
           "time_budget_s": None, "lr": 1e-4}
    for name, it in [("smoke", 2), ("cpu", 100), ("gpu", 1000), ("paper", 10000)]
}


@pytest.fixture
def toy_notebook(monkeypatch):
    import types
    import sys

    module = types.ModuleType("nbsyn_test_presets")
    module.PRESETS = TABLE
    monkeypatch.setitem(sys.modules, "nbsyn_test_presets", module)
    monkeypatch.setitem(presets.NOTEBOOKS, "99_test", "nbsyn_test_presets")
    return "99_test"


def test_resolve_applies_overrides_and_ignores_none(toy_notebook):
    cfg = resolve(toy_notebook, "cpu", iterations=7, image_size=None, lr="0.5")
    assert cfg.iterations == 7 and cfg.image_size == 32 and cfg.lr == 0.5 and cfg.preset == "cpu"
    assert cfg["dataset"] == "scenes" and isinstance(cfg, Config)


def test_resolve_coerces_numbers_from_papermill(toy_notebook):
    assert resolve(toy_notebook, "smoke", iterations=12.0).iterations == 12
    with pytest.raises(ValueError, match="whole number"):
        resolve(toy_notebook, "smoke", iterations=1.5)
    with pytest.raises(ValueError, match="needs a number"):
        resolve(toy_notebook, "smoke", iterations="many")


def test_unknown_preset_lists_valid_ones(toy_notebook):
    with pytest.raises(ValueError, match=r"unknown preset 'fast'.*smoke, cpu, gpu, paper"):
        resolve(toy_notebook, "fast")


def test_unknown_override_lists_valid_settings(toy_notebook):
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['iters'\].*iterations"):
        resolve(toy_notebook, "cpu", iters=3)


def test_unknown_notebook():
    with pytest.raises(ValueError, match="unknown notebook"):
        resolve("42_nothing", "cpu")


def test_config_is_read_only(toy_notebook):
    cfg = resolve(toy_notebook, "smoke")
    with pytest.raises(AttributeError, match="read-only"):
        cfg.iterations = 3
    with pytest.raises(AttributeError, match="no setting 'iters'"):
        cfg.iters


def test_auto_preset_follows_cuda(toy_notebook):
    expected = "gpu" if torch.cuda.is_available() else "cpu"
    assert resolve(toy_notebook, "auto").preset == expected


def test_validate_table_catches_inconsistent_presets():
    broken = {k: dict(v) for k, v in TABLE.items()}
    del broken["gpu"]["lr"]
    with pytest.raises(ValueError, match="differs from 'smoke'"):
        validate_table("x", broken)
    with pytest.raises(ValueError, match="exactly"):
        validate_table("x", {"smoke": TABLE["smoke"]})
    no_seed = {k: {kk: vv for kk, vv in v.items() if kk != "seed"} for k, v in TABLE.items()}
    with pytest.raises(ValueError, match="required keys"):
        validate_table("x", no_seed)


@pytest.mark.parametrize("notebook", sorted(presets.NOTEBOOKS))
def test_registered_tables_are_consistent(notebook):
    import importlib.util

    # a registered notebook whose module (or PRESETS table) is missing is an error, not a skip
    assert importlib.util.find_spec(presets.NOTEBOOKS[notebook]) is not None, \
        f"{notebook} is registered in nbsyn.presets.NOTEBOOKS but {presets.NOTEBOOKS[notebook]} does not exist"
    table = presets.table(notebook)
    assert table["smoke"]["iterations"] <= table["cpu"]["iterations"] <= table["paper"]["iterations"]


def test_a_registered_notebook_without_module_or_table_fails(monkeypatch):
    import sys
    import types

    monkeypatch.setitem(presets.NOTEBOOKS, "98_missing", "nbsyn.models.no_such_module")
    with pytest.raises(ModuleNotFoundError):
        presets.table("98_missing")
    monkeypatch.setitem(sys.modules, "nbsyn_test_no_table", types.ModuleType("nbsyn_test_no_table"))
    monkeypatch.setitem(presets.NOTEBOOKS, "98_missing", "nbsyn_test_no_table")
    with pytest.raises(ValueError, match="defines no PRESETS"):
        presets.table("98_missing")


def test_thread_count_precedence(monkeypatch):
    threads = torch.get_num_threads()
    try:
        monkeypatch.setenv("NBSYN_THREADS", "1")
        assert runtime.set_threads() == 1 and runtime.set_threads(2) == 2
        monkeypatch.delenv("NBSYN_THREADS")
        monkeypatch.setattr(runtime.os, "cpu_count", lambda: 8)
        for load in (0.0, 99.0):  # the load never changes the thread count (it would change results)
            monkeypatch.setattr(runtime.os, "getloadavg", lambda load=load: (load, load, load))
            assert runtime.set_threads() == 2
        monkeypatch.setattr(runtime.os, "cpu_count", lambda: 1)
        assert runtime.set_threads() == 1
    finally:
        torch.set_num_threads(threads)
