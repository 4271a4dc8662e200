"""notebooks/rldarts_colab.ipynb runs top to bottom on a CPU with a tiny parameter set
(injected after its `parameters` cell, as papermill does) and shows its plots; the
committed file carries no outputs."""

import json
import os
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from tests._binaries import ROOT

NOTEBOOK = os.path.join(ROOT, "notebooks", "rldarts_colab.ipynb")
KERNEL = "rldarts-test-python"  # this interpreter, whatever kernels the machine knows


def _tagged(nb, tag):
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}"
    return cells[0]


def _images(cell):
    return [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]


def _text(cell):
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


def test_committed_notebook_is_stripped_and_ordered():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), (
        "strip the outputs before committing"
    )
    tags = [c.metadata.get("tags", [None])[0] for c in code]
    assert tags == [
        "install",
        "parameters",
        "devices",
        "search",
        "search-plots",
        "retrain",
        "learning-curves",
    ]
    assert "experiment.run(" in _tagged(nb, "search").source  # the library, not a shell
    assert "import rldarts" in _tagged(nb, "install").source  # skipped when importable


@pytest.fixture
def kernel_dir(tmp_path, monkeypatch):
    """A kernelspec running this interpreter, found first (JUPYTER_PATH precedes the
    user's and the system's kernel dirs)."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "rldarts test",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return tmp_path


def test_notebook_runs_top_to_bottom_with_tiny_parameters(kernel_dir):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    runs = kernel_dir / "runs"
    parameters = f'GAME = "starpilot"\nPRESET = "smoke"\nSTEPS = 512\nROOT = {str(runs)!r}\n'
    injected = nbformat.v4.new_code_cell(parameters, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(nb.cells.index(_tagged(nb, "parameters")) + 1, injected)

    NotebookClient(
        nb, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(kernel_dir)}}
    ).execute()

    assert "512 env steps" in _text(_tagged(nb, "search"))
    plots = _tagged(nb, "search-plots")
    cell_pngs = sorted(os.listdir(runs / "search_smoke_starpilot" / "cells"))
    cell_pngs = [name for name in cell_pngs if name.endswith(".png")]
    assert cell_pngs, "the search wrote no cell diagrams"
    # the alpha evolution plot, then every cell diagram, inline
    assert len(_images(plots)) == 1 + len(cell_pngs)
    assert "normal: n0 <- " in _text(plots) and "episode_return_train" in _text(plots)
    for name in ("train_cell_smoke_starpilot", "train_impala_smoke_starpilot"):
        assert (runs / name / "metrics.csv").exists()
    curves = _tagged(nb, "learning-curves")
    assert len(_images(curves)) == 1, curves.get("outputs")
