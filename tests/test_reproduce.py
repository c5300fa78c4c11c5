import json

import pytest

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
