"""The pure, jitted step functions: one training update, the in-memory and the
streamed training steps, the evaluation step and the sum over a split's batches.

Everything random derives from (state.rng, state.step), so a resumed run repeats
the uninterrupted one exactly.
"""
from typing import Optional

import jax
import jax.numpy as jnp
import optax

from flaxcnn import augment, backend, optim
from flaxcnn.train import memory
from flaxcnn.train.state import Run, TrainState


def _count_nonfinite(tree):
  """The number of NaN/Inf entries of a tree: one fused reduction."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
  return sum((jnp.sum(~jnp.isfinite(x)) for x in leaves), jnp.zeros((), jnp.int32))


def ema_decay(config, n):
  """The decay of EMA update n = 1, 2, ...: `config.ema_decay`, or with
  `config.ema_warmup` TensorFlow's min(decay, (1 + n) / (10 + n))."""
  if not config.ema_warmup:
    return config.ema_decay
  return jnp.minimum(config.ema_decay, (1.0 + n) / (10.0 + n))


def update(run: Run, state: TrainState, x, labels, rng):
  """Forward, loss, backward and optimizer update on one normalized batch."""
  cfg = run.config
  k_mix, k_drop = jax.random.split(rng)
  targets = run.task.targets(run, labels)
  x, targets = augment.mixup(k_mix, x, targets, cfg.augment.mixup_alpha)
  variables = {"batch_stats": state.batch_stats}
  frozen_bn = run.finetune is not None and cfg.finetune.freeze_bn

  def loss_fn(params):
    logits, new_vars = run.model.apply(
        {"params": params, **variables}, x, train=not frozen_bn, step=state.step,
        mutable=["batch_stats"], rngs={"dropout": k_drop})
    return run.task.loss(logits, targets), (logits, new_vars)

  (loss, (logits, new_vars)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  lr = optim.learning_rate(run.schedule, state.step, state.lr_scale)
  opt_state = optim.set_learning_rate(state.opt_state, lr)
  phases = {"step": state.step} if run.finetune is not None else {}   # fine-tuning's
  updates, opt_state = run.tx.update(grads, opt_state, state.params, **phases)
  params = optax.apply_updates(state.params, updates)
  batch_stats = state.batch_stats if frozen_bn else new_vars.get("batch_stats",
                                                                 state.batch_stats)
  ema = state.ema
  if cfg.ema_decay:
    d = ema_decay(cfg, state.step + 1)
    ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, state.ema,
                       {"params": params, "batch_stats": batch_stats})
  if run.finetune is not None:   # the rate the training parameters get
    lr = lr * optim.phase_multiplier(run.finetune[2], cfg.finetune.lr_mult, state.step)
  metrics = {
      "loss": loss,
      "accuracy": run.task.accuracy(logits, labels),
      "lr": lr,
      "grad_norm": optax.tree.norm(grads),
      "param_norm": optax.tree.norm(params),
      "nonfinite_loss": ~jnp.isfinite(loss),
      # the state this step hands on (and a checkpoint would save) is finite
      "nonfinite_state": _count_nonfinite((params, batch_stats)) > 0,
  }
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state, ema=ema)
  return new_state, metrics


def compiler_options(run: Run) -> Optional[dict]:
  """XLA options of the run's compiled steps (`backend.compiler_options`: when tuned
  on the CPU, keep the optimization barriers at block boundaries and remat's)."""
  return backend.compiler_options(run.mesh.devices.flat[0].platform)


def _jit(run: Run, step):
  return jax.jit(step, donate_argnums=(0,), compiler_options=compiler_options(run),
                 out_shardings=(run.replicated, run.replicated))


def make_train_step(run: Run):
  """The in-memory training step: gather, augment, update, all on the device.

  `images`/`labels` are the whole training split (replicated, uint8); `perm` is
  this epoch's permutation of it.
  """
  def step(state, images, labels, perm):
    x, y, k_update = _in_memory_batch(run, state, images, labels, perm)
    return update(run, state, x, y, k_update)

  return _jit(run, step)


def _in_memory_batch(run: Run, state: TrainState, images, labels, perm):
  """(x, labels, update key) of the step: this step's slice of the epoch's
  permutation, gathered and augmented by the task."""
  B, spe = run.global_batch, run.steps_per_epoch
  rng = jax.random.fold_in(state.rng, state.step)
  k_aug, k_update = jax.random.split(rng)
  idx = jax.lax.dynamic_slice_in_dim(perm, (state.step % spe) * B, B)
  idx = jax.lax.with_sharding_constraint(idx, run.batch_sharding)
  x, y = run.task.augment(run, k_aug, images[idx], labels[idx])
  return jax.lax.with_sharding_constraint(x, run.batch_sharding), y, k_update


def _streamed_batch(run: Run, state: TrainState, images, labels):
  rng = jax.random.fold_in(state.rng, state.step)
  k_aug, k_update = jax.random.split(rng)
  x, y = run.task.augment_batch(run, k_aug, images, labels)
  return x, y, k_update


def make_view_step(run: Run, in_memory: bool, count: int = 16):
  """The first `count` images of a step's batch as the step trains on them
  (augmented), back in uint8 [0, 255] to look at (TensorBoard's image grid)."""
  def view(state, *inputs):
    batch = _in_memory_batch if in_memory else _streamed_batch
    x = batch(run, state, *inputs)[0][:count].astype(jnp.float32)
    x = x * jnp.asarray(run.std, jnp.float32) + jnp.asarray(run.mean, jnp.float32)
    return jnp.clip(jnp.round(x * 255.0), 0, 255).astype(jnp.uint8)
  return jax.jit(view, out_shardings=run.replicated)


def make_batch_train_step(run: Run):
  """The streaming training step: the batch (already cropped/flipped by tf.data,
  uint8) arrives sharded; the task's on-device augmentation runs here."""
  def step(state, images, labels):
    x, y, k_update = _streamed_batch(run, state, images, labels)
    return update(run, state, x, y, k_update)

  return _jit(run, step)


def make_step_for(run: Run, feed):
  """The training step that takes `feed.train_inputs(step)`."""
  return make_train_step(run) if feed.in_memory else make_batch_train_step(run)


def make_eval_step(run: Run, eval_size: Optional[int] = None):
  """The task's per-batch sums over the valid (mask=1) examples of a batch."""
  def step(params, batch_stats, images, labels, mask):
    size = eval_size or (images[0] if isinstance(images, tuple) else images).shape[1]
    scores = run.task.eval_scores(run, {"params": params, "batch_stats": batch_stats},
                                  images, size)
    return run.task.eval_sums(scores, labels, mask)
  return jax.jit(step, out_shardings=run.replicated, compiler_options=compiler_options(run))


def evaluate(run: Run, eval_step, params, batch_stats, batches, dataset=None) -> dict:
  """The task's metrics over global (images, labels, mask) batches; every example
  with mask 1 counts exactly once."""
  totals, checked = None, False
  for images, labels, mask in batches:
    if not checked:   # compiled for the batch's shapes (cached), refused if it cannot fit
      memory.check_fits(eval_step.lower(params, batch_stats, images, labels, mask).compile())
      checked = True
    sums = eval_step(params, batch_stats, images, labels, mask)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  return run.task.reduce(jax.device_get(totals), dataset)
