"""The notebooks run top to bottom on the recorded strong-model answers, as a user would open them."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SHOWS = {  # what each notebook must show on real answers, somewhere in its outputs
    "01_quickstart.ipynb": ["-> accepted at judge", "-> call "],
    "02_compile_and_compare.ipynb": ["complexity          mean / median   (paper after refinement)", "<Figure size 1100x300"],
    "03_synthesizer.ipynb": ["lm_calls / accepted"],
}


@pytest.mark.parametrize("name", ["01_quickstart.ipynb", "02_compile_and_compare.ipynb", "03_synthesizer.ipynb"])
def test_notebook_runs_and_ends_in_a_table_or_plot(name, tmp_path, monkeypatch):
    monkeypatch.setenv("GEM_SYNTH_OUT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code"), "outputs must be stripped"
    NotebookClient(book, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    last = [c for c in book.cells if c.cell_type == "code"][-1]
    kinds = {o.get("output_type") for o in last.outputs}
    data = {k for o in last.outputs for k in o.get("data", {})}
    assert "error" not in kinds
    assert data & {"text/html", "image/png"} or any("|" in o.get("text", "") or "lm_calls" in o.get("text", "")
                                                     for o in last.outputs), f"{name} ends without a table or plot"
    shown = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                      for c in book.cells if c.cell_type == "code" for o in c.outputs)
    for needle in SHOWS[name]:
        assert needle in shown, f"{name} does not show {needle!r}"
