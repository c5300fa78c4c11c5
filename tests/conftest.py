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
