import json
import platform

import numpy as np
import pytest
import torch

from nbsyn.presets import Config
from nbsyn.reproduce import build_report, check, compare_value, main, record_results, run_notebook


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
    text = build_report(tmp_path, runs, "smoke", reference_dir=tmp_path / "no_references").read_text()
    assert "| 00_ok | ok | 1.0 | smoke: image_size=32, iterations=10 | no reference |" in text
    assert "| e | FID | unavailable | - | 28.3 | - |" in text
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


# ----------------------------------------------------------------------------- reference results and --check
def write_run(root, name, rows, complete=True, **changes):
    """A synthetic metrics.json in root/name (what a notebook writes), optionally edited afterwards."""
    path = record_results(root / name, name, CFG, rows, complete=complete)
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return {"notebook": name, "status": "ok", "error": None, "seconds": 30, "out_dir": root / name}


REF_ROWS = [row(metric="mIoU", ours=0.5), row(metric="steps", ours=300), row(metric="copies", ours="0.5 ± 0.1"),
            row(metric="FID", ours=None), row(metric="spread", ours=0.40, tol=0.05)]


@pytest.fixture
def reference(tmp_path):
    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    write_run(tmp_path / "ref_run", "00_x", REF_ROWS)
    (ref_dir / "00_x.json").write_text((tmp_path / "ref_run" / "00_x" / "metrics.json").read_text())
    return ref_dir


def test_compare_value_tolerances():
    assert compare_value(0.5, 0.5 * (1 + 5e-7)) == (True, "1e-06 relative")
    assert not compare_value(0.5, 0.5 * (1 + 2e-6))[0]
    assert compare_value(0.5, 0.51, same_env=False)[0] and not compare_value(0.5, 0.53, same_env=False)[0]
    assert compare_value(0.5, 0.6, tol=0.1)[0] and not compare_value(0.5, 0.61, tol=0.1)[0]
    assert not compare_value(300, 301, same_env=False)[0]  # integers: exact, whatever the environment
    assert compare_value("a ± b", "a ± b")[0] and not compare_value("0.5 ± 0.1", "0.5 ± 0.2")[0]
    assert compare_value(None, None)[0] and not compare_value(None, 0.5)[0] and not compare_value("0.5", 0.5)[0]


def test_check_passes_when_every_metric_matches(tmp_path, reference):
    run = write_run(tmp_path / "run", "00_x", REF_ROWS)
    lines = []
    assert check([run], reference, out=lines.append)
    assert lines == ["5 of 5 metrics match the reference run"]
    text = build_report(tmp_path / "run", [run], "cpu", reference).read_text()
    assert "| toy | mIoU | 0.5 | 0.5 | - | ok |" in text and "**5 of 5 metrics match the reference run**" in text


def test_check_reports_each_drifted_metric(tmp_path, reference):
    drifted = [row(metric="mIoU", ours=0.52), row(metric="steps", ours=300), row(metric="copies", ours="24.3 ± 1.0"),
               row(metric="FID", ours=None), row(metric="spread", ours=0.44, tol=0.05)]  # within its own tol
    run = write_run(tmp_path / "run", "00_x", drifted)
    lines = []
    assert not check([run], reference, out=lines.append)
    assert lines == ["CHECK 00_x: drift: toy | mIoU: this run 0.52, reference 0.5 (1e-06 relative)",
                     "CHECK 00_x: drift: toy | copies: this run 24.3 ± 1.0, reference 0.5 ± 0.1 (exact)",
                     "3 of 5 metrics match the reference run; check FAILED"]
    text = build_report(tmp_path / "run", [run], "cpu", reference).read_text()
    assert "| toy | mIoU | 0.52 | 0.5 | - | **DRIFT** (1e-06 relative) |" in text
    assert "| 00_x | ok | 0.5 | cpu: image_size=32, iterations=10, batch_size=4, dataset=scenes | 3 of 5 match |" in text
    # in another environment (other thread count) floats get the looser default: 0.52 is within 5 %
    run = write_run(tmp_path / "run2", "00_x", drifted, threads=99)
    lines = []
    assert not check([run], reference, out=lines.append) and len(lines) == 2 and "copies" in lines[0]


def test_check_flags_missing_rows_and_config_changes(tmp_path, reference):
    run = write_run(tmp_path / "run", "00_x", REF_ROWS[:4] + [row(metric="new", ours=1.0)],
                    config={**CFG.as_dict(), "iterations": 20})
    lines = []
    assert not check([run], reference, out=lines.append)
    assert any("config differs" in line and "iterations 20 (reference 10)" in line for line in lines)
    assert any("toy | new: this run 1, reference unavailable (not in the reference)" in line for line in lines)
    assert any("toy | spread: this run unavailable, reference 0.4 (missing in this run)" in line for line in lines)


def test_check_fails_without_a_reference(tmp_path):
    run = write_run(tmp_path / "run", "00_x", REF_ROWS)
    lines = []
    assert not check([run], tmp_path / "empty_reference", out=lines.append)
    assert "no reference results" in lines[0]
    text = build_report(tmp_path / "run", [run], "cpu", tmp_path / "empty_reference").read_text()
    assert "| no reference |" in text and "Not compared with a reference" in text


def test_incomplete_run_is_marked_and_not_compared(tmp_path, reference):
    run = write_run(tmp_path / "run", "00_x", REF_ROWS, complete=False)
    lines = []
    assert not check([run], reference, out=lines.append)
    assert "INCOMPLETE" in lines[0] and lines[-1] == "0 of 0 metrics match the reference run; check FAILED"
    text = build_report(tmp_path / "run", [run], "cpu", reference).read_text()
    assert "| 00_x | ok **INCOMPLETE** |" in text and "**INCOMPLETE**: a wall-clock guard" in text
    assert "| toy | mIoU | 0.5 | - | - | - |" in text  # shown, but no comparison


def test_check_fails_for_a_failed_notebook_and_another_preset(tmp_path, reference):
    run = write_run(tmp_path / "run", "00_x", REF_ROWS, preset="smoke")
    lines = []
    assert not check([run], reference, out=lines.append) and "'cpu' run, this one is 'smoke'" in lines[0]
    lines = []
    failed = {"notebook": "00_x", "status": "failed", "error": "ValueError: boom", "seconds": 1, "out_dir": tmp_path / "none"}
    assert not check([failed], reference, out=lines.append)
    assert lines[:2] == ["CHECK 00_x: the notebook failed: ValueError: boom",
                         "CHECK 00_x: no metrics.json: the notebook recorded no results"]


def test_recheck_exit_code(tmp_path, reference, capsys):
    name = "00_gan_foundations"
    write_run(tmp_path / "run", name, REF_ROWS)
    (reference / f"{name}.json").write_text((tmp_path / "run" / name / "metrics.json").read_text())
    args = ["--recheck", str(tmp_path / "run"), "--only", name, "--reference", str(reference)]
    assert main(args) == 0 and "5 of 5 metrics match" in capsys.readouterr().out
    write_run(tmp_path / "run", name, [row(metric="mIoU", ours=0.1)] + REF_ROWS[1:])
    assert main(args) == 1 and "drift: toy | mIoU: this run 0.1, reference 0.5" in capsys.readouterr().out


# ----------------------------------------------------------------------------- progress
def test_run_notebook_logs_each_code_cell_with_elapsed_time(tmp_path):
    import re

    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# title"),
                nbformat.v4.new_code_cell("preset = 'auto'\nout_dir = 'x'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\n\n# train the model\nx = 41"),
                nbformat.v4.new_code_cell("assert preset == 'smoke' and x + 1 == 42")]
    source = tmp_path / "99_tiny.ipynb"
    nbformat.write(nb, source)
    lines = []
    run = run_notebook(source, tmp_path / "out", "smoke", label="notebook 2/3", log=lines.append)
    assert run["status"] == "ok", run["error"]
    # the parameters cell, the cell papermill injects after it, and the two code cells; no markdown
    assert len(lines) == 4, lines
    pattern = r"\[notebook 2/3 99_tiny\] cell (\d)/4  \(notebook \dm\d\ds, total \dm\d\ds\)  (.*)"
    parsed = [re.fullmatch(pattern, line).groups() for line in lines]
    assert [j for j, _ in parsed] == ["1", "2", "3", "4"]
    assert parsed[2][1] == "# train the model" and parsed[3][1].startswith("assert preset")


# ----------------------------------------------------------------------------- --device
def test_device_option_reaches_every_notebook(tmp_path, monkeypatch):
    from nbsyn import reproduce

    calls = []

    def fake_run(path, out_root, preset, extra=None, **kwargs):
        calls.append((path.stem, preset, extra))
        return {"notebook": path.stem, "status": "ok", "error": None, "seconds": 1.0, "out_dir": out_root / path.stem}

    monkeypatch.setattr(reproduce, "run_notebook", fake_run)
    names = ["00_gan_foundations", "01_oasis"]
    assert main(["--preset", "smoke", "--device", "cpu", "--only", *names, "--out", str(tmp_path)]) == 0
    assert calls == [(n, "smoke", {"device": "cpu"}) for n in names]
    calls.clear()
    assert main(["--preset", "smoke", "--only", *names, "--out", str(tmp_path)]) == 0
    assert calls == [(n, "smoke", {}) for n in names]  # without --device the notebooks keep their own (auto)
    with pytest.raises(SystemExit):
        main(["--device", "tpu", "--out", str(tmp_path)])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):  # asked for CUDA without one: stop before any notebook runs
            main(["--device", "cuda", "--out", str(tmp_path)])
    assert len(calls) == 2


def test_notebook_tests_take_their_device_from_the_environment(monkeypatch):
    import papermill

    import notebook_utils

    seen = {}
    monkeypatch.setattr(papermill, "execute_notebook", lambda src, dest, parameters, **kw: seen.update(parameters))
    monkeypatch.setenv("NBSYN_TEST_DEVICE", "cuda")
    notebook_utils.run_papermill("a.ipynb", "b.ipynb", preset="smoke")
    assert seen == {"preset": "smoke", "device": "cuda"}
    seen.clear()
    monkeypatch.delenv("NBSYN_TEST_DEVICE")
    notebook_utils.run_papermill("a.ipynb", "b.ipynb", preset="smoke")
    assert seen == {"preset": "smoke"}


# ----------------------------------------------------------------------------- out_dir
def test_resolve_out_dir_is_relative_to_the_repository_not_the_kernel_cwd(tmp_path, monkeypatch):
    from pathlib import Path

    from nbsyn.reproduce import ROOT, resolve_out_dir

    assert (ROOT / "nbsyn" / "reproduce.py").exists() and (ROOT / "notebooks").is_dir()
    monkeypatch.chdir(ROOT / "notebooks")  # where JupyterLab starts the kernel
    assert resolve_out_dir("runs/latest/01_oasis") == ROOT / "runs" / "latest" / "01_oasis"
    monkeypatch.chdir(tmp_path)
    assert resolve_out_dir(Path("runs/x")) == ROOT / "runs" / "x"
    assert resolve_out_dir(tmp_path / "abs") == tmp_path / "abs"  # absolute paths are kept
    assert resolve_out_dir("~/runs").is_absolute() and resolve_out_dir("~/runs") == Path.home() / "runs"
