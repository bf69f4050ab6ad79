"""Config errors fail at once, with one line naming the field."""
import json
import os
import sys
import time

import ml_collections
import pytest

from conftest import ROOT, run_launch, tiny_config
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
    ("job", "extract", "config.job='extract' is not one of train, eval, features"),
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


@pytest.mark.parametrize("model,key,text,value", [
    ("resnet20_cifar", "stochastic_depth", "0.5", 0.5),            # float, not in the config
    ("resnet20_cifar", "stochastic_depth", "1", 1.0),
    ("resnet20_cifar", "stochastic_depth_per", "batch", "batch"),  # str
    ("resnet20_cifar", "scan_blocks", "true", True),               # bool
    ("wrn28_10", "widen_factor", "4", 4),                          # int
    ("wrn28_10", "stage_strides", "(1, 2, 2)", (1, 2, 2)),         # unknown: a literal
    ("wrn28_10", "dropout", "0.3", 0.3),                           # set by the config file
    ("wrn28_10", "block_type", "[3, 1]", (3, 1)),                  # a tuple
])
def test_model_kwarg_overrides_take_the_presets_types(model, key, text, value):
  c = tiny_config()
  c.model.name = model
  if key == "dropout":
    c.model.kwargs.dropout = 0.0
  got = config_lib.parse_model_kwarg(c, key, text)
  assert got == value and type(got) is type(value)


@pytest.mark.parametrize("key,text,match", [
    ("stochastic_depth", "half", "stochastic_depth=half: expected a value of type float"),
    ("widen_factor", "2.5", "widen_factor=2.5: expected a value of type int"),
    ("scan_blocks", "maybe", "scan_blocks=maybe: expected a value of type bool"),
])
def test_model_kwarg_override_of_the_wrong_type_names_it(key, text, match):
  c = tiny_config()
  c.model.name = "wrn28_10"
  with pytest.raises(ValueError, match=match):
    config_lib.parse_model_kwarg(c, key, text)


def test_launch_overrides_a_model_keyword_the_config_file_does_not_set(tmp_path):
  """`--config.model.kwargs.KEY=VALUE` (and `KEY VALUE`) for a keyword of the preset
  that the config file leaves at its default: ml_collections alone refuses it."""
  import json
  r = run_launch(["--config=experiments/quickstart.py", f"--workdir={tmp_path}",
                  "--config.num_steps=1", "--config.eval_every_epochs=100",
                  "--config.model.kwargs.stochastic_depth=0.5",
                  "--config.model.kwargs.stochastic_depth_per", "batch"], timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  kwargs = json.load(open(tmp_path / "config.json"))["model"]["kwargs"]
  assert kwargs["stochastic_depth"] == 0.5 and kwargs["stochastic_depth_per"] == "batch"


def test_model_kwarg_flags_are_taken_out_of_the_command_line_in_every_form():
  from flaxcnn import cli
  argv = ["launch.py", "--config=x.py", "--config.model.kwargs.a=1", "--config.model.kwargs.b",
          "2", "--config.model.kwargs.c", "--workdir=w", "--config.optimizer.lr=0.1"]
  rest, pairs = cli._pop_model_kwargs(argv)
  assert rest == ["launch.py", "--config=x.py", "--workdir=w", "--config.optimizer.lr=0.1"]
  assert pairs == [("a", "1"), ("b", "2"), ("c", "true")]


def test_a_model_keyword_the_config_file_sets_is_dropped_by_none_on_the_command_line():
  """--config.model.kwargs.KEY=None gives back the preset's default of a keyword the
  config file sets (before: a float's "expected a value of type float", a str's 'None')."""
  from flaxcnn import cli
  cli._parse_flags(["launch.py", "--config=experiments/stochastic_depth_resnet110.py",
                    "--config.model.kwargs.stochastic_depth=None",
                    "--config.model.kwargs.stochastic_depth_per=None",
                    "--config.model.kwargs.stochastic_depth_decay=uniform"])
  kwargs = cli.FLAGS.config.model.kwargs
  assert "stochastic_depth" not in kwargs and "stochastic_depth_per" not in kwargs
  assert kwargs.stochastic_depth_decay == "uniform"
  assert kwargs.stochastic_depth_mode == "inference_scale"
  c = tiny_config()
  c.model.name = "wrn28_10"
  with pytest.raises(ValueError, match="widen_factor=None gives the preset's default"):
    config_lib.parse_model_kwarg(c, "widen_factor", "wide")


def test_ctrl_c_before_the_training_loop_is_one_line_and_exit_130(tmp_path, monkeypatch,
                                                                   capsys):
  """Ctrl-C while data load or compile (the loop's own handler not yet installed):
  no KeyboardInterrupt traceback, a line saying the checkpoints are intact."""
  from flaxcnn import cli, train

  def interrupted(config, workdir):
    raise KeyboardInterrupt
  monkeypatch.setattr(train, "train_and_evaluate", interrupted)
  monkeypatch.setattr(cli, "_log_to_workdir", lambda workdir: None)
  cli._parse_flags(["launch.py", "--config=experiments/quickstart.py",
                    f"--workdir={tmp_path}"])
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["launch.py"])
  assert exit_info.value.code == 130
  err = capsys.readouterr().err
  assert err.startswith("interrupted; the checkpoints in") and err.count("\n") == 1


def test_an_optional_field_can_be_unset_from_the_command_line():
  """--config.num_steps=None turns a step budget back into num_epochs (ml_collections
  alone: "invalid literal for int()"); a required field cannot be unset."""
  from experiments import cifar10_jpeg_resnet20
  from flaxcnn import cli
  rest, fields = cli._pop_nones(["launch.py", "--config=x.py", "--config.num_steps=None",
                                 "--config.seed=1"])
  assert rest == ["launch.py", "--config=x.py", "--config.seed=1"] and fields == ["num_steps"]
  config = cifar10_jpeg_resnet20.get_config()
  assert config.num_steps == 1000
  cli._set_none(config, "num_steps")
  assert config.num_steps is None
  with pytest.raises(ValueError, match="batch_size is not optional"):
    cli._set_none(config, "batch_size")
  with pytest.raises(ValueError, match="has no field 'optimizer.lrr'"):
    cli._set_none(config, "optimizer.lrr")


def test_fields_a_later_version_added_or_removed_are_not_changes_of_a_run(tmp_path):
  """A run saved before config.job, config.task and config.features existed (and with
  the old config.mode) is the same config, not a changed one; a real change is."""
  import json
  from flaxcnn import workdir as workdir_lib
  c = tiny_config()
  saved = json.loads(c.to_json_best_effort())
  for field in ("job", "task", "features"):
    del saved[field]
  saved["mode"] = "train"
  (tmp_path / "config.json").write_text(json.dumps(saved))
  assert workdir_lib.config_changes(c, str(tmp_path)) == {}
  c.job, c.optimizer.lr = "eval", 0.01
  assert workdir_lib.config_changes(c, str(tmp_path)) == {"job": (None, "eval"),
                                                          "optimizer.lr": (0.05, 0.01)}


def test_a_mistyped_field_names_where_and_what_it_likely_means(tmp_path):
  """A field set in a config file was reported as "the config has no field 'Key'";
  --config.optimizer.learning_rate did not point to optimizer.lr."""
  bad = tmp_path / "bad.py"
  bad.write_text("from flaxcnn.config import default_config\n\n\ndef get_config():\n"
                 "  c = default_config()\n  c.optimizer.learning_rate = 0.1\n  return c\n")
  r = run_launch([f"--config={bad}", f"--workdir={tmp_path / 'w'}"])
  assert r.returncode == 2 and r.stderr.count("\n") == 1
  assert (f"{bad}:6: the config has no field 'learning_rate'; did you mean "
          "'optimizer.lr'?") in r.stderr
  r = run_launch(["--config=experiments/quickstart.py", f"--workdir={tmp_path / 'w'}",
                  "--config.optimizer.momentm=0.5"])
  assert "--config.optimizer.momentm: the config has no field 'optimizer.momentm'; did you " \
         "mean 'optimizer.momentum'?" in r.stderr
  assert not (tmp_path / "w").exists()


def test_help_shows_the_commands_own_flags():
  """--help showed the docstring and 'Try --helpfull' (716 lines of absl and JAX)."""
  r = run_launch(["--help"])
  assert r.returncode == 0
  assert "--workdir: directory for checkpoints" in r.stdout and "--config.FIELD=VALUE" in r.stdout
  assert "--jax_platforms" not in r.stdout and "--xla_" not in r.stdout   # absl's and JAX's
  assert len(r.stdout.splitlines()) < 80


def test_the_installed_command_is_the_launcher():
  """pip install gives a `flaxcnn` command (console entry point) with launch.py's flags."""
  import shutil
  import subprocess
  exe = shutil.which("flaxcnn")
  if exe is None:
    pytest.skip("flaxcnn is not pip-installed here (pip install -e . adds the command)")
  r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=300)
  assert r.returncode == 0 and "--workdir: directory for checkpoints" in r.stdout


def test_a_pip_install_runs_the_recipes_by_name_from_any_directory(tmp_path):
  """A non-editable `pip install .` (into a fresh venv that sees this machine's
  packages) ships the config files: `flaxcnn --config=quickstart` runs from any
  directory with the installed copy of flaxcnn."""
  import shutil
  import subprocess
  setuptools = pytest.importorskip("setuptools", reason="building the wheel offline needs "
                                   "setuptools in this environment")
  if tuple(int(x) for x in setuptools.__version__.split(".")[:2]) < (70, 1):
    pytest.importorskip("wheel", reason="setuptools < 70.1 builds wheels with `wheel`")
  src = tmp_path / "src"
  src.mkdir()
  for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "flaxcnn", "experiments"):
    if os.path.isdir(os.path.join(ROOT, name)):
      shutil.copytree(os.path.join(ROOT, name), src / name,
                      ignore=shutil.ignore_patterns("__pycache__"))
    else:
      shutil.copy(os.path.join(ROOT, name), src)
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                 check=True, timeout=300)
  r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                      "--no-deps", "--no-build-isolation", "--no-index", str(src)],
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}   # the installed copy
  r = subprocess.run([str(venv / "bin" / "flaxcnn"), "--config=quickstart",
                      "--workdir=run", "--config.num_steps=2"],
                     cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "Finished resnet20_cifar (depth=8) on digits: step 2" in r.stdout + r.stderr
  r = subprocess.run([str(venv / "bin" / "python"), "-c",
                      "import flaxcnn, flaxcnn.config as c; print(flaxcnn.__file__); "
                      "print(c.find_config_file('ablations/wrn_width.py:cifar100'))"],
                     cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
  module, found = r.stdout.split()
  assert module.startswith(str(venv)) and found.startswith(str(venv))
  assert found.endswith(os.path.join("share", "flaxcnn", "experiments", "ablations",
                                     "wrn_width.py:cifar100"))


@pytest.mark.parametrize("name, what", [("c.txt", "not a .py file"), ("c.json", "not a .py file"),
                                        ("folder", "a folder")])
def test_a_config_that_is_not_a_python_file_is_named_in_one_line(tmp_path, name, what):
  path = tmp_path / name
  path.mkdir() if name == "folder" else path.write_text('{"this": 1}')
  with pytest.raises(ValueError, match=f"a config is a Python file .* this is {what}"):
    config_lib.find_config_file(f"{path}:arg")


def test_a_config_source_is_parsed_and_loaded_by_one_function(tmp_path):
  """'FILE[:ARG]': the argument after the first colon unless the whole exists as a
  path; found by name among experiments/ as --config finds it."""
  assert config_lib.split_source("experiments/quickstart.py:a,b=1") == (
      "experiments/quickstart.py", "a,b=1")
  odd = tmp_path / "a:b.py"
  odd.write_text("def get_config():\n  return 1\n")
  assert config_lib.split_source(str(odd)) == (str(odd), "")
  module, path, arg = config_lib.load_config_file("ablations/digits_depth:seeds=1")
  assert path.endswith(os.path.join("ablations", "digits_depth.py")) and arg == "seeds=1"
  assert callable(module.get_sweep)
  with pytest.raises(FileNotFoundError, match="missing.py does not exist"):
    config_lib.load_config_file(str(tmp_path / "missing.py"))


def _schema(c, prefix=""):
  """[dotted field, repr of its default, its type] of every field, sections first
  as ['section', 'ConfigDict', locked]."""
  out = []
  for k, v in c.items():
    if isinstance(v, ml_collections.ConfigDict):
      out.append([prefix + k, "ConfigDict", v.is_locked])
      out += _schema(v, prefix + k + ".")
    else:
      kind = getattr(c._fields[k], "_field_type", None) or type(v)
      out.append([prefix + k, repr(v), kind.__name__])
  return out


def test_the_schema_assembled_from_its_sections_is_the_one_config_files_know():
  """default_config() takes its sections from the modules that read them; every
  field, default, type and lock is as tests/default_config_schema.json records."""
  with open(os.path.join(ROOT, "tests", "default_config_schema.json")) as f:
    expected = json.load(f)
  assert _schema(config_lib.default_config()) == expected
