"""The training loop end to end: learning, evaluation, resume, signals, NaN."""
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, run_launch, tiny_config
from flaxcnn import config as config_lib, data as data_lib, metrics, train

# Each reliability test runs for both tasks of the one loop: (config file, overrides).
# The U-Net is narrowed to base width 4 and one pooling (it compiles in a third of the
# time): what these tests check does not depend on it.
TASKS = {
    "classification": ("experiments/quickstart.py", {}),
    "segmentation": ("experiments/unet_craters.py", {
        "model.kwargs.base_features": 4, "model.kwargs.depth": 1, "data.synthetic_size": 256,
        "data.validation_size": 64, "eval_batch_size": 64}),
}


def _task_args(task):
  path, overrides = TASKS[task]
  return [f"--config={path}"] + [f"--config.{k}={v}" for k, v in overrides.items()]


def _task_config(task, **overrides):
  """The task's config file with its test overrides (as the command line gives them)."""
  import importlib.util
  path, base = TASKS[task]
  spec = importlib.util.spec_from_file_location("cfg", os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return config_lib.apply_overrides(module.get_config(), {**base, **overrides})


def _tiny(task, **overrides):
  """A few-second run of the task in process: tiny_config, or tiny craters."""
  if task == "classification":
    return tiny_config(**overrides)
  return _task_config("segmentation", **{"num_steps": 12, "log_every_steps": 1,
                                         "checkpoint_every_steps": 4,
                                         "eval_every_epochs": 100.0, **overrides})


def _params(config, workdir):
  return jax.device_get(train.load_state(config, workdir).params)


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_the_header_names_the_model_that_trains_not_only_its_preset(tmp_path, capsys):
  """quickstart trains ResNet-8 (depth=8 of the resnet20_cifar preset); the header
  and the final line said resnet20_cifar alone."""
  train.train_and_evaluate(tiny_config(num_steps=2), str(tmp_path))
  out = capsys.readouterr().out
  assert re.match(r"resnet20_cifar \(depth=8\): [\d,]+ params, ", out.splitlines()[0])
  assert "Finished resnet20_cifar (depth=8) on digits" in out


def test_the_data_is_named_as_the_config_labels_it(tmp_path, capsys):
  """config.data.label ("CIFAR-10 (JPEG q75)" for the JPEG folder) names the data in
  the header, the final line and data.json, never the folder's name."""
  config = tiny_config(num_steps=2, log_images=True,
                       **{"data.label": "Digits (8x8)", "augment.crop_padding": 0})
  train.train_and_evaluate(config, str(tmp_path))
  out = capsys.readouterr().out
  assert out.splitlines()[1].startswith("  data:    Digits (8x8) (train 1,257 / ")
  assert "Finished resnet20_cifar (depth=8) on Digits (8x8)" in out
  saved = json.loads((tmp_path / "data.json").read_text())
  assert saved["label"] == "Digits (8x8)" and saved["name"] == "digits"
  assert all(len(line) <= 100 for line in out.splitlines()[:5])     # the header's lines
  # TensorBoard charts the metrics, not the bookkeeping (an evaluation's count).
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  events = EventAccumulator(str(tmp_path / "tensorboard"))
  events.Reload()
  tags = events.Tags()["scalars"]
  assert "test/accuracy" in tags and "train/loss" in tags and "test/count" not in tags
  # The first step's images as it trained on them (no augmentation here: the
  # training images themselves, normalized and back), 16 tiles of 8x8 on a 4x4 grid.
  from PIL import Image
  [event] = events.Images("train/augmented_images")
  grid = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
  assert grid.shape == (4 * 10 - 2, 4 * 10 - 2)
  train_images = data_lib.load(config).splits["train"].images[..., 0].astype(int)
  for r in range(4):
    for c in range(4):
      tile = grid[r * 10:r * 10 + 8, c * 10:c * 10 + 8].astype(int)
      assert np.abs(train_images - tile).max(axis=(1, 2)).min() <= 1
  # Histograms of the parameters and BatchNorm statistics at the evaluation: the
  # stem's kernel has its 144 values, their sum and extremes, in 30 buckets.
  state = train.load_state(config, str(tmp_path))
  kernel = np.asarray(state.params["stem_conv"]["kernel"], np.float64)
  [histo] = events.Histograms("params/stem_conv/kernel")
  assert histo.step == 2 and histo.histogram_value.num == kernel.size == 144
  assert histo.histogram_value.sum == pytest.approx(kernel.sum(), rel=1e-9, abs=1e-12)
  assert histo.histogram_value.max == pytest.approx(kernel.max())
  assert sum(histo.histogram_value.bucket) == 144 and len(histo.histogram_value.bucket) == 30
  assert "batch_stats/stage1_block1/bn1/var" in events.Tags()["histograms"]


def test_evaluation_counts_each_example_once():
  config = tiny_config(eval_batch_size=64)
  dataset = data_lib.load(config)
  run = train.setup(config, dataset)
  state = train.create_state(run, dataset.image_shape)
  split = dataset.splits["test"]            # 360 examples: 5 full batches + 40 padded
  feed = train.make_feed(run, dataset)
  res = train.evaluate(run, train.make_eval_step(run, 8), state.params, state.batch_stats,
                       feed.eval_batches("test", 64))
  assert res["count"] == 360
  x = (split.images / 255.0 - np.asarray(dataset.mean)) / np.asarray(dataset.std)
  logits = run.model.apply({"params": state.params, "batch_stats": state.batch_stats},
                           jnp.asarray(x, jnp.float32), train=False)
  expected = float(np.mean(np.argmax(np.asarray(logits), -1) == split.labels))
  assert res["accuracy"] == pytest.approx(expected, abs=1e-6)
  top5 = np.argsort(-np.asarray(logits), -1)[:, :5]
  assert res["top5"] == pytest.approx(np.mean((top5 == split.labels[:, None]).any(-1)), abs=1e-6)


@pytest.mark.parametrize("task", ["segmentation"])
def test_resume_after_sigkill_is_bitwise_identical(tmp_path, task):
  """A run killed with SIGKILL and resumed ends with the uninterrupted parameters
  (classification: test_faults.py's soak, four kills of the quick start)."""
  args = _task_args(task) + ["--config.num_steps=30",
          "--config.checkpoint_every_steps=10", "--config.log_every_steps=5",
          "--config.eval_every_epochs=100"]
  full = tmp_path / "full"
  r = run_launch(args + [f"--workdir={full}"])
  assert r.returncode == 0, r.stderr[-2000:]

  killed = tmp_path / "killed"
  env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
  p = subprocess.Popen([sys.executable, "launch.py"] + args + [f"--workdir={killed}"],
                       cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
  ckpts = killed / "checkpoints"
  deadline = time.time() + 300
  while time.time() < deadline:
    if ckpts.exists() and any(d.isdigit() and int(d) >= 10 for d in os.listdir(ckpts)):
      break
    time.sleep(0.2)
  p.send_signal(signal.SIGKILL)
  p.wait()
  steps = sorted(int(d) for d in os.listdir(ckpts) if d.isdigit())
  assert steps and steps[-1] < 30, steps
  r = run_launch(args + [f"--workdir={killed}"])
  assert r.returncode == 0, r.stderr[-2000:]
  assert "Resumed from checkpoint" in r.stdout

  config = _task_config(task)
  _assert_trees_equal(_params(config, str(full)), _params(config, str(killed)))
  steps = [l["step"] for l in metrics.read_jsonl(str(killed)) if l["split"] == "train"]
  assert steps == sorted(set(steps)), "a repeated step left a duplicate history line"


@pytest.mark.parametrize("task", sorted(TASKS))
def test_sigterm_saves_and_exits_cleanly(tmp_path, task):
  env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
  p = subprocess.Popen([sys.executable, "launch.py"] + _task_args(task) + [
                        f"--workdir={tmp_path}", "--config.num_steps=100000",
                        "--config.checkpoint_every_steps=100000",
                        "--config.log_every_steps=1"],
                       cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
  out = []
  for line in p.stdout:            # wait until training runs
    out.append(line)
    if line.startswith("epoch"):
      break
  p.send_signal(signal.SIGTERM)
  rest, _ = p.communicate(timeout=120)
  assert p.returncode == 0, "".join(out) + rest
  assert "saved checkpoint at step" in rest
  steps = [int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()]
  assert steps and steps[0] > 0


@pytest.mark.parametrize("task", sorted(TASKS))
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, task):
  config = _tiny(task, num_steps=40, checkpoint_every_steps=4)
  good = train.train_and_evaluate(_tiny(task, num_steps=4), str(tmp_path))
  assert good["step"] == 4
  config.optimizer.lr = 1e30
  config.schedule.name = "constant"
  with pytest.raises(train.NonFiniteLoss, match=r"NaN/Inf at step \d+.*\(step 4\)"):
    train.train_and_evaluate(config, str(tmp_path))
  steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
  assert steps[-1] == 4
  params = train.load_state(config, str(tmp_path)).params
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(params)))


def test_corrupt_latest_checkpoint_falls_back(tmp_path, capsys):
  config = tiny_config(num_steps=8, checkpoint_every_steps=4)
  train.train_and_evaluate(config, str(tmp_path))
  latest = tmp_path / "checkpoints" / "8"
  for root, _, files in os.walk(latest):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"garbage")
  state = train.load_state(config, str(tmp_path))
  assert int(state.step) == 4
  assert "checkpoint 8 is unreadable" in capsys.readouterr().out
  # moved aside, so no later run or evaluation silently uses step 4 instead
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "corrupt-8"]
  summary = train.train_and_evaluate(config, str(tmp_path))     # writes step 8 again
  assert summary["step"] == 8 and "8" in os.listdir(tmp_path / "checkpoints")


def test_silently_changed_checkpoint_bytes_are_caught_by_the_checksums(tmp_path, capsys):
  """A checkpoint whose stored values changed but still read (a flipped bit inside an
  array's data: Orbax reads it without complaint) does not match the checksums saved
  with it, so it is set aside. The change is written through Orbax, with the
  original checksums, so that it lands inside an array whatever the file layout."""
  import shutil
  from flaxcnn import checkpoint
  config = tiny_config(num_steps=8, checkpoint_every_steps=4)
  train.train_and_evaluate(config, str(tmp_path))
  ck = checkpoint.Checkpointer(str(tmp_path))
  tree = ck.manager.restore(8, args=checkpoint.ocp.args.StandardRestore())
  sums = ck.manager.metadata(8).custom_metadata["checksums"]
  ck.close()
  kernel = np.array(tree["params"]["head"]["kernel"])
  kernel.view(np.uint32)[0, 0] ^= 1 << 20          # one bit of one weight
  tree["params"]["head"]["kernel"] = kernel
  shutil.rmtree(tmp_path / "checkpoints" / "8")
  ck = checkpoint.Checkpointer(str(tmp_path))
  ck.manager.save(8, args=checkpoint.ocp.args.StandardSave(tree), force=True,
                  custom_metadata={"checksums": sums})
  ck.close()
  step, _ = checkpoint.load_raw(str(tmp_path), with_step=True)     # read-only
  assert step == 4 and "checkpoint 8 in" in capsys.readouterr().out
  state = train.load_state(config, str(tmp_path))
  assert int(state.step) == 4
  assert "checkpoint 8 is corrupt (its arrays differ from the checksums" in capsys.readouterr().out
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "corrupt-8"]


def test_resuming_with_another_batch_size_or_seed_is_refused(tmp_path):
  """A step of the resumed run must be the same images as before: a changed global
  batch or seed is one line naming the field and the saved value; num_steps may grow."""
  train.train_and_evaluate(tiny_config(num_steps=4), str(tmp_path))
  with pytest.raises(ValueError, match=r"config.batch_size=16 differs from the run in .* "
                                       r"\(32\), whose checkpoint at step 4.*batch_size=32"):
    train.train_and_evaluate(tiny_config(num_steps=8, batch_size=16), str(tmp_path))
  with pytest.raises(ValueError, match=r"config.seed=1 differs"):
    train.train_and_evaluate(tiny_config(num_steps=8, seed=1), str(tmp_path))
  assert train.train_and_evaluate(tiny_config(num_steps=8), str(tmp_path))["step"] == 8


def test_bfloat16_training_runs(tmp_path):
  s = train.train_and_evaluate(tiny_config(dtype="bfloat16", num_steps=6), str(tmp_path))
  assert np.isfinite(s["test"]["loss"])
  state = train.load_state(tiny_config(dtype="bfloat16"), str(tmp_path))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
