"""Feature extraction: pooled features of a trained backbone, cached, and a
logistic-regression head trained on the cache."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from flaxcnn import features, models, pretrained, train


def feature_config(backbone, cache_dir, **overrides):
  from experiments import feature_extraction
  c = feature_extraction.get_config()
  c.features.backbone = str(backbone)
  c.features.cache_dir = str(cache_dir)
  c.features.head_steps = 300
  for k, v in overrides.items():
    node = c
    parts = k.split(".")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = v
  return c


@pytest.fixture(scope="module")
def backbone_run(tmp_path_factory):
  """ResNet-8 trained briefly on the digits (30 steps)."""
  workdir = tmp_path_factory.mktemp("backbone")
  config = tiny_config(num_steps=30, checkpoint_every_steps=30)
  summary = train.train_and_evaluate(config, str(workdir))
  return workdir, summary


def _key():
  return jax.random.key(0, impl="rbg")   # compiles much faster on CPU than threefry


@pytest.mark.parametrize("name,kwargs", [
    ("resnet20_cifar", dict(depth=8)),
    ("wrn16_4", dict()),
    ("densenet_bc_100_12", dict(depth=10, growth_rate=4)),
])
def test_pooled_features_are_what_the_classifier_pools(name, kwargs):
  """logits == pooled features @ head kernel + head bias, for each family."""
  if name not in models.list_models():
    pytest.skip(f"{name} is not registered")
  model = models.create_model(name, num_classes=5, **kwargs)
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 16, 16, 3))
  variables = jax.jit(lambda k, x: model.init(k, x, train=False))(_key(), x)
  logits, feats = jax.jit(lambda v, x: (model.apply(v, x, train=False),
                                        features.pooled_features(model, v, x)))(variables, x)
  params = variables["params"]
  head = params["head"]
  assert feats.shape == (3, head["kernel"].shape[0])
  np.testing.assert_allclose(feats @ head["kernel"] + head["bias"], logits, atol=1e-4, rtol=1e-4)
  # The classifier's parameters are not needed.
  backbone_only = {"params": {k: v for k, v in params.items()
                              if k != "head"},
                   "batch_stats": variables.get("batch_stats", {})}
  again = jax.jit(lambda v, x: features.pooled_features(model, v, x))(backbone_only, x)
  np.testing.assert_allclose(again, feats, atol=1e-6)


def test_no_classifier_is_an_error():
  model = models.create_model("unet_small", num_classes=2, base_features=4, depth=1)
  x = jnp.zeros((1, 8, 8, 1))
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
  with pytest.raises(features.NoClassifier):
    jax.eval_shape(lambda v: features.pooled_features(model, v, x), variables)


def test_features_of_a_trained_backbone_train_a_head_and_are_cached(backbone_run, tmp_path,
                                                                     monkeypatch):
  workdir, _ = backbone_run
  cache = tmp_path / "cache"
  config = feature_config(workdir, cache)
  summary = features.run(config, str(tmp_path / "head1"))
  assert not summary["from_cache"]
  assert summary["feature_dim"] == 64          # ResNet-8's last stage: 64 channels
  assert summary["test"]["count"] == 360 and summary["validation"]["count"] == 180
  assert summary["test"]["accuracy"] > 0.7, summary    # chance: 0.1
  assert os.path.exists(summary["cache"])
  assert summary["cache"].startswith(str(cache / "resnet20_cifar-step30-"))
  assert (tmp_path / "head1" / "summary.json").exists()
  assert (tmp_path / "head1" / "head.npz").exists()

  # Second call: the cache, and the backbone never runs.
  def no_backbone(*args, **kwargs):
    raise AssertionError("the backbone ran although its features are cached")
  monkeypatch.setattr(features, "extract_features", no_backbone)
  monkeypatch.setattr(features, "pooled_features", no_backbone)
  again = features.run(feature_config(workdir, cache, **{"features.head_l2": 1e-2}),
                       str(tmp_path / "head2"))
  assert again["from_cache"] and again["cache"] == summary["cache"]
  assert again["test"]["accuracy"] > 0.7

  # Another dataset (here: another validation split) is another cache entry.
  monkeypatch.undo()
  other = features.run(feature_config(workdir, cache, **{"data.validation_size": 200}),
                       str(tmp_path / "head3"))
  assert not other["from_cache"] and other["cache"] != summary["cache"]
  assert len(os.listdir(os.path.dirname(summary["cache"]))) == 2


def test_features_are_exactly_the_backbone_pooled_features(backbone_run, tmp_path):
  workdir, _ = backbone_run
  config = feature_config(workdir, tmp_path)
  backbone = features.backbone_from_workdir(str(workdir))
  from flaxcnn import data as data_lib
  dataset = data_lib.load(config)
  feats = features.cached_features(config, backbone, dataset)
  x, y = feats.splits["test"]
  split = dataset.splits["test"]
  np.testing.assert_array_equal(y, split.labels)
  images = (split.images[:50] / 255.0 - np.asarray(backbone.mean)) / np.asarray(backbone.std)
  expected = jax.jit(lambda v, x: features.pooled_features(backbone.model, v, x))(
      backbone.variables, jnp.asarray(images, jnp.float32))
  np.testing.assert_allclose(x[:50], expected, atol=1e-5)
  # The logits of the run's own head follow from them.
  head = backbone.variables["params"]["head"]
  logits = jax.jit(lambda v, x: backbone.model.apply(v, x, train=False))(
      backbone.variables, jnp.asarray(images, jnp.float32))
  np.testing.assert_allclose(x[:50] @ head["kernel"] + head["bias"], logits, atol=1e-4)


def test_imported_weights_as_backbone(tmp_path):
  """A torchvision-layout state dict (random numbers here) as the backbone:
  grayscale digits are repeated to RGB and resized; the cache key names the preset."""
  rng = np.random.RandomState(0)
  sd = {k: (rng.standard_normal(shape) * 0.05).astype(np.float32) if "running_var" not in k
        else np.ones(shape, np.float32)
        for k, (_, _, shape) in pretrained.key_map("resnet18").items()}
  path = tmp_path / "resnet18.npz"
  np.savez(path, **sd)
  config = feature_config(path, tmp_path / "cache", **{"features.image_size": 16,
                                                       "features.head_steps": 50})
  summary = features.run(config, str(tmp_path / "head"))
  assert summary["feature_dim"] == 512
  assert os.path.basename(os.path.dirname(summary["cache"])).startswith("resnet18-imported-")
  assert summary["test"]["count"] == 360


def test_the_command(backbone_run, tmp_path):
  import subprocess
  import sys
  from conftest import ROOT
  workdir, _ = backbone_run
  env = dict(os.environ, PYTHONPATH=ROOT)
  out = subprocess.run(
      [sys.executable, "launch.py", "--config=experiments/feature_extraction.py",
       f"--workdir={tmp_path / 'cmd'}", f"--config.features.backbone={workdir}",
       f"--config.features.cache_dir={tmp_path / 'cache'}", "--config.features.head_steps=100"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "computed and cached in" in out.stdout and "head test" in out.stdout
  assert "read_only" not in out.stdout + out.stderr   # Orbax's notes on read-only managers
  assert (tmp_path / "cmd" / "summary.json").exists()
  bad = subprocess.run(
      [sys.executable, "-m", "flaxcnn", "--config=experiments/feature_extraction.py",
       f"--workdir={tmp_path / 'bad'}", "--config.features.backbone=/nonexistent"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert bad.returncode != 0 and "does not exist" in bad.stderr


def test_a_batch_the_devices_cannot_share_is_one_line_before_any_work(tmp_path, monkeypatch):
  """Training refuses eval_batch_size % devices != 0 in validate; extraction did not
  (a raw sharding error after loading the backbone)."""
  monkeypatch.setattr(features.jax, "device_count", lambda: 2)
  config = feature_config(tmp_path / "no-backbone-needed", tmp_path / "cache",
                          eval_batch_size=255)
  with pytest.raises(ValueError, match=r"config.eval_batch_size=255 must be divisible by "
                                       r"the 2 devices"):
    features.run(config, str(tmp_path / "run"))


def test_the_backbone_normalization_comes_from_the_run_not_from_reloading_its_data(
    backbone_run, monkeypatch):
  """Training saves its data's statistics (WORKDIR/data.json); the backbone reads
  them instead of loading the whole training set again."""
  import json
  workdir, _ = backbone_run
  saved = json.load(open(workdir / "data.json"))
  assert saved["num_classes"] == 10 and saved["image_shape"] == [8, 8, 1]

  def no_reload(config):
    raise AssertionError("the training data was loaded again")
  monkeypatch.setattr(features.data_lib, "load", no_reload)
  backbone = features.backbone_from_workdir(str(workdir))
  assert backbone.mean == tuple(saved["mean"]) and backbone.std == tuple(saved["std"])


def test_features_into_the_backbones_own_workdir_are_refused(backbone_run, tmp_path):
  """The head's metrics, summary and config replaced the training run's (exit 0)."""
  workdir, _ = backbone_run
  before = sorted(os.listdir(workdir))
  config = feature_config(workdir, tmp_path / "cache")
  with pytest.raises(ValueError, match="is the backbone's own run"):
    features.run(config, str(workdir) + "/")
  assert sorted(os.listdir(workdir)) == before
