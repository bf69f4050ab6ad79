"""Each extension point takes a new thing from one place: here, a toy optimizer,
schedule, warm-up, job, data source, model family and regularizer, each added from
this file alone and then used through a config. (A toy launcher:
tests/test_launchers.py.)"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import tiny_config
from flaxcnn import cli, config as config_lib, data, jobs, models, optim
from flaxcnn.data import Dataset, Split
from flaxcnn.models import registry, regularization


@pytest.fixture(autouse=True)
def fresh_tables(monkeypatch):
  """The registries as they were once each test ends."""
  for module, name in ((optim, "OPTIMIZERS"), (optim, "SCHEDULES"), (optim, "WARMUPS"),
                       (data, "SOURCES"), (jobs, "JOBS"), (registry, "_PRESETS"),
                       (regularization, "REGULARIZERS")):
    monkeypatch.setattr(module, name, dict(getattr(module, name)))


def test_a_toy_optimizer_schedule_and_warmup_are_usable_from_a_config():
  @optim.optimizer("toy_sign_sgd")
  def toy_sign_sgd(o, learning_rate, mask):
    return optax.chain(optax.scale_by_sign(), optax.scale_by_learning_rate(learning_rate))

  @optim.schedule("toy_halving")
  def toy_halving(s, lr, steps_per_epoch, warmup, total_steps):
    return lambda t: lr * 0.5 ** (t // steps_per_epoch)

  @optim.warmup("toy_flat")
  def toy_flat(s, lr, steps):
    return optax.constant_schedule(lr / 4)

  c = tiny_config(**{"optimizer.name": "toy_sign_sgd", "schedule.name": "toy_halving",
                     "schedule.warmup": "toy_flat", "schedule.warmup_epochs": 1.0})
  config_lib.validate(c)
  rate = optim.make_schedule(c, steps_per_epoch=10, total_steps=100)
  # the warm-up (a quarter of the peak) for an epoch, then halving each epoch from its end
  assert [float(rate(t)) for t in (0, 9, 10, 20)] == pytest.approx([0.0125, 0.0125, 0.05, 0.025])
  params = {"w": jnp.ones(3)}
  tx = optim.make_optimizer(c, params)
  updates, _ = tx.update({"w": jnp.array([2.0, -3.0, 0.0])}, tx.init(params), params)
  assert np.allclose(updates["w"], [-0.05, 0.05, 0.0])
  c.optimizer.name = "toy_sign_sgd_typo"
  with pytest.raises(ValueError, match="is not one of .*toy_sign_sgd"):
    config_lib.validate(c)


def test_a_toy_job_runs_from_a_config(tmp_path):
  ran = []

  @jobs.register("toy_count")
  def toy_count(config, workdir):
    ran.append((config.job, workdir))
    return 7

  c = tiny_config(job="toy_count")
  config_lib.validate(c)
  assert cli.run_job(c, str(tmp_path)) == 7 and ran == [("toy_count", str(tmp_path))]


def test_a_toy_data_source_loads_from_a_config():
  @data.source("toy_stripes")
  def toy_stripes(config):
    images = np.zeros((40, 8, 8, 3), np.uint8)
    images[20:, ::2] = 255
    labels = np.repeat(np.arange(2, dtype=np.int32), 20)
    split = Split(images, labels)
    return Dataset("toy_stripes", 2, {"train": split, "validation": split, "test": split},
                   (0.5,) * 3, (0.5,) * 3)

  c = tiny_config(**{"data.source": "toy_stripes", "data.name": "stripes"})
  config_lib.validate(c)
  dataset = data.load(c)
  assert dataset.num_classes == 2 and dataset.splits["train"].images.shape == (40, 8, 8, 3)


def test_a_toy_model_family_builds_from_a_config():
  class ToyNet(nn.Module):
    num_classes: int = 10
    width: int = 4
    regularization: models.regularization.Regularization = \
        models.regularization.Regularization()
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
      self.regularization.check("ToyNet", 1, ("dropout",))
      x = nn.relu(nn.Conv(self.width, (3, 3), dtype=self.dtype)(x)).mean(axis=(1, 2))
      x = nn.Dropout(self.regularization.dropout, deterministic=not train)(x)
      return nn.Dense(self.num_classes, dtype=self.dtype)(x)

  registry.register("toy_net", ToyNet, image_size=8, num_classes=10)
  c = tiny_config(**{"model.name": "toy_net"})
  c.model.kwargs = {"width": 6, "dropout": 0.1}
  config_lib.validate(c)
  model = models.build_model(c, num_classes=10)
  assert model.width == 6 and model.regularization.dropout == 0.1
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))
  assert variables["params"]["Dense_0"]["kernel"].shape == (6, 10)
  c.model.kwargs = {"stochastic_depth": 0.5}
  with pytest.raises(ValueError, match="ToyNet has no stochastic depth"):
    config_lib.validate(c)


def test_a_toy_regularizer_is_set_from_a_config_and_refused_where_unimplemented():
  def check(reg):
    if reg.toy_noise_std < 0:
      raise ValueError(f"toy_noise_std: must be >= 0, got {reg.toy_noise_std}")

  regularization.register(
      regularization.Regularizer("toy_feature_noise", ("toy_noise_std",),
                                 on=lambda reg: reg.toy_noise_std > 0, check=check),
      toy_noise_std=0.0)

  class NoisyToyNet(nn.Module):
    """Adds Gaussian noise of `toy_noise_std` to its features in training."""
    num_classes: int = 10
    regularization: models.regularization.Regularization = \
        models.regularization.Regularization()
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
      self.regularization.check("NoisyToyNet", 1, ("toy_feature_noise",))
      x = nn.Conv(4, (3, 3), dtype=self.dtype)(x).mean(axis=(1, 2))
      if train:
        x = x + self.regularization.toy_noise_std * jax.random.normal(
            self.make_rng("dropout"), x.shape)
      return nn.Dense(self.num_classes, dtype=self.dtype)(x)

  registry.register("noisy_toy_net", NoisyToyNet, image_size=8, num_classes=10)
  c = tiny_config(**{"model.name": "noisy_toy_net"})
  c.model.kwargs = {"toy_noise_std": config_lib.parse_model_kwarg(c, "toy_noise_std", "0.5")}
  config_lib.validate(c)
  model = models.build_model(c, num_classes=10)
  assert model.regularization.toy_noise_std == 0.5
  assert regularization.Regularization().toy_noise_std == 0.0
  x = jnp.ones((2, 8, 8, 3))
  variables = model.init(jax.random.PRNGKey(0), x)
  noisy = [model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(k)})
           for k in (1, 2)]
  assert not np.allclose(noisy[0], noisy[1])
  assert np.array_equal(model.apply(variables, x), model.apply(variables, x))
  c.model.kwargs = {"toy_noise_std": -1.0}
  with pytest.raises(ValueError, match="toy_noise_std: must be >= 0, got -1.0"):
    config_lib.validate(c)
  # a family that does not implement it refuses it; one that does not set it is unchanged
  c = tiny_config()
  c.model.kwargs = {"toy_noise_std": 0.5}
  with pytest.raises(ValueError, match="has no toy feature noise"):
    config_lib.validate(c)
  c.model.kwargs = {"toy_noise_std": 0.0, "dropout": 0.0}
  config_lib.validate(c)
  with pytest.raises(ValueError, match="already registered"):
    regularization.register(regularization.Regularizer("toy_feature_noise", ("x",),
                                                       on=lambda reg: False), x=0)
