"""The shipped reference models: files and hashes, recorded metrics re-measured, deterministic and
resumable training, clear errors for missing or corrupt files."""

import json
import shutil

import pytest
import torch

from nbsyn import pretrained

SHIPPED = pretrained.available(pretrained.ROOT / "pretrained")
# Metrics are re-measured from the shipped fp16 file with the code that measured them; on the same
# torch version and thread count they agree to the 4 decimals the manifest keeps. Another torch build
# or thread count may change the last digits (float summation order), hence the small tolerance.
METRIC_TOLERANCE = 5e-3


def test_every_registered_model_is_shipped():
    missing = sorted(set(pretrained.REGISTRY) - set(SHIPPED))
    assert not missing, f"not shipped: {missing}; train them with python -m nbsyn.pretrained train NAME"


def test_shipped_files_are_small_enough():
    total = sum((pretrained.ROOT / "pretrained" / f"{n}.pt").stat().st_size for n in SHIPPED)
    assert total <= 30e6, f"shipped reference models take {total / 1e6:.1f} MB (limit 30 MB)"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_file_loads_weights_only_and_matches_its_hash(name):
    folder = pretrained.ROOT / "pretrained"
    record = pretrained.read_manifest(folder)[name]
    path = folder / f"{name}.pt"
    assert pretrained.sha256_of(path) == record["sha256"]
    states = torch.load(path, map_location="cpu", weights_only=True)
    assert set(states) >= {"G"}
    floats = [v for state in states.values() for v in state.values() if v.is_floating_point()]
    assert floats and all(str(v.dtype) == f"torch.{record['dtype']}" for v in floats)
    # fp16 only where it keeps the outputs within the tolerance (measured at shipping time)
    assert (record["dtype"] == "float16") == (record["fp16_max_abs_diff"] <= pretrained.FP16_TOLERANCE)
    ref = pretrained.load(name, folder=folder)
    assert not any(p.requires_grad for p in ref.G.parameters()) and not ref.G.training
    assert record["steps"] == pretrained.REGISTRY[name].steps, "shipped model did not train its registered steps"


@pytest.mark.parametrize("name", SHIPPED)
def test_recorded_metrics_are_reproduced(name):
    ref = pretrained.load(name, folder=pretrained.ROOT / "pretrained")
    spec = pretrained.entry(name)
    measured = pretrained.RECIPES[spec.kind].evaluate(spec, ref, "cpu")
    assert set(measured) == set(ref.metrics)
    for key, value in ref.metrics.items():
        assert measured[key] == pytest.approx(value, abs=METRIC_TOLERANCE), key


TINY = {"n_train": 16, "n_test": 8}


def _train(tmp_path, tag, steps, resume=True, work=None):
    return pretrained.train("segmenter_scenes32", steps=steps, folder=tmp_path / tag, work=work or tmp_path / f"w_{tag}",
                            resume=resume, progress=False, ckpt_every=1, evaluate_after=False, overrides=TINY)


def test_training_is_deterministic_and_resumes_bit_identically(tmp_path):
    first = _train(tmp_path, "a", 4)
    second = _train(tmp_path, "b", 4)
    assert first["state_sha256"] == second["state_sha256"]
    assert first["sha256"] == second["sha256"]
    _train(tmp_path, "c", 2)  # interrupted after 2 steps ...
    resumed = _train(tmp_path, "c", 4)  # ... and continued from its checkpoint
    assert resumed["state_sha256"] == first["state_sha256"]
    different = pretrained.train("segmenter_scenes32", steps=4, folder=tmp_path / "d", work=tmp_path / "w_d",
                                 progress=False, evaluate_after=False, overrides={**TINY, "lr": 1e-3})
    assert different["state_sha256"] != first["state_sha256"]  # the hash does see the weights


def test_stylegan2_training_is_deterministic(tmp_path):
    runs = [pretrained.train("stylegan2_faces32", steps=2, folder=tmp_path / t, work=tmp_path / f"w{t}", progress=False,
                             evaluate_after=False, overrides={"n_train": 16}) for t in "ab"]
    assert runs[0]["state_sha256"] == runs[1]["state_sha256"]


def test_missing_model_names_the_train_command(tmp_path):
    with pytest.raises(pretrained.PretrainedError, match="python -m nbsyn.pretrained train segmenter_faces32"):
        pretrained.load("segmenter_faces32", folder=tmp_path)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(pretrained.PretrainedError, match="known: .*stylegan2_faces32"):
        pretrained.load("stylegan3_faces")


def test_corrupt_file_is_a_clear_error(tmp_path):
    record = _train(tmp_path, "a", 1)
    path = tmp_path / "a" / "segmenter_scenes32.pt"
    assert pretrained.load("segmenter_scenes32", folder=tmp_path / "a").entry["sha256"] == record["sha256"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(pretrained.PretrainedError, match="corrupt.*train segmenter_scenes32"):
        pretrained.load("segmenter_scenes32", folder=tmp_path / "a")


def test_fp16_storage_keeps_outputs_close(tmp_path):
    record = _train(tmp_path, "a", 3)
    assert record["dtype"] == "float16" and 0 < record["fp16_max_abs_diff"] < pretrained.FP16_TOLERANCE


def test_storage_error_measures_weights_not_random_noise():
    spec = pretrained.entry("oasis_scenes64")  # OASIS draws its own noise when none is given
    G = pretrained.RECIPES["oasis"].build(spec)["G"]
    assert pretrained._fp16_error(spec, {"G": G}, "cpu", dtype=torch.float32) == 0.0


def test_list_command_shows_steps_and_metrics(tmp_path, capsys):
    folder = tmp_path / "shipped"
    shutil.copytree(pretrained.ROOT / "pretrained", folder) if SHIPPED else folder.mkdir()
    assert pretrained.main(["list", "--dir", str(folder)]) == 0
    out = capsys.readouterr().out
    for name, spec in pretrained.REGISTRY.items():
        assert name in out
        if name in SHIPPED:
            record = json.loads((folder / "MANIFEST.json").read_text())[name]
            assert f"{record['steps']} steps" in out
