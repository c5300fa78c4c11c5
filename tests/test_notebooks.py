"""Every notebook: its .py/.ipynb pair is in sync, it runs end to end with preset=smoke through
papermill, and nbval re-executes the result and reproduces the cells marked NBVAL_CHECK_OUTPUT."""

import json

import jupytext
import nbformat
import pytest

from notebook_utils import CHECK_MARK, notebook_sources, run_nbval, run_papermill

SOURCES = notebook_sources()
IDS = [p.stem for p in SOURCES]


def test_there_are_notebooks():
    assert SOURCES, "no notebooks/NN_name.py found"


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_pair_in_sync_and_committed_without_outputs(source):
    ipynb = source.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `jupytext --sync {source}`"
    from_py = jupytext.read(source)
    stored = nbformat.read(ipynb, as_version=4)
    as_cells = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
    assert as_cells(from_py) == as_cells(stored), f"{ipynb.name} is out of sync with {source.name}: jupytext --sync"
    for cell in stored.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{ipynb.name} is committed with outputs"
    tagged = [c for c in stored.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must carry the papermill 'parameters' tag"
    assert "preset" in tagged[0].source and "out_dir" in tagged[0].source
    assert any(CHECK_MARK in c.source for c in stored.cells), "mark at least one deterministic cell for nbval"
    import papermill

    found = papermill.inspect_notebook(str(ipynb))  # every line of the parameters cell must parse
    assert {"preset", "out_dir"} <= set(found), f"papermill sees only {sorted(found)}"
    assert len(found) == len([line for line in tagged[0].source.splitlines() if "=" in line.split("#")[0]])


@pytest.mark.notebook
@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_smoke_run_then_nbval(source, tmp_path):
    out_dir = tmp_path / source.stem
    executed = tmp_path / f"{source.stem}.ipynb"
    run_papermill(source.with_suffix(".ipynb"), executed, preset="smoke", out_dir=str(out_dir))
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    results = json.loads((out_dir / "metrics.json").read_text())
    assert results["notebook"] == source.stem and results["preset"] == "smoke" and results["rows"]
    assert list((out_dir / "figures").glob("*.png")), "the notebook saved no figures"
    check = run_nbval(executed)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]


@pytest.mark.notebook
@pytest.mark.parametrize("bad,message", [({"preset": "fast"}, "unknown preset 'fast'"),
                                         ({"preset": "smoke", "dataset": "cityscape"}, "unknown dataset 'cityscape'")])
def test_bad_parameters_stop_before_any_training(tmp_path, bad, message):
    import papermill

    source = next(p for p in SOURCES if p.stem == "00_gan_foundations")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "earlier_result.txt").write_text("keep me")
    with pytest.raises(papermill.PapermillExecutionError, match=message):
        run_papermill(source.with_suffix(".ipynb"), tmp_path / "bad.ipynb", out_dir=str(out_dir), **bad)
    assert sorted(p.name for p in out_dir.iterdir()) == ["earlier_result.txt"]  # nothing written, nothing lost
    assert (out_dir / "earlier_result.txt").read_text() == "keep me"
