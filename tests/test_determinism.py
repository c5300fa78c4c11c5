"""Same notebook, preset, seed and thread count -> the same results (issue 10 §2).

The cheapest notebook (00_gan_foundations) runs twice at ``smoke`` through papermill, each run in a
fresh kernel; the result rows in ``metrics.json`` must be identical, not merely close. The kernels
inherit ``NBSYN_THREADS`` (1 under ``./test.sh``).
"""

import json

import pytest

from notebook_utils import NOTEBOOK_DIR, run_papermill

NOTEBOOK = NOTEBOOK_DIR / "00_gan_foundations.ipynb"


@pytest.mark.notebook
def test_a_notebook_run_twice_records_identical_results(tmp_path):
    results = []
    for run in ("a", "b"):
        out_dir = tmp_path / run
        run_papermill(NOTEBOOK, tmp_path / f"{run}.ipynb", preset="smoke", out_dir=str(out_dir))
        results.append(json.loads((out_dir / "metrics.json").read_text()))
    first, second = results
    assert first["rows"], "the notebook recorded no results"
    assert first["threads"] == second["threads"] and first["config"] == second["config"]
    for a, b in zip(first["rows"], second["rows"]):
        assert a == b, f"{a['experiment']} / {a['metric']} differs between two identical runs"
    assert len(first["rows"]) == len(second["rows"])
    assert first["complete"] and second["complete"]
