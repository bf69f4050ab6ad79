"""The README's model zoo (flaxcnn/zoo.py): every preset is listed, and its rows are
what the models compute now (a few cheap presets recomputed here); CITATION.cff."""
import os

import pytest

from conftest import ROOT
from flaxcnn import zoo
from flaxcnn.models import registry, summary


def _readme_rows():
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  assert zoo.BEGIN in text and zoo.END in text
  block = text.split(zoo.BEGIN, 1)[1].split(zoo.END, 1)[0].strip().splitlines()
  assert "\n".join(block[:2]) == zoo.HEADER
  return {line.split("|")[1].strip(" `"): line for line in block[2:]}


def test_the_readme_lists_every_preset():
  assert sorted(_readme_rows()) == registry.list_models()


@pytest.mark.parametrize("name", ["resnet20_cifar", "wrn16_4", "densenet_40_12",
                                  "efficientnet_b0"])
def test_readme_rows_are_what_the_models_compute(name):
  configs = zoo.config_files()
  _, params, macs, size = summary.summarize(name)
  assert _readme_rows()[name] == zoo.row(name, params, macs, size, configs.get(name, []))


def test_config_files_of_a_preset_and_the_block_rewrite():
  configs = zoo.config_files()
  assert "resnet_cifar.py" in configs["resnet56_cifar"]
  assert "imagenet.py" in configs["se_resnet50_v1"] and "imagenet.py" in configs["densenet121"]
  assert "ablations/resnext_cardinality.py" in configs["resnext50_4x24d"]
  text = f"intro\n{zoo.BEGIN}\nold\n{zoo.END}\nrest\n"
  assert zoo.replace_in(text, "NEW") == f"intro\n{zoo.BEGIN}\nNEW\n{zoo.END}\nrest\n"
  with pytest.raises(ValueError, match="no model zoo block"):
    zoo.replace_in("no markers", "NEW")


def test_citation_file_is_valid_and_matches_the_package_version():
  import configparser
  yaml = pytest.importorskip("yaml")
  with open(os.path.join(ROOT, "CITATION.cff")) as f:
    cff = yaml.safe_load(f)
  assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
  assert cff["title"] and cff["message"] and cff["authors"][0]["name"]
  setup = configparser.ConfigParser()
  setup.read(os.path.join(ROOT, "setup.cfg"))
  assert str(cff["version"]) == setup["metadata"]["version"]
  assert cff["license"] == setup["metadata"]["license"]


def test_the_model_modules_docstring_examples_build():
  """Every `create_model(...)` line in a model module's docstring builds its model."""
  import importlib
  import pkgutil
  import re

  import flaxcnn.models
  from flaxcnn.models import create_model
  examples = []
  for info in pkgutil.iter_modules(flaxcnn.models.__path__):
    doc = importlib.import_module(f"flaxcnn.models.{info.name}").__doc__ or ""
    examples += re.findall(r"create_model\((.*?)\)\s*(?:#|$)", doc, re.M)
  assert len(examples) >= 2
  for args in examples:
    import jax.numpy as jnp
    eval(f"create_model({args})", {"create_model": create_model, "jnp": jnp})   # noqa: S307


def test_a_family_is_discovered_and_a_broken_one_is_named(tmp_path, monkeypatch):
  """Families are the package's modules (no list to edit); one that fails to import
  stops the registry with its name instead of 'unknown model preset'."""
  import subprocess
  import sys

  from conftest import ROOT
  from flaxcnn.models import _families
  assert {"resnet", "wide_resnet", "densenet", "unet"} <= set(_families.family_modules())
  pkg = tmp_path / "flaxcnn"
  import shutil
  shutil.copytree(os.path.join(ROOT, "flaxcnn"), pkg,
                  ignore=shutil.ignore_patterns("__pycache__"))
  (pkg / "models" / "toynet.py").write_text(
      "from flaxcnn.models import registry\nimport no_such_module_here\n")
  r = subprocess.run([sys.executable, "-c", "from flaxcnn.models import create_model; "
                      "create_model('resnet20_cifar')"], cwd=tmp_path, capture_output=True,
                     text=True, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
  assert r.returncode != 0
  assert "model family flaxcnn/models/toynet.py failed to import" in r.stderr
  assert "No module named 'no_such_module_here'" in r.stderr
