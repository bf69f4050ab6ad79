"""Config errors fail at once, with one line naming the field."""
import time

import pytest

from conftest import run_launch, tiny_config
from flaxcnn import config as config_lib


def test_default_config_is_locked_against_typos():
  c = config_lib.default_config()
  with pytest.raises(AttributeError, match="lrr"):
    c.optimizer.lrr = 0.1


def test_wrong_type_is_rejected():
  c = config_lib.default_config()
  with pytest.raises(TypeError):
    c.batch_size = "big"


@pytest.mark.parametrize("field,value,match", [
    ("optimizer.name", "sgdd", "config.optimizer.name"),
    ("schedule.name", "linear", "config.schedule.name"),
    ("data.source", "web", "config.data.source"),
    ("batch_size", 0, "config.batch_size"),
    ("optimizer.lr", -1.0, "config.optimizer.lr"),
    ("dtype", "float16", "config.dtype"),
])
def test_bad_values_name_the_field(field, value, match):
  c = tiny_config(**{field: value})
  with pytest.raises(ValueError, match=match):
    config_lib.validate(c)


def test_batch_must_divide_over_devices():
  with pytest.raises(ValueError, match="divisible by the 8 devices"):
    config_lib.validate(tiny_config(batch_size=36), num_devices=8)


def test_impossible_architecture_fails_before_compiling():
  c = tiny_config()
  c.model.name = "wrn28_10"
  c.model.kwargs = {"depth": 27}
  t = time.time()
  with pytest.raises(ValueError, match="depth"):
    config_lib.validate(c)
  assert time.time() - t < 10


def test_unknown_model_suggests_names():
  c = tiny_config()
  c.model.name = "resnet5O"
  with pytest.raises(ValueError, match="resnet50"):
    config_lib.validate(c)


def test_launch_reports_bad_override_in_one_line(tmp_path):
  t = time.time()
  r = run_launch(["--config=experiments/quickstart.py", f"--workdir={tmp_path}",
                  "--config.model.kwargs.depth=9"], timeout=120)
  assert r.returncode != 0
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("error:") and "depth" in last, last
  assert time.time() - t < 60
  r = run_launch(["--config=experiments/quickstart.py", f"--workdir={tmp_path}",
                  "--config.optimizer.lrr=0.1"], timeout=120)
  assert r.returncode != 0 and "lrr" in r.stderr
