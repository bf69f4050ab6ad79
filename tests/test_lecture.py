"""The lecture's experiments (experiments/lecture/): each runs through its one command
at the smoke budget, the page is rebuilt from the results files alone, and the data
selection they rely on (a class subset, a fixed number of images per class) is exact."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, one_host_device_flags
from flaxcnn import data as data_lib
from flaxcnn.config import default_config
from flaxcnn.sweep import load_module

LECTURE = os.path.join(ROOT, "experiments", "lecture")
claims = load_module(os.path.join(LECTURE, "claims.py"))
SWEEP_CLAIMS = ("overfitting", "depth", "transfer", "segmentation")


def _digits(**data):
  c = default_config()
  c.data.source, c.data.validation_size = "digits", 180
  for k, v in data.items():
    c.data[k] = v
  return c


def test_classes_are_relabelled_and_train_per_class_is_a_fixed_subset():
  full = data_lib.load(_digits())
  d = data_lib.load(_digits(classes=(7, 2, 5), train_per_class=20))
  assert d.num_classes == 3 and d.class_names == ("7", "2", "5")
  assert np.bincount(d.splits["train"].labels).tolist() == [20, 20, 20]
  for name in ("validation", "test"):   # every example of those classes, relabelled
    labels = full.splits[name].labels
    kept = labels[np.isin(labels, (7, 2, 5))]
    assert np.array_equal(d.splits[name].labels, [{7: 0, 2: 1, 5: 2}[x] for x in kept])
  # the subset is fixed (not the run's seed) and its statistics are its own
  other_seed = _digits(classes=(7, 2, 5), train_per_class=20)
  other_seed.seed = 3
  again = data_lib.load(other_seed)
  assert np.array_equal(again.splits["train"].images, d.splits["train"].images)
  assert d.mean != full.mean


@pytest.mark.parametrize("data, message", [
    (dict(classes=(3, 10)), "config.data.classes"),
    (dict(classes=(3, 3)), "each class at most once"),
    (dict(train_per_class=1000), "class 0 has only"),
])
def test_impossible_selections_are_one_line(data, message):
  with pytest.raises(ValueError, match=message):
    data_lib.load(_digits(**data))


def _tiny_cifar(root, per_class=10):
  rng = np.random.RandomState(0)
  for c in range(10):
    folder = root / "train" / f"class{c}"
    folder.mkdir(parents=True)
    for i in range(per_class):
      Image.fromarray(rng.randint(0, 256, (32, 32, 3), np.uint8)).save(folder / f"{i}.png")
  return root


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  """Every training claim through `run.py --budget=smoke` on a tiny CIFAR-like folder."""
  tmp = tmp_path_factory.mktemp("lecture")
  env = dict(os.environ, FLAXCNN_CIFAR10_JPEG=str(_tiny_cifar(tmp / "cifar")),
             FLAXCNN_CACHE=str(tmp / "cache"), XLA_FLAGS=one_host_device_flags(),
             MPLBACKEND="Agg")
  out = tmp / "docs" / "lecture"
  proc = subprocess.run([sys.executable, os.path.join(LECTURE, "run.py"), *SWEEP_CLAIMS,
                         "--budget=smoke", "--seeds=1", f"--workdir={tmp / 'runs'}",
                         f"--out={out}"], env=env, cwd=tmp, capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return tmp, out, proc.stdout


def test_every_claim_runs_through_its_command_and_lands_on_the_page(smoke):
  tmp, out, stdout = smoke
  page = (tmp / "docs" / "lecture.md").read_text()
  for key in SWEEP_CLAIMS:
    result = json.loads((out / f"{key}.json").read_text())
    assert result["complete"] and result["finished"] == result["runs"] > 0, key
    assert result["verdict"] in ("shown", "not shown at this budget")
    assert (out / f"{key}.png").stat().st_size > 0
    claim = next(c for c in claims.CLAIMS if c.key == key)
    assert f"## {claim.title}" in page and f"python experiments/lecture/run.py {key}" in page
  transfer = json.loads((out / "transfer.json").read_text())
  assert {r["arm"] for r in transfer["runs_detail"]} == set(claims.TRANSFER_ARMS)
  # the fine-tuned arms start from the backbone with a new head (other classes)
  assert "fresh: params/head/bias, params/head/kernel" in stdout
  assert (out / "segmentation_masks.png").exists() and "segmentation_masks.png" in page
  # a claim not run is listed with its command
  assert "## Not run yet" in page and "run.py compute" in page


def test_the_page_is_rebuilt_from_the_results_files_alone(smoke, tmp_path):
  tmp, out, _ = smoke
  copy = tmp_path / "lecture"
  copy.mkdir()
  for f in out.iterdir():
    if f.suffix in (".json", ".csv"):
      (copy / f.name).write_bytes(f.read_bytes())
  subprocess.run([sys.executable, os.path.join(LECTURE, "run.py"), "--page_only",
                  f"--out={copy}"], check=True, capture_output=True, env=dict(
                      os.environ, MPLBACKEND="Agg"))
  assert (tmp_path / "lecture.md").read_text() == (tmp / "docs" / "lecture.md").read_text()
  assert {f.name for f in copy.glob("*.png")} >= {f"{k}.png" for k in SWEEP_CLAIMS
                                                   if k != "segmentation"} | {
                                                       "segmentation.png"}


def test_compute_claim_judges_the_benchmarks_figures(tmp_path):
  (tmp_path / "stochastic_depth.json").write_text(json.dumps(
      {"model": "resnet110_cifar", "batch": 32, "p_L": [1.0, 0.5], "ratio": [1.0, 0.97],
       "expected": [1.0, 0.75], "seconds": 10}))
  (tmp_path / "densenet_memory.json").write_text(json.dumps(
      {"model": "densenet_bc_100_12", "batch": 64, "seconds": 5, "variants": {
          "plain": {"temp_bytes": 100, "step_s": 1.0},
          "memory_efficient": {"temp_bytes": 40, "step_s": 1.3}}}))
  result, _ = claims.collect_compute(str(tmp_path))
  assert result["complete"] and result["verdict"] == "not shown at this budget"
  assert result["checks"] == {
      "per-batch stochastic depth at p_L=0.5 saves time (step <= 0.85x)": False,
      "memory-efficient DenseNet needs less memory": True}
  assert "0.97x" in result["saw"] and "0.40x" in result["saw"]


def test_the_notebook_draws_the_same_figures(smoke, monkeypatch):
  nbclient = pytest.importorskip("nbclient")
  pytest.importorskip("ipykernel")
  import nbformat
  _, out, _ = smoke
  monkeypatch.setenv("FLAXCNN_LECTURE_DIR", str(out))
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  nb = nbformat.read(os.path.join(ROOT, "experiments", "notebooks", "lecture.ipynb"),
                     as_version=4)
  nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": ROOT}}).execute()
  outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
  assert not [o for o in outputs if o["output_type"] == "error"]
  assert sum("image/png" in o.get("data", {}) for o in outputs) == len(SWEEP_CLAIMS)
