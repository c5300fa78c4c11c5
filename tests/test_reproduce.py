import json
import platform

import numpy as np
import pytest
import torch

from nbsyn.presets import Config
from nbsyn.reproduce import build_report, main, record_results


def test_record_results_writes_scale_and_rows(tmp_path):
    cfg = Config({"image_size": 32, "iterations": 10, "batch_size": 4, "dataset": "scenes", "seed": 0},
                 notebook="00_x", preset="cpu")
    rows = [{"experiment": "toy", "metric": "mIoU", "ours": 0.5, "paper": 52.1, "note": "n"}]
    path = record_results(tmp_path, "00_x", cfg, rows)
    data = json.loads(path.read_text())
    assert data["preset"] == "cpu" and data["scale"]["image_size"] == 32 and data["rows"] == rows
    with pytest.raises(ValueError, match="lacks"):
        record_results(tmp_path, "00_x", cfg, [{"metric": "x"}])


def test_report_table_links_figures_and_failures(tmp_path):
    ok_dir, bad_dir = tmp_path / "00_ok", tmp_path / "01_bad"
    cfg = Config({"image_size": 32, "iterations": 10}, preset="smoke")
    record_results(ok_dir, "00_ok", cfg, [{"experiment": "e", "metric": "FID", "ours": None, "paper": 28.3}])
    (ok_dir / "figures").mkdir()
    (ok_dir / "figures" / "samples.png").write_bytes(b"")
    bad_dir.mkdir()
    runs = [{"notebook": "00_ok", "status": "ok", "error": None, "seconds": 60, "out_dir": ok_dir},
            {"notebook": "01_bad", "status": "failed", "error": "ValueError: boom", "seconds": 3, "out_dir": bad_dir}]
    text = build_report(tmp_path, runs, "smoke").read_text()
    assert "| 00_ok | ok | 1.0 | smoke: image_size=32, iterations=10 |" in text
    assert "| e | FID | unavailable | 28.3 |" in text
    assert "[samples](00_ok/figures/samples.png)" in text
    assert "| 01_bad | failed |" in text and "**Failed:** `ValueError: boom`" in text


def test_main_rejects_unknown_preset_and_notebook(tmp_path):
    with pytest.raises(SystemExit):
        main(["--preset", "fast", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="unknown notebook"):
        main(["--only", "99_nothing", "--out", str(tmp_path)])


CFG = Config({"image_size": 32, "iterations": 10, "batch_size": 4, "dataset": "scenes", "seed": 0},
             notebook="00_x", preset="cpu")


def row(**kw):
    return {"experiment": "toy", "metric": "m", "ours": 0.5, "paper": "-", "note": "", **kw}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float32("nan"), torch.tensor(float("nan")),
                                 "nan", "0.52 +- nan", "-inf"])
def test_record_results_rejects_non_finite_ours_and_writes_nothing(tmp_path, bad):
    with pytest.raises(ValueError, match="finite"):
        record_results(tmp_path, "00_x", CFG, [row(), row(metric="broken", ours=bad)])
    assert not (tmp_path / "metrics.json").exists()


def test_record_results_rejects_non_finite_paper_number_but_not_text(tmp_path):
    with pytest.raises(ValueError, match="paper is nan"):
        record_results(tmp_path, "00_x", CFG, [row(paper=float("nan"))])
    with pytest.raises(ValueError, match="paper is inf"):
        record_results(tmp_path, "00_x", CFG, [row(paper=float("inf"))])
    # text in the paper column is free (it is not computed); finite numbers, None and words pass in ours
    record_results(tmp_path, "00_x", CFG, [row(paper="72 / 96 / 22"), row(ours=None), row(ours="unavailable"),
                                            row(ours=np.float32(0.25)), row(ours="Inception weights missing")])


def test_record_results_rejects_rows_missing_their_scale(tmp_path):
    no_scale = {"seed": 0, "lr": 1e-3}
    with pytest.raises(ValueError, match=r"has no scale.*image_size.*iterations.*preset"):
        record_results(tmp_path, "00_x", no_scale, [row()])
    with pytest.raises(ValueError, match="has no scale"):  # a preset alone does not say the size / length
        record_results(tmp_path, "00_x", Config(no_scale, preset="cpu"), [row()])
    path = record_results(tmp_path, "00_x", no_scale, [row(scale="64 px, 300 steps")])  # the row says it
    assert json.loads(path.read_text())["rows"][0]["scale"] == "64 px, 300 steps"


def test_record_results_rejects_bad_tolerance(tmp_path):
    for tol in (-0.1, "small", float("nan")):
        with pytest.raises(ValueError, match="tol"):
            record_results(tmp_path, "00_x", CFG, [row(tol=tol)])


def test_record_results_records_environment_and_completeness(tmp_path):
    data = json.loads(record_results(tmp_path, "00_x", CFG, [row()]).read_text())
    assert data["complete"] is True
    assert data["torch"] == torch.__version__ and data["threads"] == torch.get_num_threads()
    assert data["device"] == "cpu" and data["machine"] == platform.platform()
    data = json.loads(record_results(tmp_path, "00_x", CFG, [row()], complete=False, device=torch.device("cpu")).read_text())
    assert data["complete"] is False and data["device"] == "cpu"
    with pytest.raises(ValueError, match="complete"):
        record_results(tmp_path, "00_x", CFG, [row()], complete="no")
