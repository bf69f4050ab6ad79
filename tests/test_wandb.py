"""Weights & Biases (config.wandb): the trainer's metrics, images, histograms and
config go to one W&B run per workdir, which a resume continues. The `wandb` package
is replaced by a recorder of the calls the trainer makes (no account, no network)."""
import sys
import types

import numpy as np
import pytest

from conftest import tiny_config
from flaxcnn import config as config_lib, train


class _Recorder:
  """The part of the wandb API the trainer uses, recording each call."""

  def __init__(self):
    self.inits, self.logs, self.finished = [], [], 0
    self.util = types.SimpleNamespace(generate_id=lambda: f"run{len(self.inits)}")
    self.Image = lambda grid: ("image", np.asarray(grid).shape)
    self.Histogram = lambda np_histogram: ("histogram", int(np_histogram[0].sum()))

  def init(self, **kwargs):
    self.inits.append(kwargs)
    return self

  def log(self, values, step):
    self.logs.append((step, values))

  def finish(self):
    self.finished += 1


def test_a_run_logs_to_one_wandb_run_that_a_resume_continues(tmp_path, monkeypatch):
  fake = _Recorder()
  monkeypatch.setitem(sys.modules, "wandb", fake)
  config = tiny_config(num_steps=4, log_images=True,
                       **{"wandb.project": "ablations", "wandb.mode": "offline"})
  train.train_and_evaluate(config, str(tmp_path / "wrn"))
  [init] = fake.inits
  assert init["project"] == "ablations" and init["mode"] == "offline"
  assert init["name"] == "wrn" and init["resume"] == "allow"
  assert init["config"]["optimizer"]["lr"] == 0.05 and init["config"]["batch_size"] == 32
  steps = [step for step, values in fake.logs if "train/loss" in values]
  assert steps == [1, 2, 3, 4]
  final = {k: v for step, values in fake.logs if step == 4 for k, v in values.items()}
  assert 0 <= final["test/accuracy"] <= 1 and "test/count" not in final
  images = [v["train/augmented_images"] for _, v in fake.logs if "train/augmented_images" in v]
  assert images == [("image", (38, 38))]
  assert final["params/stem_conv/kernel"] == ("histogram", 144)
  assert fake.finished == 1
  # the resume goes on in the same W&B run
  config.num_steps = 6
  train.train_and_evaluate(config, str(tmp_path / "wrn"))
  assert fake.inits[1]["id"] == init["id"] and fake.finished == 2
  assert [s for s, v in fake.logs if "train/loss" in v][-2:] == [5, 6]


def test_a_wandb_project_without_wandb_installed_is_one_line(monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)   # import wandb fails
  config = tiny_config(**{"wandb.project": "x"})
  with pytest.raises(ValueError, match=r"wandb is not installed: pip install wandb"):
    config_lib.validate(config)

