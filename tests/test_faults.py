"""Nothing lost, nothing silently wrong: the loop against faults and misuse.

Each case used to finish "successfully" with a wrong result or a long traceback."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, run_launch, tiny_config
from flaxcnn import checkpoint, data as data_lib, metrics, train, workdir as workdir_lib


def test_diverging_parameters_stop_the_run_and_no_checkpoint_is_nonfinite(tmp_path):
  """lr=30 on the digits: the loss stays finite for a while, the parameters do not."""
  config = tiny_config(num_steps=60, checkpoint_every_steps=2, log_every_steps=5)
  config.optimizer.lr = 30.0
  config.schedule.name = "constant"
  with pytest.raises(train.NonFiniteLoss, match="NaN/Inf at step"):
    train.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / "summary.json").exists()
  steps = [int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()]
  assert steps
  # every checkpoint on disk is finite, and a resume starts from the newest one
  state = train.load_state(config, str(tmp_path))
  assert int(state.step) == max(steps)
  assert checkpoint.all_finite({"params": state.params, "batch_stats": state.batch_stats})


def _out_of_memory(*args, **kwargs):
  raise jax.errors.JaxRuntimeError(
      "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 691491088576 bytes.")


def test_an_evaluation_out_of_memory_names_the_field_and_keeps_the_trained_steps(
    tmp_path, monkeypatch):
  """The final evaluation does not fit: one line naming eval_batch_size and the size
  XLA asked for; the 12 trained steps are saved first and a rerun resumes there."""
  from flaxcnn.train import loop
  config = tiny_config(num_steps=12, checkpoint_every_steps=5)
  monkeypatch.setattr(loop.steps, "evaluate", _out_of_memory)
  with pytest.raises(ValueError) as e:
    train.train_and_evaluate(config, str(tmp_path))
  line = str(e.value)
  assert line.startswith("out of memory in the evaluation (it asked for 644.0 GiB)"), line
  assert "--config.eval_batch_size (now 128)" in line and "checkpoint 12" in line
  assert "\n" not in line
  assert 12 in [int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()]
  assert not (tmp_path / ".lock").exists()
  monkeypatch.undo()
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["step"] == 12 and "test" in summary


def test_an_evaluation_larger_than_the_free_memory_is_refused_before_it_runs(
    tmp_path, monkeypatch):
  """eval_batch_size=200000 under `ulimit -v`: XLA's CPU allocation failed with
  std::bad_alloc, an abort (the trained steps lost, the lock left). A batch larger than
  the split is now the split, and the evaluation's memory (XLA's own count for the
  compiled step) is checked against the free memory before it runs: one line, the
  steps saved, the lock released; the eval job alike."""
  import re
  from flaxcnn.data import feeds
  from flaxcnn.train import memory
  config = tiny_config(num_steps=6, checkpoint_every_steps=5, eval_batch_size=200000)
  dataset = data_lib.load(config)
  feed = feeds.make_feed(train.setup(config, dataset), dataset)
  assert [b[0].shape[0] for b in feed.eval_batches("test", 200000)] == [360]
  monkeypatch.setattr(memory, "free_bytes", lambda: 1024)
  with pytest.raises(ValueError) as e:
    train.train_and_evaluate(config, str(tmp_path), dataset=dataset)
  line = str(e.value)
  assert re.match(r"out of memory in the evaluation \(it asked for \d+\.\d GiB, 0\.0 GiB "
                  r"free\) on CPU", line), line
  assert "--config.eval_batch_size (now 200000)" in line and "checkpoint 6" in line
  assert "\n" not in line and not (tmp_path / ".lock").exists()
  with pytest.raises(ValueError, match=r"^out of memory in the evaluation \(it asked for "
                                       r"[\d.]+ GiB, 0.0 GiB free\).*eval_batch_size"):
    train.evaluate_checkpoint(config, str(tmp_path), dataset=dataset)
  monkeypatch.undo()
  assert train.train_and_evaluate(config, str(tmp_path), dataset=dataset)["step"] == 6


def test_a_training_step_out_of_memory_names_the_fields_and_the_kept_checkpoint(
    tmp_path, monkeypatch):
  from flaxcnn.train import loop
  config = tiny_config(num_steps=12, checkpoint_every_steps=5)
  real = loop.Phases.train_step

  def step_7_fails(self, state, step):
    return _out_of_memory() if step == 7 else real(self, state, step)
  monkeypatch.setattr(loop.Phases, "train_step", step_7_fails)
  with pytest.raises(ValueError) as e:
    train.train_and_evaluate(config, str(tmp_path))
  line = str(e.value)
  assert line.startswith("out of memory in the training step (it asked for 644.0 GiB)")
  assert "--config.batch_size (now 32)" in line and "--config.data.image_size" in line
  assert "the last checkpoint (step 5) is kept" in line


def test_resume_skips_a_nonfinite_checkpoint(tmp_path, capsys):
  config = tiny_config(num_steps=4, checkpoint_every_steps=4)
  train.train_and_evaluate(config, str(tmp_path))
  state = train.load_state(config, str(tmp_path))
  bad = state.replace(step=state.step + 4,
                      params=jax.tree.map(lambda x: x * np.nan, state.params))
  ck = checkpoint.Checkpointer(str(tmp_path))
  ck.save(bad)
  ck.close()
  again = train.load_state(config, str(tmp_path))
  assert int(again.step) == 4
  assert "not finite" in capsys.readouterr().out
  assert "nonfinite-8" in os.listdir(tmp_path / "checkpoints")


def test_a_second_run_on_a_busy_workdir_is_refused(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    os.makedirs(tmp_path, exist_ok=True)
    with open(tmp_path / ".lock", "w") as f:
      json.dump({"host": socket.gethostname(), "pid": holder.pid, "start": "earlier"}, f)
    with pytest.raises(workdir_lib.WorkdirBusy, match=rf"in use .*pid {holder.pid}"):
      train.train_and_evaluate(tiny_config(num_steps=2), str(tmp_path))
    assert not (tmp_path / "checkpoints").exists()
  finally:
    holder.kill()
    holder.wait()
  # the holder is gone: its lock is stale and the run takes it
  summary = train.train_and_evaluate(tiny_config(num_steps=2), str(tmp_path))
  assert summary["step"] == 2 and not (tmp_path / ".lock").exists()


def test_evaluating_a_run_that_is_training_touches_none_of_its_files(tmp_path, capsys):
  """--config.job=eval beside a live trainer removed the trainer's save in progress
  (it then died: "could not write checkpoint ... NOT_FOUND") or moved its checkpoints
  aside. Beside a live lock the evaluation reads read-only: the in-progress save stays,
  an unreadable checkpoint is skipped, not moved."""
  config = tiny_config(num_steps=8, checkpoint_every_steps=4)
  train.train_and_evaluate(config, str(tmp_path))
  in_progress = tmp_path / "checkpoints" / "12.orbax-checkpoint-tmp-1"
  in_progress.mkdir()
  for root, _, files in os.walk(tmp_path / "checkpoints" / "8"):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"garbage")
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
  try:
    with open(tmp_path / ".lock", "w") as f:
      json.dump({"host": socket.gethostname(), "pid": holder.pid, "start": "earlier"}, f)
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    results = train.evaluate_checkpoint(config, str(tmp_path))
    assert results["test"]["count"] == 360
    assert sorted(os.listdir(tmp_path / "checkpoints")) == before   # nothing moved or removed
    out = capsys.readouterr().out
    assert f"in use by a run (host {socket.gethostname()}, pid {holder.pid})" in out
    assert "checkpoint 8" in out and "skipped" in out and "step 4" in out
  finally:
    holder.kill()
    holder.wait()


def test_evaluating_beside_a_run_that_rotates_its_checkpoints_reads_the_newest_one(
    tmp_path, capsys, monkeypatch):
  """The run beside the evaluation saves step 12 and removes 4 and 8 (it keeps its last
  checkpoint) while the evaluation reads 8: it used to answer "none of the checkpoints
  [4, 8] ... could be read"; now it lists them again and evaluates step 12."""
  import orbax.checkpoint as ocp
  config = tiny_config(num_steps=8, checkpoint_every_steps=4)
  train.train_and_evaluate(config, str(tmp_path))
  state = train.load_state(config, str(tmp_path))
  real = ocp.CheckpointManager.restore
  saved = []

  def rotate_then_restore(self, step, *args, **kwargs):
    if not saved:   # the run's next checkpoint lands while this one is read
      writer = checkpoint.Checkpointer(str(tmp_path), keep=1)
      writer.save(state.replace(step=state.step + 4))
      writer.close()
      saved.append(12)
    return real(self, step, *args, **kwargs)
  monkeypatch.setattr(ocp.CheckpointManager, "restore", rotate_then_restore)
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
  try:
    with open(tmp_path / ".lock", "w") as f:
      json.dump({"host": socket.gethostname(), "pid": holder.pid, "start": "earlier"}, f)
    results = train.evaluate_checkpoint(config, str(tmp_path))
    assert results["test"]["count"] == 360
    assert sorted(d for d in os.listdir(tmp_path / "checkpoints")) == ["12"]
    assert "step 12:" in capsys.readouterr().out
    # a run that removes every checkpoint before it is read: said so, in one line
    monkeypatch.setattr(checkpoint.Checkpointer, "steps", lambda self: [4])
    with pytest.raises(RuntimeError, match=r"removed the checkpoints read here before they "
                                           r"were read, 5 times \(it keeps its last "
                                           r"--config.keep_checkpoints and rotates them\)"):
      train.load_state(config, str(tmp_path))
  finally:
    holder.kill()
    holder.wait()


def test_resuming_on_changed_data_is_refused_unless_allowed(tmp_path, capsys):
  """Images added to a folder between a kill and the resume gave "Resumed from
  checkpoint" and a redrawn validation split holding trained-on images. The run
  records each split's fingerprint when it starts and compares it on resume."""
  import dataclasses
  from flaxcnn import data as data_lib
  config = tiny_config(num_steps=4)
  dataset = data_lib.load(config)
  train.train_and_evaluate(config, str(tmp_path), dataset=dataset)
  images = dataset.splits["train"].images.copy()
  images[0] = 255 - images[0]
  changed = dataclasses.replace(dataset, splits={
      **dataset.splits, "train": data_lib.Split(images, dataset.splits["train"].labels)})
  more = tiny_config(num_steps=8)
  with pytest.raises(ValueError, match=r"the data differ from those the run .* started with "
                                       r"\(train: 1257 -> 1257 examples, other images\).*"
                                       r"allow_changed=True"):
    train.train_and_evaluate(more, str(tmp_path), dataset=changed)
  assert train.train_and_evaluate(more, str(tmp_path), dataset=dataset)["step"] == 8
  more.num_steps, more.data.allow_changed = 10, True
  assert train.train_and_evaluate(more, str(tmp_path), dataset=changed)["step"] == 10
  assert "going on (config.data.allow_changed)" in capsys.readouterr().out
  saved = json.load(open(tmp_path / "data.json"))
  assert saved["started_with"] != saved["fingerprint"]


def test_a_resume_on_changed_data_keeps_the_validation_split_it_started_with(tmp_path,
                                                                             capsys):
  """40 images added, the resume allowed: the loader held out a validation split of
  the bigger pool again (images the run had trained on among it). Now the run's
  validation split is the one it started with, the new images train, and the
  normalization stays the recorded one."""
  from flaxcnn import data as data_lib
  config = tiny_config(num_steps=4)
  dataset = data_lib.load(config)
  train.train_and_evaluate(config, str(tmp_path), dataset=dataset)
  started = json.load(open(tmp_path / "data.json"))
  assert len(started["validation_examples"]) == 180
  old_train, old_val = dataset.splits["train"], dataset.splits["validation"]
  pool = data_lib.Split(
      np.concatenate([old_train.images, old_val.images, 255 - old_train.images[:40]]),
      np.concatenate([old_train.labels, old_val.labels, old_train.labels[:40]]))
  redrawn = data_lib.core.finalize("digits", 10, {"train": pool,
                                                  "test": dataset.splits["test"]}, 180)
  trained = set(data_lib.core.example_hashes(old_train))
  assert trained & set(data_lib.core.example_hashes(redrawn.splits["validation"]))
  more = tiny_config(num_steps=6, **{"data.allow_changed": True})
  assert train.train_and_evaluate(more, str(tmp_path), dataset=redrawn)["step"] == 6
  assert "the validation split stays the one the run started with (180 of its 180" in \
      capsys.readouterr().out
  now = json.load(open(tmp_path / "data.json"))
  assert now["fingerprint"]["validation"] == started["fingerprint"]["validation"]
  assert now["sizes"]["train"] == 1257 + 40 and now["sizes"]["validation"] == 180
  assert now["mean"] == started["mean"] and now["std"] == started["std"]
  assert now["validation_examples"] == started["validation_examples"]


def test_head_size_must_match_the_data():
  config = tiny_config(**{"model.kwargs.num_classes": 5})
  with pytest.raises(ValueError, match=r"num_classes=5 but digits has 10 classes"):
    train.train_and_evaluate(config, "/tmp/never-written")
  from flaxcnn import config as config_lib
  with pytest.raises(ValueError, match=r"data.num_classes=3.*defines its own classes"):
    config_lib.validate(tiny_config(**{"data.num_classes": 3}))


def test_a_fresh_start_does_not_append_to_an_old_history(tmp_path, capsys):
  train.train_and_evaluate(tiny_config(num_steps=4), str(tmp_path))
  import shutil
  shutil.rmtree(tmp_path / "checkpoints")
  train.train_and_evaluate(tiny_config(num_steps=4), str(tmp_path))
  steps = [l["step"] for l in metrics.read_jsonl(str(tmp_path)) if l["split"] == "train"]
  assert steps == [1, 2, 3, 4]
  assert "fresh history" in capsys.readouterr().out
  assert any(n.startswith("metrics.jsonl.old-") for n in os.listdir(tmp_path))


def _files(workdir):
  """{relative path: bytes} of everything in a workdir."""
  out = {}
  for root, _, names in os.walk(workdir):
    for n in names:
      path = os.path.join(root, n)
      with open(path, "rb") as f:
        out[os.path.relpath(path, workdir)] = f.read()
  return out


def test_a_finished_run_is_final(tmp_path, capsys):
  """Rerunning a finished run rewrote summary.json's wall time and appended a second
  set of evaluation lines; now it prints the summary and changes nothing on disk."""
  first = train.train_and_evaluate(tiny_config(num_steps=4), str(tmp_path))
  before = _files(tmp_path)
  again = train.train_and_evaluate(tiny_config(num_steps=4), str(tmp_path))
  assert again == json.loads(json.dumps(first))
  assert _files(tmp_path) == before
  assert "finished at step 4" in capsys.readouterr().out


def test_a_kill_after_the_final_evaluation_adds_no_duplicate_lines(tmp_path):
  """Killed between the final checkpoint and summary.json: the rerun takes the final
  evaluation from metrics.jsonl instead of writing it a second time."""
  first = train.train_and_evaluate(tiny_config(num_steps=4), str(tmp_path))
  lines = metrics.read_jsonl(str(tmp_path))
  os.remove(tmp_path / "summary.json")
  again = train.train_and_evaluate(tiny_config(num_steps=4), str(tmp_path))
  assert len(metrics.read_jsonl(str(tmp_path))) == len(lines)
  assert again["test"] == pytest.approx(first["test"])
  assert json.load(open(tmp_path / "summary.json"))["step"] == 4


def test_a_resume_with_a_changed_learning_rate_is_written_down(tmp_path, capsys):
  """Allowed (it does not change which images the steps see) but not silent: the
  change and its step go to config_history.jsonl before config.json is rewritten."""
  train.train_and_evaluate(tiny_config(num_steps=4), str(tmp_path))
  train.train_and_evaluate(tiny_config(num_steps=8, **{"optimizer.lr": 0.01}), str(tmp_path))
  out = capsys.readouterr().out
  assert "Resuming at step 4 with a changed config (kept in config_history.jsonl): " in out
  assert "optimizer.lr: 0.05 -> 0.01" in out
  [record] = [json.loads(l) for l in open(tmp_path / "config_history.jsonl")]
  assert record["step"] == 4
  assert record["changes"] == {"num_steps": [4, 8], "optimizer.lr": [0.05, 0.01]}
  assert json.loads((tmp_path / "config.json").read_text())["optimizer"]["lr"] == 0.01
  train.train_and_evaluate(tiny_config(num_steps=8, **{"optimizer.lr": 0.01}), str(tmp_path))
  assert len(open(tmp_path / "config_history.jsonl").readlines()) == 1   # finished: no change


def test_a_config_of_another_model_is_named_not_restored(tmp_path):
  train.train_and_evaluate(tiny_config(num_steps=4), str(tmp_path))
  other = tiny_config(num_steps=8, **{"model.kwargs.depth": 14})
  with pytest.raises(ValueError, match=r"config differs from the run .*model.kwargs.depth: 8 -> "
                                       r"14") as e:
    train.train_and_evaluate(other, str(tmp_path))
  assert "move" not in str(e.value)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4"]   # nothing moved aside


def test_a_checkpoint_with_the_old_automatic_layer_names_is_refused_in_one_line(tmp_path):
  """Checkpoints of flaxcnn before its layers were named (Conv_0, ResidualBlock_3)."""
  config = tiny_config(num_steps=2)
  train.train_and_evaluate(config, str(tmp_path / "new"))
  ck = checkpoint.Checkpointer(str(tmp_path / "new"))
  tree = ck.manager.restore(2, args=checkpoint.ocp.args.StandardRestore())
  ck.close()
  rename = {"stem_conv": "Conv_0", "stem_bn": "BatchNorm_0"}
  for part in ("params", "batch_stats"):
    tree[part] = {rename.get(k, k): v for k, v in tree[part].items()}
  old = checkpoint.Checkpointer(str(tmp_path / "old"))
  old.manager.save(2, args=checkpoint.ocp.args.StandardSave(tree), force=True)
  old.close()
  with pytest.raises(ValueError, match=r"automatic layer names of an older flaxcnn \(e.g. "
                                       r".*(Conv|BatchNorm)_0.*another --workdir"):
    train.train_and_evaluate(config, str(tmp_path / "old"))
  assert os.listdir(tmp_path / "old" / "checkpoints") == ["2"]   # nothing moved aside


def test_unusable_workdirs_are_one_line_errors(tmp_path):
  (tmp_path / "f").write_text("x")
  with pytest.raises(ValueError, match="is a file"):
    workdir_lib.check_writable(str(tmp_path / "f"))
  with pytest.raises(ValueError, match="lies under the file"):
    workdir_lib.check_writable(str(tmp_path / "f" / "wd"))
  if os.geteuid() != 0:   # root writes anywhere
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(ValueError, match="not writable"):
      workdir_lib.check_writable(str(tmp_path / "ro" / "wd"))


@pytest.mark.parametrize("args,message", [
    (["--config=experiments/quickstart.py", "--config.optimizer.lrr=0.1"],
     "has no field 'optimizer.lrr'; did you mean 'optimizer.lr'"),
    (["--config=experiments/nope.py"], "no such config file"),
    (["--config=experiments/resnet_cifar.py:abc"], "unknown argument 'abc'"),
    (["--config=experiments/quickstart.py", "--config.data.image_size=-3"],
     "data.image_size=-3 must be"),
])
def test_command_line_mistakes_are_one_line(tmp_path, args, message):
  r = run_launch(args + [f"--workdir={tmp_path}/wd"], timeout=120)
  assert r.returncode != 0
  errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], r.stderr[-2000:]
  assert "Traceback" not in r.stderr


def test_a_failed_checkpoint_write_is_one_line_and_leaves_nothing_partial(tmp_path):
  """A disk that refuses a checkpoint's files (here: a file-size limit, EFBIG, as a
  full disk's ENOSPC) during an asynchronous save: one line naming the step and the
  reason, no orphaned temporary directory, and a rerun with room trains on."""
  wd = str(tmp_path / "wd")
  args = ["--config=experiments/quickstart.py", f"--workdir={wd}",
          "--config.num_epochs=1", "--config.checkpoint_every_steps=5"]
  # 150 kB files (ulimit -f counts KiB): the logs fit, the checkpoint's data files do not
  # (nor would new compilation-cache entries: the run reads the suite's, writes none).
  r = subprocess.run(["bash", "-c", 'ulimit -f 146 && exec "$@"', "bash", sys.executable,
                      os.path.join(ROOT, "launch.py")] + args, cwd=ROOT, capture_output=True,
                     text=True, timeout=300, env=dict(
                         os.environ, PYTHONPATH=ROOT,
                         JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1e9"))
  assert r.returncode != 0
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: could not write checkpoint 5 "), \
      r.stderr[-3000:]
  assert "File too large" in lines[0] and "partial files were removed" in lines[0]
  assert os.listdir(os.path.join(wd, "checkpoints")) == []
  r = run_launch(args, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "Finished" in r.stdout


@pytest.mark.parametrize("which", ["newest", "all"])
def test_cut_short_checkpoints_print_their_lines_and_no_library_traceback(tmp_path, which):
  """The newest checkpoint's array files cut short: one warning, then the run resumes
  from the previous one; all of them cut short: a warning each and one error line. No
  Orbax/TensorStore traceback ("exception never retrieved") reaches the console."""
  wd = str(tmp_path / "wd")
  args = ["--config=experiments/quickstart.py", f"--workdir={wd}", "--config.num_epochs=1",
          "--config.checkpoint_every_steps=5", "--config.keep_checkpoints=3"]
  assert run_launch(args, timeout=300).returncode == 0
  steps = sorted(int(s) for s in os.listdir(os.path.join(wd, "checkpoints")) if s.isdigit())
  for step in steps[-1:] if which == "newest" else steps:
    for root, _, files in os.walk(os.path.join(wd, "checkpoints", str(step))):
      for f in files:
        if os.path.getsize(os.path.join(root, f)) > 10_000:   # the array data
          os.truncate(os.path.join(root, f), 100)
  r = run_launch(args[:2] + ["--config.num_epochs=2", "--config.checkpoint_every_steps=5"],
                 timeout=300)
  out = r.stdout + r.stderr
  assert "Traceback" not in out and "never retrieved" not in out, out[-3000:]
  warnings = [l for l in out.splitlines() if "is unreadable; moved it to" in l]
  if which == "newest":
    assert r.returncode == 0 and len(warnings) == 1
    assert f"Resumed from checkpoint at step {steps[-2]}" in r.stdout
  else:
    assert r.returncode != 0 and len(warnings) == len(steps)
    assert r.stderr.strip().splitlines()[-1].startswith("error: none of the checkpoints")
    assert len(out.strip().splitlines()) == len(steps) + 1


def test_rerunning_a_finished_sweep_variant_with_other_overrides_warns(tmp_path, capsys):
  from flaxcnn import sweep
  plan = [{"seed": 0}]
  sweep.run(tiny_config(num_steps=2), str(tmp_path), sweep=plan, compilation_cache=False)
  capsys.readouterr()
  records = sweep.run(tiny_config(num_steps=2, **{"optimizer.lr": 0.01}), str(tmp_path),
                      sweep=plan, compilation_cache=False)
  out = capsys.readouterr().out
  assert records[0]["status"] == "finished" and records[0].get("skipped")
  assert "config differs from the finished run (optimizer.lr: 0.05 -> 0.01)" in out
  assert "summary.json" in out


@pytest.mark.slow
def test_soak_four_sigkills_then_bitwise_equal_and_one_line_per_step(tmp_path):
  """4 SIGKILLs at random moments (some during checkpoint writes) in one run; the
  final parameters equal an uninterrupted run's and the history has each step once."""
  import random
  import signal
  import time
  args = ["--config=experiments/quickstart.py", "--config.num_steps=60",
          "--config.checkpoint_every_steps=3", "--config.log_every_steps=1",
          "--config.eval_every_epochs=100"]
  full = tmp_path / "full"
  assert run_launch(args + [f"--workdir={full}"]).returncode == 0
  killed = tmp_path / "killed"
  env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
  rng = random.Random(0)
  kills = 0
  while kills < 4:
    p = subprocess.Popen([sys.executable, "launch.py"] + args + [f"--workdir={killed}"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    for line in p.stdout:      # kill once training runs, a random number of steps later
      if line.startswith("epoch"):
        break
    time.sleep(rng.uniform(0.0, 0.4))
    if p.poll() is not None:   # finished before the kill
      break
    p.send_signal(signal.SIGKILL)
    p.wait()
    kills += 1
  assert kills == 4, "the run finished before its fourth kill"
  r = run_launch(args + [f"--workdir={killed}"])
  assert r.returncode == 0, r.stderr[-2000:]
  assert "Resumed from checkpoint" in r.stdout
  from experiments import quickstart
  config = quickstart.get_config()
  a = jax.device_get(train.load_state(config, str(full)).params)
  b = jax.device_get(train.load_state(config, str(killed)).params)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  steps = [l["step"] for l in metrics.read_jsonl(str(killed)) if l["split"] == "train"]
  assert steps == list(range(1, 61)), steps
