"""Schedules in epochs, the weight-decay mask and the TF-style RMSProp."""
import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from flaxcnn import optim, tasks
from flaxcnn.train import loop


def _lr(config, steps, spe=100, total=1000):
  s = optim.make_schedule(config, spe, total)
  return np.array([float(s(t)) for t in steps])


def test_piecewise_wrn_schedule():
  c = tiny_config(**{"schedule.name": "piecewise", "optimizer.lr": 0.1})
  c.schedule.boundaries = (60.0, 120.0, 160.0)
  c.schedule.factor = 0.2
  lr = _lr(c, [0, 5999, 6000, 11999, 12000, 16000], spe=100, total=20000)
  np.testing.assert_allclose(lr, [0.1, 0.1, 0.02, 0.02, 0.004, 0.0008], rtol=1e-5)


def test_cosine_and_warmup():
  c = tiny_config(**{"schedule.name": "cosine", "optimizer.lr": 0.1,
                     "schedule.warmup_epochs": 1.0})
  lr = _lr(c, [0, 49, 99, 100, 550, 1000], spe=100, total=1000)
  np.testing.assert_allclose(lr[:3], [0.001, 0.05, 0.1], rtol=1e-5)
  assert lr[3] == pytest.approx(0.1, rel=1e-5)
  assert lr[4] == pytest.approx(0.05, rel=1e-3)
  assert lr[5] == pytest.approx(0.0, abs=1e-7)


def test_exponential_efficientnet_schedule():
  c = tiny_config(**{"schedule.name": "exponential", "optimizer.lr": 0.256,
                     "schedule.decay_rate": 0.97, "schedule.decay_epochs": 2.4})
  lr = _lr(c, [0, 239, 240, 480], spe=100, total=10000)
  np.testing.assert_allclose(lr, [0.256, 0.256, 0.256 * 0.97, 0.256 * 0.97 ** 2], rtol=1e-5)


def test_plateau_detector():
  p = optim.Plateau(patience=2, factor=0.1)
  best, bad = np.inf, 0
  mults = []
  for err in [0.5, 0.4, 0.41, 0.42, 0.40, 0.39]:
    best, bad, m = p.update(best, bad, err)
    mults.append(m)
  assert mults == [1, 1, 1, 0.1, 1, 1]


@dataclasses.dataclass
class _PlateauState:
  plateau_best: object
  plateau_bad: object
  lr_scale: object

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)


def _plateau_scales(task, validations):
  """The learning-rate scale after each validation of a run of `task` with the
  plateau schedule (patience 1)."""
  c = tiny_config(**{"schedule.name": "plateau", "schedule.patience": 1,
                     "schedule.factor": 0.1})
  ctx = types.SimpleNamespace(config=c, summary={}, console=types.SimpleNamespace(
      line=lambda text: None), run=types.SimpleNamespace(task=task, replicated=None))
  rule = loop.Plateau(ctx, evaluation=None)
  state = _PlateauState(np.float32(np.inf), np.int32(0), np.float32(1.0))
  scales = []
  for step, validation in enumerate(validations, 1):
    ctx.summary["validation"] = validation
    state = rule(state, step)
    scales.append(float(state.lr_scale))
  return scales


def test_the_plateau_rule_follows_the_tasks_metric():
  """Segmentation's plateau is on the validation mean IoU: a rising pixel accuracy
  at a flat mean IoU is a plateau there, an improvement for classification."""
  validations = [{"accuracy": 0.90, "mean_iou": 0.40}, {"accuracy": 0.95, "mean_iou": 0.40}]
  assert _plateau_scales(tasks.get("segmentation"), validations) == pytest.approx([1.0, 0.1])
  assert _plateau_scales(tasks.get("classification"), validations) == pytest.approx([1.0, 1.0])


def test_weight_decay_mask_only_kernels():
  params = {"Conv_0": {"kernel": jnp.ones((3, 3, 3, 4))},
            "BatchNorm_0": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
            "head": {"kernel": jnp.ones((4, 2)), "bias": jnp.zeros(2)}}
  mask = optim.weight_decay_mask(params)
  assert mask == {"Conv_0": {"kernel": True}, "BatchNorm_0": {"scale": False, "bias": False},
                  "head": {"kernel": True, "bias": False}}
  c = tiny_config(**{"optimizer.weight_decay": 0.5, "optimizer.momentum": 0.0,
                     "optimizer.nesterov": False, "optimizer.lr": 1.0})
  tx = optim.make_optimizer(c, params)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  # Zero gradient: only the decayed leaves move, by -lr * wd * w.
  assert float(updates["Conv_0"]["kernel"][0, 0, 0, 0]) == pytest.approx(-0.5)
  assert float(updates["BatchNorm_0"]["scale"][0]) == 0.0
  assert float(updates["head"]["bias"][0]) == 0.0


def test_rmsprop_tf_first_step():
  # TF1 RMSProp: ms starts at 1, ms = 0.9 + 0.1 g^2, update = lr g / sqrt(ms + eps).
  tx = optim.rmsprop_tf(0.1, decay=0.9, eps=1e-3, momentum=0.9)
  p = jnp.zeros(1)
  g = jnp.array([2.0])
  u, s = tx.update(g, tx.init(p), p)
  expected = -0.1 * 2.0 / np.sqrt(0.9 + 0.1 * 4 + 1e-3)
  assert float(u[0]) == pytest.approx(expected, rel=1e-5)
  u2, _ = tx.update(g, s, p)
  ms2 = 0.9 * (0.9 + 0.4) + 0.4
  assert float(u2[0]) == pytest.approx(0.9 * expected - 0.1 * 2.0 / np.sqrt(ms2 + 1e-3), rel=1e-5)


def test_constant_warmup_resnet110():
  """He et al. 2015 (Sec. 4.2): ResNet-110 trains at 0.01 for about 400 iterations,
  then at 0.1 (the config's constant warm-up at 0.1 x the peak)."""
  c = tiny_config(**{"schedule.name": "piecewise", "optimizer.lr": 0.1,
                     "schedule.warmup": "constant", "schedule.warmup_factor": 0.1})
  c.schedule.boundaries = (91.0, 137.0)
  c.schedule.factor = 0.1
  c.schedule.warmup_epochs = 400 / 351
  lr = _lr(c, [0, 399, 400, 31940, 31941], spe=351, total=64000)
  np.testing.assert_allclose(lr, [0.01, 0.01, 0.1, 0.1, 0.01], rtol=1e-5)


def test_exponential_decay_counted_from_step_zero_or_from_warmup_end():
  c = tiny_config(**{"schedule.name": "exponential", "optimizer.lr": 0.256,
                     "schedule.decay_rate": 0.97, "schedule.decay_epochs": 2.4,
                     "schedule.warmup_epochs": 5.0})
  # From the end of the warm-up (500 steps): first decay at 500 + 240.
  lr = _lr(c, [0, 499, 500, 739, 740], spe=100, total=10000)
  np.testing.assert_allclose(lr, [0.256 / 500, 0.256, 0.256, 0.256, 0.256 * 0.97], rtol=1e-5)
  # From step 0 (the TF reference): at step 500, floor(500 / 240) = 2 periods have passed.
  c.schedule.decay_begin = "start"
  lr = _lr(c, [499, 500, 719, 720], spe=100, total=10000)
  np.testing.assert_allclose(lr, [0.256, 0.256 * 0.97 ** 2, 0.256 * 0.97 ** 2,
                                  0.256 * 0.97 ** 3], rtol=1e-5)


def test_piecewise_with_min_lr_and_unknown_warmup():
  c = tiny_config(**{"schedule.name": "piecewise", "optimizer.lr": 0.1,
                     "schedule.min_lr": 0.005})
  c.schedule.boundaries = (1.0, 2.0)
  c.schedule.factor = 0.1
  np.testing.assert_allclose(_lr(c, [99, 100, 200]), [0.1, 0.01, 0.005], rtol=1e-5)
  c.schedule.warmup_epochs = 1.0
  c.schedule.warmup = "cubic"
  with pytest.raises(ValueError, match="schedule.warmup"):
    optim.make_schedule(c, 100, 1000)


def test_ema_warmup_matches_tensorflow_exponential_moving_average():
  """config.ema_warmup: TF's ExponentialMovingAverage(decay, num_updates=global_step),
  as the EfficientNet reference applies it after each train op (global_step already
  incremented: update n sees num_updates = n)."""
  tf = pytest.importorskip("tensorflow")
  from flaxcnn.train import steps
  config = tiny_config(ema_decay=0.9999, ema_warmup=True)
  params = np.random.default_rng(0).normal(size=(21, 5)).astype(np.float32)   # p_0..p_20
  var = tf.Variable(params[0])
  step = tf.Variable(0, dtype=tf.int64)
  reference = tf.train.ExponentialMovingAverage(0.9999, num_updates=step)
  reference.apply([var])          # creates the average at p_0 (an update of p_0 by p_0)
  ours = jnp.asarray(params[0])
  for n in range(1, 21):
    var.assign(params[n])
    step.assign_add(1)
    reference.apply([var])
    d = steps.ema_decay(config, jnp.int32(n))
    ours = d * ours + (1 - d) * params[n]
  # float32 on both sides, 20 updates of O(1) values: a few ulp per update.
  np.testing.assert_allclose(ours, reference.average(var).numpy(), rtol=1e-5, atol=1e-6)
  assert float(steps.ema_decay(config, jnp.int32(1))) == pytest.approx(2 / 11)
  config.ema_warmup = False
  assert steps.ema_decay(config, 1) == 0.9999
