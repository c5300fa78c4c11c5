"""The benchmark runs (tiny sizes, no timing assertions) and its AMP / precision plumbing."""

import math

import pytest
import torch

from nbsyn import bench


@pytest.mark.parametrize("model", bench.MODELS)
def test_every_model_steps_at_a_tiny_size(model):
    row = bench.measure(model, "tiny", steps=1, warmup=0)
    assert row["model"] == model and row["finite"]
    assert row["s_per_step"] > 0 and math.isfinite(row["peak_mib"])


def test_command_line_prints_a_table(capsys):
    rows = bench.main(["--models", "dcgan", "--sizes", "tiny", "--steps", "1", "--warmup", "0"])
    out = capsys.readouterr().out
    assert len(rows) == 1 and "error" not in rows[0], rows
    assert "| dcgan | tiny |" in out and "load average" in out


def test_bad_choices_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model"):
        bench.build("nope", "tiny")
    with pytest.raises(ValueError, match="CUDA"):
        bench.build("oasis", "tiny", amp="fp16")
    with pytest.raises(SystemExit):
        bench.main(["--models", "nope"])
