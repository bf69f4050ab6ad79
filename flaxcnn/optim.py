"""Optimizers, learning-rate schedules (in epochs), the weight-decay mask, and every
other shaping of the learning rate: this module is the one place.

- The optimizer (`make_optimizer`) is one of OPTIMIZERS; a new one is a function
  decorated `@optimizer("name")` (`@schedule`, `@warmup` for the others' tables).
- The schedule (`make_schedule`) gives the rate of each step.
- The plateau rule (`Plateau`, schedule.name='plateau') multiplies it by a scale
  that lives in the train state, so "divide by 10 on a validation plateau" (He et
  al. 2015) is a host-side decision checkpointed and resumed like everything else.
- `learning_rate(schedule, step, scale)` is their product, which the training step
  injects into the optimizer state (`set_learning_rate`; an injected hyperparameter,
  since TF's RMSProp applies it inside its momentum).
- Fine-tuning (`finetune_phases`) trains the new head alone, then every trainable
  parameter at `lr_mult` x that rate, frozen paths never: two transforms around the
  optimizer, taking the step as an extra argument.
"""
import math

import jax
import jax.numpy as jnp
import ml_collections
import optax

from flaxcnn import registration


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


def learning_rate(schedule, step, scale):
  """The rate of `step`: the schedule's, times the plateau scale."""
  return schedule(step) * scale


def set_learning_rate(opt_state, lr):
  """The optimizer state with its injected learning rate set to `lr`."""
  return optax.tree_utils.tree_set(opt_state, learning_rate=lr)


def phase_multiplier(head_steps, lr_mult: float, step):
  """Fine-tuning's multiple of the learning rate for what trains at `step`: 1 (the
  new head alone) during the head phase, then lr_mult."""
  return jnp.where(step < head_steps, 1.0, lr_mult)


def phase_scale(finetune, lr_mult: float, step):
  """Fine-tuning's per-parameter multiple of the learning rate at `step`: the head
  alone (1) during the head phase, then every trainable parameter at lr_mult;
  frozen paths 0. `finetune`: (head_mask, trainable_mask, head_steps)."""
  head_mask, trainable, head_steps = finetune
  mult = phase_multiplier(head_steps, lr_mult, step)
  return jax.tree.map(lambda h, t: jnp.where(step < head_steps, h, t) * mult,
                      head_mask, trainable)


def finetune_phases(finetune, lr_mult: float):
  """(gate, scale): optax transforms to put before and after the optimizer. The
  gate zeroes the gradients of parameters that do not train in this phase (their
  momentum stays untouched); the scale multiplies the updates by `phase_scale`.
  Both take the step as an extra argument (`tx.update(..., step=step)`)."""
  def gate(updates, state, params=None, *, step, **extra):
    scale = phase_scale(finetune, lr_mult, step)
    return jax.tree.map(lambda g, s: g * (s > 0), updates, scale), state

  def scale(updates, state, params=None, *, step, **extra):
    s = phase_scale(finetune, lr_mult, step)
    return jax.tree.map(lambda u, m: u * m.astype(u.dtype), updates, s), state

  init = lambda params: optax.EmptyState()  # noqa: E731
  return (optax.GradientTransformationExtraArgs(init, gate),
          optax.GradientTransformationExtraArgs(init, scale))


OPTIMIZERS = {}   # config.optimizer.name -> build(o, learning_rate, mask): an optax transform
SCHEDULES = {}    # config.schedule.name -> main(s, lr, steps_per_epoch, warmup, total_steps)
WARMUPS = {}      # config.schedule.warmup -> warmup(s, lr, steps)
DECAY_BEGINS = ("warmup", "start")


def optimizer(name: str):
  """Registers `build(o, learning_rate, mask)` (o = config.optimizer) as
  config.optimizer.name=`name`."""
  return registration.add_to(OPTIMIZERS, name, "an optimizer")


def schedule(name: str):
  """Registers `main(s, lr, steps_per_epoch, warmup, total_steps)` (s = config.schedule;
  warmup and total_steps in steps): the rate after the warm-up, counted from its end."""
  return registration.add_to(SCHEDULES, name, "a schedule")


def warmup(name: str):
  """Registers `warmup(s, lr, steps)`: the rate of the warm-up's first `steps` steps."""
  return registration.add_to(WARMUPS, name, "a warm-up")


def coupled_l2(o, mask, base):
  """Coupled L2: the gradient of wd/2 ||w||^2 is added before the optimizer, as in
  the papers' SGD (PyTorch weight_decay) and TF's l2 loss."""
  if o.weight_decay:
    return optax.chain(optax.add_decayed_weights(o.weight_decay, mask), base)
  return base


@optimizer("sgd")
def _sgd(o, learning_rate, mask):
  return coupled_l2(o, mask, optax.sgd(learning_rate, momentum=o.momentum or None,
                                       nesterov=o.nesterov))


@optimizer("rmsprop_tf")
def _rmsprop_tf(o, learning_rate, mask):
  return coupled_l2(o, mask, rmsprop_tf(learning_rate, o.rms_decay, o.eps, o.momentum))


@optimizer("rmsprop")
def _rmsprop(o, learning_rate, mask):
  return coupled_l2(o, mask, optax.rmsprop(learning_rate, decay=o.rms_decay, eps=o.eps,
                                           momentum=o.momentum or None))


@optimizer("adam")
def _adam(o, learning_rate, mask):
  return coupled_l2(o, mask, optax.adam(learning_rate, b1=o.b1, b2=o.b2))


@optimizer("adamw")
def _adamw(o, learning_rate, mask):
  return optax.adamw(learning_rate, b1=o.b1, b2=o.b2, eps=1e-8, weight_decay=o.weight_decay,
                     mask=mask)


def make_optimizer(config, params, finetune=None) -> optax.GradientTransformation:
  """The optimizer of `config.optimizer`, with L2 weight decay on the mask; with
  `finetune` (head_mask, trainable_mask, head_steps), inside fine-tuning's phases."""
  o = config.optimizer
  if o.name not in OPTIMIZERS:
    raise ValueError(f"config.optimizer.name={o.name!r} is not one of {', '.join(OPTIMIZERS)}")
  mask = weight_decay_mask(params, o.decay_all)
  build = lambda learning_rate: OPTIMIZERS[o.name](o, learning_rate, mask)  # noqa: E731
  tx = optax.inject_hyperparams(build)(learning_rate=o.lr)
  if finetune is None:
    return tx
  gate, scale = finetune_phases(finetune, config.finetune.lr_mult)
  return optax.chain(gate, tx, scale)


# The warm-ups: "linear" rises as lr (t + 1) / steps to the peak; "linear_from_zero"
# as lr t / steps, from 0 (the TF references of EfficientNet, EfficientNetV2 and
# DropBlock's ResNet-50); "constant" holds warmup_factor x lr (He et al. 2015, Sec.
# 4.2: 0.01 for about 400 iterations before 0.1 for ResNet-110).

@warmup("linear")
def _linear_warmup(s, lr, steps):
  return optax.linear_schedule(lr / steps, lr, steps - 1)


@warmup("linear_from_zero")
def _linear_from_zero_warmup(s, lr, steps):
  return optax.linear_schedule(0.0, lr, steps)


@warmup("constant")
def _constant_warmup(s, lr, steps):
  return optax.constant_schedule(lr * s.warmup_factor)


@schedule("constant")
def _constant(s, lr, spe, warmup, total_steps):
  return optax.constant_schedule(lr)


@schedule("piecewise")
def _piecewise(s, lr, spe, warmup, total_steps):
  """Boundaries in epochs from step 0; step >= b * spe decays by `factor`."""
  scales = {}
  for b in s.boundaries:
    key = math.ceil(b * spe - 1e-9) - warmup
    scales[key] = scales.get(key, 1.0) * s.factor
  return optax.piecewise_constant_schedule(lr, scales)


@schedule("cosine")
def _cosine(s, lr, spe, warmup, total_steps):
  """From the warm-up's end to `total_steps`."""
  return optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1), alpha=s.min_lr / lr)


@schedule("exponential")
def _exponential(s, lr, spe, warmup, total_steps):
  """Its periods counted from the warm-up's end (`decay_begin="warmup"`) or from step
  0 (`"start"`, as the TF EfficientNet reference's exponential_decay of the global step)."""
  if s.decay_begin not in DECAY_BEGINS:
    raise ValueError(f"config.schedule.decay_begin={s.decay_begin!r} is not one of "
                     f"{', '.join(DECAY_BEGINS)}")
  decay = optax.exponential_decay(lr, s.decay_epochs * spe, s.decay_rate, staircase=True,
                                  end_value=s.min_lr or None)
  return decay if s.decay_begin == "warmup" else (lambda t: decay(t + warmup))


schedule("plateau")(_constant)   # constant, times the scale of `Plateau`


def make_schedule(config, steps_per_epoch: int, total_steps: int):
  """step -> learning rate, from `config.schedule` (all times in epochs), as optax
  schedules: the warm-up, then the main schedule (SCHEDULES) joined at the warm-up's
  end, floored at min_lr when set."""
  s, lr = config.schedule, config.optimizer.lr
  for field, table in (("name", SCHEDULES), ("warmup", WARMUPS)):
    if s[field] not in table:
      raise ValueError(f"config.schedule.{field}={s[field]!r} is not one of "
                       f"{', '.join(table)}")
  spe = float(steps_per_epoch)
  warmup = int(round(s.warmup_epochs * spe))
  main = SCHEDULES[s.name](s, lr, spe, warmup, total_steps)
  if s.min_lr:
    unfloored = main
    main = lambda t: jnp.maximum(unfloored(t), s.min_lr)  # noqa: E731
  joined = main
  if warmup:
    joined = optax.join_schedules([WARMUPS[s.warmup](s, lr, warmup), main], [warmup])

  def rate(step):
    step = jnp.asarray(step, jnp.float32)
    return jnp.asarray(joined(step), jnp.float32)
  return rate


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


def optimizer_section() -> ml_collections.ConfigDict:
  """config.optimizer: make_optimizer's settings."""
  s = ml_collections.ConfigDict()
  s.name = "sgd"         # sgd | rmsprop_tf | rmsprop | adam | adamw
  s.lr = 0.1             # peak learning rate (for the global batch)
  s.momentum = 0.9
  s.nesterov = True
  s.weight_decay = 5e-4  # L2 (decoupled for adamw)
  s.decay_all = False    # False: only conv/dense kernels decay (not BN, not biases)
  s.rms_decay = 0.9
  s.eps = 1e-3           # rmsprop_tf epsilon; adam uses 1e-8 unless changed
  s.b1 = 0.9
  s.b2 = 0.999
  return s


def schedule_section() -> ml_collections.ConfigDict:
  """config.schedule: make_schedule's settings (times in epochs)."""
  s = ml_collections.ConfigDict()
  s.name = "piecewise"    # constant | piecewise | cosine | exponential | plateau
  s.boundaries = (60.0, 120.0, 160.0)   # piecewise: epochs
  s.factor = 0.2          # piecewise: lr multiplied at each boundary; plateau: on plateau
  s.decay_rate = 0.97     # exponential: lr * decay_rate every decay_epochs
  s.decay_epochs = 2.4
  # exponential: decay periods counted from the warm-up's end ("warmup") or from
  # step 0 ("start", as the TF EfficientNet reference)
  s.decay_begin = "warmup"
  s.warmup_epochs = 0.0   # warm-up length (0 = none)
  # linear: lr (t+1)/T, reaching the peak at the warm-up's last step | linear_from_zero:
  # lr t/T, 0 at step 0 (the TF references') | constant: warmup_factor x peak
  s.warmup = "linear"
  s.warmup_factor = 0.1   # constant warm-up (He et al. 2015: 0.01, then 0.1)
  s.patience = 5          # plateau: evaluations without improvement before decaying
  s.min_lr = 0.0
  return s
