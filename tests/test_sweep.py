"""Sweeps: declaring variants, running them (skip finished, resume interrupted,
record failures and go on), and the command line (--sweep, --sweep_index,
--list_variants)."""
import json
import os
import shutil
import socket
import subprocess

import pytest

from conftest import ROOT, run_launch, tiny_config, tiny_sweep_file
from flaxcnn import metrics, results, sweep, train

DIGITS_DEPTH = os.path.join(ROOT, "experiments", "ablations", "digits_depth.py")
# The suite's persistent compilation cache (conftest.py), shared with the other tests.
JAX_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"]


def _json(path):
  with open(path) as f:
    return json.load(f)


# ----------------------------------------------------------------------------- declaring

def test_product_zip_chain_and_names():
  grid = sweep.product(sweep.axis("model.kwargs.widen_factor", [1, 2, 4, 8]), sweep.seeds(3))
  assert len(grid) == 12
  assert grid[0] == {"model.kwargs.widen_factor": 1, "seed": 0}
  assert grid[3] == {"model.kwargs.widen_factor": 2, "seed": 0}   # the first axis varies slowest
  zipped = sweep.zip(sweep.axis("model.kwargs.depth", [16, 28]),
                     sweep.axis("model.kwargs.widen_factor", [8, 10]))
  assert zipped == [{"model.kwargs.depth": 16, "model.kwargs.widen_factor": 8},
                    {"model.kwargs.depth": 28, "model.kwargs.widen_factor": 10}]
  with pytest.raises(ValueError, match="different lengths"):
    sweep.zip(sweep.axis("a", [1, 2]), sweep.axis("b", [1]))
  both = sweep.chain([{}], sweep.product(zipped, sweep.seeds(2, start=5)))
  assert len(both) == 5 and both[-1]["seed"] == 6
  assert [sweep.variant_name(o) for o in both[:2]] == ["base", "depth=16,widen_factor=8,seed=5"]
  assert sweep.variant_name({"optimizer.lr": 0.05, "augment.scale_range": (256, 480)}) == \
      "lr=0.05,scale_range=256x480"
  assert sweep.variant_name({"data.root": "/a b/c"}) == "root=_a_b_c"


def test_variants_from_a_file_a_module_and_a_config(tmp_path):
  names = [n for n, _ in sweep.variants(DIGITS_DEPTH)]
  assert names == ["depth=8,seed=0", "depth=8,seed=1", "depth=14,seed=0", "depth=14,seed=1"]
  configs = dict(sweep.variants(DIGITS_DEPTH))
  assert configs["depth=14,seed=1"].model.kwargs.depth == 14
  assert configs["depth=14,seed=1"].seed == 1
  # 'path:arg' as on the command line, and the module itself
  cifar = dict(sweep.variants(DIGITS_DEPTH + ":cifar10_jpeg,seeds=3"))
  assert cifar["depth=8,seed=2"].data.source == "folder" and len(cifar) == 6
  assert len(sweep.variants(DIGITS_DEPTH, "seeds=1")) == 2
  module = sweep.load_module(DIGITS_DEPTH)
  assert [n for n, _ in sweep.variants(module)] == names
  # a base config and a sweep defined in Python (a notebook)
  base = tiny_config()
  lrs = sweep.variants(base, sweep=sweep.axis("optimizer.lr", [0.1, 0.2]))
  assert [(n, c.optimizer.lr) for n, c in lrs] == [("lr=0.1", 0.1), ("lr=0.2", 0.2)]
  assert base.optimizer.lr == 0.05        # the base is not modified
  assert sweep.variants(base)[0][0] == "base"
  with pytest.raises(ValueError, match="appears twice"):
    sweep.variants(base, sweep=[{"seed": 1}, {"seed": 1}])
  with pytest.raises(ValueError, match="optimizer.lrr"):
    sweep.variants(base, sweep=[{"optimizer.lrr": 1.0}])
  with pytest.raises(FileNotFoundError):
    sweep.variants(str(tmp_path / "missing.py"))
  assert sweep.describe(DIGITS_DEPTH).splitlines()[0] == "4 variant(s)"


def test_failed_and_interrupted_variants_are_recorded(tmp_path):
  """A variant that raises is recorded as failed and the sweep goes on; a signal
  (an interrupted summary) stops the sweep; reruns skip what finished."""
  calls, interrupted = [], []

  def fake_train(config, workdir, data_cache):
    calls.append(config.seed)
    if config.seed == 1:
      raise train.NonFiniteLoss("loss is NaN/Inf at step 3;\nlower the lr")
    if config.seed == 3 and not interrupted:
      interrupted.append(3)
      return {"interrupted": True}
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump({"step": 1}, f)
    return {"interrupted": False}

  base = tiny_config()
  seeds = sweep.seeds(5)
  records = sweep.run(base, str(tmp_path), sweep=seeds, train_fn=fake_train,
                      compilation_cache=False)
  assert calls == [0, 1, 2, 3]                      # stopped after the interrupted one
  assert [r["status"] for r in records] == ["finished", "failed", "finished", "interrupted"]
  failed = _json(tmp_path / "seed=1" / "variant.json")
  assert failed["status"] == "failed" and failed["attempts"] == 1
  assert failed["error"] == "NonFiniteLoss: loss is NaN/Inf at step 3; lower the lr"
  assert "Traceback" in (tmp_path / "seed=1" / "error.log").read_text()
  assert _json(tmp_path / "seed=3" / "variant.json")["status"] == "interrupted"
  assert not (tmp_path / "seed=4").exists()
  listed = _json(tmp_path / "sweep.json")
  assert listed["count"] == 5 and [v["name"] for v in listed["variants"]][-1] == "seed=4"
  assert "1 failed" in sweep.summary_line(records)

  calls.clear()
  records = sweep.run(base, str(tmp_path), sweep=seeds, train_fn=fake_train,
                      compilation_cache=False, retry_failed=False)
  assert calls == [3, 4]                            # finished and failed ones skipped
  assert _json(tmp_path / "seed=3" / "variant.json")["attempts"] == 2
  calls.clear()
  sweep.run(base, str(tmp_path), sweep=seeds, train_fn=fake_train, compilation_cache=False,
            index=1)
  assert calls == [1]
  assert _json(tmp_path / "seed=1" / "variant.json")["attempts"] == 2
  with pytest.raises(ValueError, match="out of range.*5 variants"):
    sweep.run(base, str(tmp_path), sweep=seeds, index=5, train_fn=fake_train)
  states = {r["name"]: r["status"] for r in sweep.records(str(tmp_path))}
  assert states == {"seed=0": "finished", "seed=1": "failed", "seed=2": "finished",
                    "seed=3": "finished", "seed=4": "finished"}


def test_a_killed_variant_reads_as_interrupted(tmp_path):
  """variant.json says 'running', but the process that wrote it is gone (SIGKILL)."""
  gone = subprocess.Popen(["true"])
  gone.wait()
  d = tmp_path / "seed=0"
  d.mkdir()
  record = {"name": "seed=0", "status": "running", "host": socket.gethostname()}
  (d / "variant.json").write_text(json.dumps(dict(record, pid=gone.pid)))
  assert sweep.variant_status(str(d))["status"] == "interrupted"
  (d / "variant.json").write_text(json.dumps(dict(record, pid=os.getpid())))
  assert sweep.variant_status(str(d))["status"] == "running"
  (d / "summary.json").write_text("{}")
  assert sweep.variant_status(str(d))["status"] == "finished"
  assert sweep.variant_status(str(tmp_path / "never"))["status"] == "pending"


def test_sweep_trains_skips_finished_resumes_interrupted_and_survives_a_bad_variant(
    tmp_path, cache_env):
  base = tiny_config(num_steps=8, checkpoint_every_steps=4, log_every_steps=1)
  plan = [{"model.kwargs.depth": 8, "seed": 0}, {"model.kwargs.depth": 9, "seed": 0},
          {"model.kwargs.depth": 8, "seed": 1}]
  records = sweep.run(base, str(tmp_path), sweep=plan, compilation_cache=JAX_CACHE)
  assert [(r["name"], r["status"]) for r in records] == [
      ("depth=8,seed=0", "finished"), ("depth=9,seed=0", "failed"),
      ("depth=8,seed=1", "finished")]
  bad = _json(tmp_path / "depth=9,seed=0" / "variant.json")
  assert bad["status"] == "failed" and "6n+2" in bad["error"] and bad["wall_time"] > 0
  for name in ("depth=8,seed=0", "depth=8,seed=1"):
    v = _json(tmp_path / name / "variant.json")
    assert v["status"] == "finished" and v["overrides"]["model.kwargs.depth"] == 8
    assert (tmp_path / name / "summary.json").exists()
    assert _json(tmp_path / name / "config.json")["seed"] == v["overrides"]["seed"]

  # Interrupt variant 0 after the fact: no summary, the last checkpoint gone.
  first = tmp_path / "depth=8,seed=0"
  os.remove(first / "summary.json")
  shutil.rmtree(first / "checkpoints" / "8")
  other = tmp_path / "depth=8,seed=1" / "metrics.jsonl"
  before = other.read_text()
  records = sweep.run(base, str(tmp_path), sweep=plan, retry_failed=False,
                      compilation_cache=JAX_CACHE)
  assert [r["status"] for r in records] == ["finished", "failed", "finished"]
  assert other.read_text() == before                    # finished: skipped
  v = _json(first / "variant.json")
  assert v["attempts"] == 2 and v["status"] == "finished"
  train_steps = [r["step"] for r in metrics.read_jsonl(str(first)) if r["split"] == "train"]
  # resumed from step 4: the history keeps steps 1-4 and the repeated 5-8 once
  assert train_steps == [1, 2, 3, 4, 5, 6, 7, 8]

  runs = results.load(str(tmp_path))
  assert list(runs["run"]) == ["depth=8,seed=0", "depth=9,seed=0", "depth=8,seed=1"]
  assert list(runs["status"]) == ["finished", "failed", "finished"]
  assert list(runs["depth"]) == [8, 9, 8] and list(runs["seed"]) == [0, 0, 1]
  summary = _json(first / "summary.json")
  row = runs.iloc[0]
  assert row["final_test_accuracy"] == pytest.approx(summary["test"]["accuracy"])
  assert row["steps"] == 8
  assert "6n+2" in runs.iloc[1]["error"]


def _write_config(tmp_path):
  return tiny_sweep_file(tmp_path, 'sweep.chain(sweep.axis("model.kwargs.depth", [8]),\n'
                         '                     sweep.axis("model.kwargs.depth", [9]))',
                         num_steps=6)


def test_command_line_list_index_and_sweep(tmp_path, cache_env):
  config = _write_config(tmp_path)
  out = tmp_path / "sweep"
  env = {"FLAXCNN_CACHE": str(cache_env), "JAX_COMPILATION_CACHE_DIR": JAX_CACHE}
  r = run_launch([f"--config={config}", f"--workdir={out}", "--list_variants"], env=env)
  assert r.returncode == 0, r.stderr[-2000:]
  lines = r.stdout.strip().splitlines()
  assert lines[0] == "2 variant(s)"
  assert lines[1].split("\t")[:2] == ["0", "depth=8"] and lines[1].endswith("pending")
  assert lines[2].split("\t")[:2] == ["1", "depth=9"]

  r = run_launch([f"--config={config}", f"--workdir={out}", "--sweep_index=0",
                  "--config.num_steps=8"], env=env)
  assert r.returncode == 0, r.stderr[-2000:]
  assert _json(out / "depth=8" / "summary.json")["step"] == 8     # --config.* applies
  assert not (out / "depth=9").exists()

  r = run_launch([f"--config={config}", f"--workdir={out}", "--sweep"], env=env)
  assert r.returncode != 0
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("error: sweep") and "1 finished (1 already)" in last
  assert "1 failed" in last and "depth=9" in last and "6n+2" in last
  assert "depth=8: finished, skipped" in r.stdout
  assert _json(out / "depth=9" / "variant.json")["status"] == "failed"

  assert list(sweep.status(str(out)).status) == ["finished", "failed"]
  listing = sweep.describe(config, workdir=str(out)).splitlines()
  assert listing[1].endswith("\tfinished")
  assert "\tfailed (ValueError: " in listing[2] and "got 9" in listing[2]


def test_variants_left_behind_by_a_changed_axis_are_marked(tmp_path):
  """A sweep run with seeds 0-2, then declared with seeds 0-1: seed=2's folder stays;
  the listing and the results say it is not in the sweep (it was a plain row)."""
  from test_results import write_run

  def fake_train(config, workdir, data_cache):
    write_run(workdir, [0.2, 0.1], [0.3, 0.2], [0.3, 0.2 + config.seed / 10])
    return {"interrupted": False}

  base = tiny_config()
  sweep.run(base, str(tmp_path), sweep=sweep.seeds(3), train_fn=fake_train,
            compilation_cache=False)
  sweep.run(base, str(tmp_path), sweep=sweep.seeds(2), train_fn=fake_train,
            compilation_cache=False)
  listing = sweep.describe(base, sweep=sweep.seeds(2), workdir=str(tmp_path)).splitlines()
  assert listing[0] == "2 variant(s)"
  assert listing[3] == "-\tseed=2\tnot in the sweep (its axes changed since)\tfinished"
  runs = results.load(str(tmp_path))
  assert list(runs.in_sweep) == [True, True, False]
  assert "| 3 (1 not in the sweep) |" in results.table(runs)
  assert "| seed=2 | finished (not in the sweep) |" in results.diagnostics_table(runs)


def test_a_command_line_override_of_a_swept_field_is_refused():
  """--sweep_index=0 --config.model.kwargs.depth=20 on a depth sweep would train the
  variant's depth and ignore the flag: refused, naming the flag; other flags pass."""
  with pytest.raises(ValueError, match=r"--config.model.kwargs.depth is set by the sweep"):
    sweep.check_command_line(DIGITS_DEPTH, None, ["num_steps", "model.kwargs.depth"])
  with pytest.raises(ValueError, match=r"--config.seed is set by the sweep"):
    sweep.check_command_line(DIGITS_DEPTH, None, ["seed"])
  sweep.check_command_line(DIGITS_DEPTH, None, ["num_steps", "optimizer.lr"])


def test_a_segmentation_sweep_trains_through_its_task(tmp_path):
  """A sweep over experiments/unet_craters.py loaded classification data for its
  variants (a TypeError concatenating (16,32,32,3) images with (16,1) labels); each
  variant goes through the task its model selects, as a run on its own does."""
  from flaxcnn import tasks
  base = sweep.load_module(os.path.join(ROOT, "experiments", "unet_craters.py")).get_config()
  assert tasks.for_config(base).name == "segmentation"
  base.model.kwargs.base_features, base.model.kwargs.depth = 4, 1
  base.data.synthetic_size, base.data.validation_size = 64, 32
  base.batch_size, base.eval_batch_size, base.num_steps = 16, 32, 2
  base.log_every_steps, base.checkpoint_every_steps = 1, 2
  # two seeds: the variants share one compiled step (the task is what is checked)
  records = sweep.run(base, str(tmp_path), sweep=sweep.seeds(2), compilation_cache=JAX_CACHE)
  assert [r["status"] for r in records] == [sweep.FINISHED] * 2
  summary = _json(tmp_path / "seed=1" / "summary.json")
  assert 0.0 <= summary["test"]["mean_iou"] <= 1.0 and summary["test"]["count"] == 32


def test_a_sweep_of_another_job_is_refused_once_before_any_variant(tmp_path):
  """--sweep with job=eval failed each variant in turn, each with its own folder."""
  base = tiny_config()
  base.job = "eval"
  with pytest.raises(ValueError, match=r"config.job='eval': a sweep trains its variants"):
    sweep.run(base, str(tmp_path / "s"), sweep=sweep.axis("seed", [0, 1]))
  assert not os.path.exists(tmp_path / "s")


def test_a_sweep_command_reads_the_config_file_once(tmp_path, capsys):
  """The sweep's variants are computed once per command and handed to the check,
  the listing and the runner."""
  counter = tmp_path / "executions"
  path = tiny_sweep_file(tmp_path, "sweep.seeds(2)")
  with open(path) as f:
    text = f.read()
  with open(path, "w") as f:
    f.write(f"open({str(counter)!r}, 'a').write('x')\n" + text)
  assert sweep.main(path, None, str(tmp_path / "w"), list_only=True) == 0
  assert "2 variant(s)" in capsys.readouterr().out
  assert counter.read_text() == "x"
  assert sweep.main(path, None, str(tmp_path / "w"), index=5) == (
      "error: sweep index 5 is out of range: the sweep has 2 variants (0..1); see "
      "--list_variants")
  assert counter.read_text() == "xx"
