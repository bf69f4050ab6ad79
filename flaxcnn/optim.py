"""Optimizers, learning-rate schedules (in epochs) and the weight-decay mask.

The learning rate is an injected hyperparameter of the optimizer state, set every
step by the training step to `schedule(step) * lr_scale`; `lr_scale` lives in the
train state so that "divide by 10 on a validation plateau" (He et al. 2015) is a
host-side decision that is checkpointed and resumed like everything else.
"""
import math

import jax
import jax.numpy as jnp
import optax


def weight_decay_mask(params, decay_all: bool = False):
  """True for the leaves that decay: conv and dense kernels only (not BatchNorm
  scale/bias, not biases), unless `decay_all`."""
  def decays(path, _):
    return decay_all or getattr(path[-1], "key", None) == "kernel"
  return jax.tree_util.tree_map_with_path(decays, params)


def rmsprop_tf(learning_rate, decay=0.9, eps=1e-3, momentum=0.9):
  """RMSProp as TensorFlow 1 implements it, which EfficientNet trained with:
  epsilon inside the square root, mean-square accumulator initialised to one, and
  the learning rate applied inside the momentum accumulator."""
  return optax.chain(
      optax.scale_by_rms(decay=decay, eps=eps, initial_scale=1.0, eps_in_sqrt=True),
      optax.scale_by_learning_rate(learning_rate),
      optax.trace(decay=momentum, nesterov=False) if momentum else optax.identity())


def make_optimizer(config, params) -> optax.GradientTransformation:
  """The optimizer of `config.optimizer`, with L2 weight decay on the mask."""
  o = config.optimizer
  mask = weight_decay_mask(params, o.decay_all)

  def build(learning_rate):
    if o.name == "adamw":
      return optax.adamw(learning_rate, b1=o.b1, b2=o.b2, eps=1e-8,
                         weight_decay=o.weight_decay, mask=mask)
    if o.name == "sgd":
      base = optax.sgd(learning_rate, momentum=o.momentum or None, nesterov=o.nesterov)
    elif o.name == "rmsprop_tf":
      base = rmsprop_tf(learning_rate, o.rms_decay, o.eps, o.momentum)
    elif o.name == "rmsprop":
      base = optax.rmsprop(learning_rate, decay=o.rms_decay, eps=o.eps,
                           momentum=o.momentum or None)
    elif o.name == "adam":
      base = optax.adam(learning_rate, b1=o.b1, b2=o.b2)
    else:
      raise ValueError(f"config.optimizer.name={o.name!r} is unknown")
    # Coupled L2: the gradient of wd/2 ||w||^2 is added before the optimizer, as in
    # the papers' SGD (PyTorch weight_decay) and TF's l2 loss.
    if o.weight_decay:
      return optax.chain(optax.add_decayed_weights(o.weight_decay, mask), base)
    return base

  return optax.inject_hyperparams(build)(learning_rate=o.lr)


def make_schedule(config, steps_per_epoch: int, total_steps: int):
  """step -> learning rate, from `config.schedule` (all times in epochs)."""
  s, lr = config.schedule, config.optimizer.lr
  spe = float(steps_per_epoch)
  warmup = int(round(s.warmup_epochs * spe))

  if s.name in ("constant", "plateau"):
    main = lambda step: jnp.asarray(lr, jnp.float32)
  elif s.name == "piecewise":
    bounds = jnp.asarray([b * spe for b in s.boundaries], jnp.float32)
    main = lambda step: lr * s.factor ** jnp.sum(step >= bounds).astype(jnp.float32)
  elif s.name == "cosine":
    decay_steps = max(total_steps - warmup, 1)
    main = lambda step: s.min_lr + (lr - s.min_lr) * 0.5 * (
        1 + jnp.cos(math.pi * jnp.clip((step - warmup) / decay_steps, 0, 1)))
  elif s.name == "exponential":
    every = s.decay_epochs * spe
    main = lambda step: lr * s.decay_rate ** jnp.floor((step - warmup) / every)
  else:
    raise ValueError(f"config.schedule.name={s.name!r} is unknown")

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    value = jnp.maximum(main(step), s.min_lr)
    if warmup:
      value = jnp.where(step < warmup, lr * (step + 1) / warmup, value)
    return value.astype(jnp.float32)
  return schedule


class Plateau:
  """Host-side plateau detector: after `patience` evaluations without a lower
  validation error, the learning-rate scale is multiplied by `factor`."""

  def __init__(self, patience: int, factor: float):
    self.patience, self.factor = patience, factor

  def update(self, best, bad, error):
    """Returns (best, bad_evals, multiply_lr_by)."""
    if error < best - 1e-6:
      return error, 0, 1.0
    bad += 1
    if bad >= self.patience:
      return best, 0, self.factor
    return best, bad, 1.0
