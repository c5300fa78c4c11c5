"""nbval must catch a changed output in a marked cell (and ignore unmarked ones in lax mode)."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from notebook_utils import run_nbval, run_papermill


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nbval")
    nb = new_notebook(cells=[
        new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(6 * 7)"),
        new_code_cell("import time\nprint(time.time())"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp / "src.ipynb"
    nbformat.write(nb, src)
    out = tmp / "executed.ipynb"
    run_papermill(src, out)
    return out


def edit_output(path, index, text, dest):
    nb = nbformat.read(path, as_version=4)
    nb.cells[index].outputs[0]["text"] = text
    nbformat.write(nb, dest)
    return dest


def test_unchanged_notebook_passes(executed):
    result = run_nbval(executed)
    assert result.returncode == 0, result.stdout


def test_changed_marked_output_fails(executed, tmp_path):
    result = run_nbval(edit_output(executed, 0, "41\n", tmp_path / "changed.ipynb"))
    assert result.returncode != 0 and "41" in result.stdout


def test_changed_unmarked_output_is_ignored(executed, tmp_path):
    result = run_nbval(edit_output(executed, 1, "yesterday\n", tmp_path / "unmarked.ipynb"))
    assert result.returncode == 0, result.stdout
