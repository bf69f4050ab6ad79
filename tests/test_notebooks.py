"""The notebooks in experiments/notebooks run top to bottom (at their tiny defaults,
on the digits) and are committed without outputs."""
import json
import os

import nbformat
import pytest

from conftest import ROOT

nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = os.path.join(ROOT, "experiments", "notebooks")


def _outputs(nb, output_type=None, mime=None):
  for cell in nb.cells:
    for out in cell.get("outputs", []):
      if output_type and out["output_type"] != output_type:
        continue
      if mime and mime not in out.get("data", {}):
        continue
      yield out


@pytest.mark.parametrize("name", ["sweep.ipynb", "results.ipynb", "lecture.ipynb"])
def test_notebooks_are_committed_without_outputs(name):
  nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def _execute(name, cwd, timeout=600):
  nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
  client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                   resources={"metadata": {"path": str(cwd)}})
  client.execute()
  return nb


def test_sweep_and_results_notebooks_run(tmp_path, monkeypatch, cache_env):
  sweep_dir = tmp_path / "digits_depth"
  monkeypatch.setenv("FLAXCNN_SWEEP_DIR", str(sweep_dir))
  monkeypatch.setenv("FLAXCNN_RESULTS_DIR", str(sweep_dir))
  monkeypatch.setenv("FLAXCNN_SWEEP_DATA", "digits")
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))

  nb = _execute("sweep.ipynb", tmp_path)
  assert not list(_outputs(nb, "error"))
  assert len(list(_outputs(nb, mime="image/png"))) >= 2            # curves, error vs depth
  tables = [o["data"]["text/markdown"] for o in _outputs(nb, mime="text/markdown")]
  assert any("| depth | test error (%)" in t and "±" in t for t in tables)
  assert any("underfit" in t and "overfit" in t for t in tables)
  names = sorted(d for d in os.listdir(sweep_dir)
                 if os.path.isdir(sweep_dir / d) and not d.startswith("."))   # .submitit
  assert names == ["depth=14,seed=0", "depth=14,seed=1", "depth=8,seed=0", "depth=8,seed=1"]
  for d in names:
    assert (sweep_dir / d / "summary.json").exists()
    assert json.loads((sweep_dir / d / "variant.json").read_text())["launcher"] == "local"
  for f in ("results.md", "results.csv", "curves.png", "test_error_vs_depth.png"):
    assert (sweep_dir / f).stat().st_size > 0, f
  summaries = {d: (sweep_dir / d / "summary.json").stat().st_mtime for d in names}

  nb = _execute("results.ipynb", tmp_path)
  assert not list(_outputs(nb, "error"))
  assert len(list(_outputs(nb, mime="image/png"))) >= 3
  text = "".join(o.get("text", "") for o in _outputs(nb, "stream"))
  assert "lowest mean final_test_error" in text
  # It loaded the finished sweep; it did not train again.
  assert {d: (sweep_dir / d / "summary.json").stat().st_mtime for d in names} == summaries
