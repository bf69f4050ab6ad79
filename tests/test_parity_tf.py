"""Recipe step parity with TensorFlow for the EfficientNet recipes, on the CPU.

The EfficientNet and EfficientNetV2 references are TensorFlow code; their training
after the gradient is TF objects: the L2 loss wd * sum(l2_loss(v)) over the weights
(not BatchNorm), `tf.compat.v1.train.RMSPropOptimizer(decay 0.9, momentum 0.9,
epsilon 1e-3)` (mean square starting at 1, epsilon inside the square root, the
learning rate inside the momentum), the learning rate
`exponential_decay(lr, global_step, 2.4 epochs, 0.97, staircase=True)` replaced
during the warm-up by lr x global_step / warmup_steps, and
`ExponentialMovingAverage(0.9999, num_updates=global_step)` applied after each step.

Here the same gradients (a fixed random stream, so the comparison does not hinge
on a network) go through flaxcnn's optimizer, schedule and EMA as the recipe
configures them (`optim.make_optimizer`, `optim.make_schedule`, `steps.ema_decay`,
composed as `train.steps.update` composes them) and through those TF objects,
for K = 12 steps with the schedule shrunk (4 steps per epoch, a 1-epoch warm-up,
decay every 0.5 epochs) so they cross the warm-up and three decays.

Tolerance: float32 on both sides; each step adds a few float32 roundings to
values of order lr x 10 (RMSProp's normalized step on momentum), so after K
steps a parameter differs by at most ~K x 10 ulp of its size: rtol 1e-5 (K = 12).
One difference is kept: the reference's L2 also decays the classifier's bias;
ours decays kernels only (1,000 of 5.3M parameters for B0), so the test's TF side
decays the same leaves as ours.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import ROOT
from flaxcnn import optim, sweep
from flaxcnn.train import steps

tf = pytest.importorskip("tensorflow")

K, SPE = 12, 4
SHAPES = {"stem_conv": {"kernel": (3, 3, 3, 8)}, "stem_bn": {"scale": (8,), "bias": (8,)},
          "head": {"kernel": (8, 10), "bias": (10,)}}


def shrunk_recipe(path):
  c = sweep.load_module(os.path.join(ROOT, "experiments", path)).get_config("")
  assert c.optimizer.name == "rmsprop_tf" and c.schedule.name == "exponential", path
  c.schedule.warmup_epochs = 1.0
  c.schedule.decay_epochs = 0.5
  c.optimizer.weight_decay = 1e-2        # the recipe's 1e-5 would hide in the rounding
  return c


def _stream():
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.normal(size=s).astype(np.float32), SHAPES,
                        is_leaf=lambda x: isinstance(x, tuple))
  grads = [jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), params)
           for _ in range(K)]
  return params, grads


def run_ours(config):
  params, grads = _stream()
  tx = optim.make_optimizer(config, params)
  schedule = optim.make_schedule(config, SPE, K)
  opt_state, ema, rates = tx.init(params), params, []
  for t, g in enumerate(grads):     # the optimizer part of train.steps.update
    lr = optim.learning_rate(schedule, t, 1.0)
    opt_state = optim.set_learning_rate(opt_state, lr)
    updates, opt_state = tx.update(g, opt_state, params)
    params = optax.apply_updates(params, updates)
    d = steps.ema_decay(config, jnp.int32(t + 1))
    ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, ema, params)
    rates.append(float(lr))
  return params, ema, rates


def run_tensorflow(config):
  params, grads = _stream()
  o, s = config.optimizer, config.schedule
  flat = {"/".join(k): v for k, v in _flatten(params).items()}
  variables = {k: tf.Variable(v) for k, v in flat.items()}
  decayed = [k for k in variables if k.endswith("kernel")]    # ours: kernels only
  step = tf.Variable(0, dtype=tf.int64)
  warmup_steps = int(s.warmup_epochs * SPE)

  def learning_rate():     # the reference's build_learning_rate
    lr = tf.compat.v1.train.exponential_decay(o.lr, step, SPE * s.decay_epochs,
                                              s.decay_rate, staircase=True)
    lr = lr() if callable(lr) else lr      # eager: a function of the step variable
    warm = o.lr * tf.cast(step, tf.float32) / tf.cast(warmup_steps, tf.float32)
    return tf.where(step < warmup_steps, warm, lr)

  opt = tf.compat.v1.train.RMSPropOptimizer(learning_rate, decay=o.rms_decay,
                                            momentum=o.momentum, epsilon=o.eps)
  ema = tf.train.ExponentialMovingAverage(config.ema_decay,
                                          num_updates=step if config.ema_warmup else None)
  ema.apply(list(variables.values()))   # the averages start at the initial values
  rates = []
  for g in grads:
    g = {"/".join(k): v for k, v in _flatten(g).items()}
    total = [(tf.constant(g[k]) + (o.weight_decay * variables[k] if k in decayed else 0.0),
              variables[k]) for k in variables]
    rates.append(float(learning_rate()))
    opt.apply_gradients(total, global_step=step)
    ema.apply(list(variables.values()))
  return ({k: v.numpy() for k, v in variables.items()},
          {k: ema.average(v).numpy() for k, v in variables.items()}, rates)


def _flatten(tree, prefix=()):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = np.asarray(v)
  return out


@pytest.mark.parametrize("path", ["efficientnet_b0.py", "efficientnetv2_s.py"])
def test_efficientnet_recipe_steps_match_tensorflow(path):
  config = shrunk_recipe(path)
  assert config.ema_warmup and config.schedule.warmup == "linear_from_zero"
  params, ema, rates = run_ours(config)
  tf_params, tf_ema, tf_rates = run_tensorflow(config)
  np.testing.assert_allclose(rates, tf_rates, rtol=1e-6)
  assert rates[0] == 0.0 and len(set(rates)) >= 5     # warm-up from 0, then decays
  for name, value in _flatten(params).items():
    np.testing.assert_allclose(value, tf_params["/".join(name)], rtol=1e-5, atol=1e-6)
  for name, value in _flatten(ema).items():
    np.testing.assert_allclose(value, tf_ema["/".join(name)], rtol=1e-5, atol=1e-6)
