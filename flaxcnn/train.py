"""Training and evaluation: one jitted step, data parallel over a device mesh.

The train state (parameters, BatchNorm statistics, optimizer state, step, RNG,
learning-rate scale) is replicated over the `data` axis of a `Mesh` of all devices;
batches are sharded along it. In-memory datasets live on the devices as uint8
arrays; each step gathers its examples from the epoch's permutation and augments
them inside the jitted step. Everything random derives from (seed, step), so a
resumed run repeats the uninterrupted one exactly.
"""
import dataclasses
import functools
import json
import math
import os
import signal
import time
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from flaxcnn import augment, config as config_lib, optim
from flaxcnn.checkpoint import Checkpointer
from flaxcnn.metrics import MetricWriter, format_duration


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jnp.ndarray            # uint32[2] base key; per-step keys are fold_in(rng, step)
  lr_scale: jnp.ndarray       # multiplied into the schedule (plateau decay)
  plateau_best: jnp.ndarray   # best validation error so far (plateau schedule)
  plateau_bad: jnp.ndarray    # evaluations since it improved


class NonFiniteLoss(FloatingPointError):
  pass


@dataclasses.dataclass
class Run:
  """Everything static about a run: the model, the step functions, shardings."""
  config: Any
  model: Any
  mesh: Mesh
  tx: optax.GradientTransformation
  schedule: Any
  steps_per_epoch: int
  total_steps: int
  mean: tuple
  std: tuple
  schedule_template: Any   # the 'schedule' collection's structure (DropBlock), or None

  @property
  def replicated(self):
    return NamedSharding(self.mesh, P())

  @property
  def batch_sharding(self):
    return NamedSharding(self.mesh, P("data"))

  @property
  def compute_dtype(self):
    return jnp.bfloat16 if self.config.dtype == "bfloat16" else jnp.float32


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process: pure data parallelism."""
  return Mesh(np.asarray(jax.devices()), ("data",))


def global_array(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A global jax.Array from a host array that every process holds in full."""
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


# ----------------------------------------------------------------------------- state

def init_variables(model, input_shape, seed):
  rng = jax.random.PRNGKey(seed)
  variables = model.init({"params": rng, "dropout": rng},
                         jnp.zeros((1,) + tuple(input_shape), jnp.float32), train=False)
  return variables


def create_state(run: Run, input_shape) -> TrainState:
  """The initial train state, created directly with replicated sharding."""
  def init():
    variables = init_variables(run.model, input_shape, run.config.seed)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=run.tx.init(params),
        rng=jax.random.PRNGKey(run.config.seed + 1),
        lr_scale=jnp.ones((), jnp.float32),
        plateau_best=jnp.asarray(np.inf, jnp.float32),
        plateau_bad=jnp.zeros((), jnp.int32))
  return jax.jit(init, out_shardings=run.replicated)()


# ----------------------------------------------------------------------------- steps

def cross_entropy(logits, targets):
  return -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)


def _update(run: Run, state: TrainState, x, labels, rng):
  """Forward, loss, backward and optimizer update on one normalized batch."""
  cfg = run.config
  k_mix, k_drop = jax.random.split(rng)
  num_classes = run.model.num_classes
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), cfg.label_smoothing) \
      if cfg.label_smoothing else jax.nn.one_hot(labels, num_classes)
  x, targets = augment.mixup(k_mix, x, targets, cfg.augment.mixup_alpha)

  variables = {"batch_stats": state.batch_stats}
  if run.schedule_template is not None:
    progress = jnp.minimum(state.step / run.total_steps, 1.0).astype(jnp.float32)
    variables["schedule"] = jax.tree.map(lambda _: progress, run.schedule_template)

  def loss_fn(params):
    logits, new_vars = run.model.apply(
        {"params": params, **variables}, x, train=True,
        mutable=["batch_stats"], rngs={"dropout": k_drop})
    loss = jnp.mean(cross_entropy(logits, targets))
    return loss, (logits, new_vars)

  (loss, (logits, new_vars)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  lr = run.schedule(state.step) * state.lr_scale
  opt_state = state.opt_state
  opt_state.hyperparams["learning_rate"] = lr
  updates, opt_state = run.tx.update(grads, opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {
      "loss": loss,
      "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
      "lr": lr,
      "nonfinite": (~jnp.isfinite(loss)).astype(jnp.float32),
  }
  new_state = state.replace(step=state.step + 1, params=params,
                            batch_stats=new_vars.get("batch_stats", state.batch_stats),
                            opt_state=opt_state)
  return new_state, metrics


def make_train_step(run: Run):
  """The in-memory training step: gather, augment, update, all on the device.

  `images`/`labels` are the whole training split (replicated, uint8); `perm` is
  this epoch's permutation of it.
  """
  cfg, B, spe = run.config, run.config.batch_size, run.steps_per_epoch

  def step(state, images, labels, perm):
    rng = jax.random.fold_in(state.rng, state.step)
    k_aug, k_update = jax.random.split(rng)
    idx = jax.lax.dynamic_slice_in_dim(perm, (state.step % spe) * B, B)
    idx = jax.lax.with_sharding_constraint(idx, run.batch_sharding)
    x = augment.train_augment(k_aug, images[idx], cfg, run.mean, run.std,
                              run.compute_dtype)
    x = jax.lax.with_sharding_constraint(x, run.batch_sharding)
    return _update(run, state, x, labels[idx], k_update)

  return jax.jit(step, donate_argnums=(0,),
                 out_shardings=(run.replicated, run.replicated))


def make_batch_train_step(run: Run):
  """The streaming training step: the batch (already cropped/flipped by tf.data,
  uint8) arrives sharded; normalization, Cutout and mixup run here."""
  cfg = run.config

  def step(state, images, labels):
    rng = jax.random.fold_in(state.rng, state.step)
    k_cut, k_update = jax.random.split(rng)
    x = augment.normalize(images, run.mean, run.std)
    x = augment.cutout(k_cut, x, cfg.augment.cutout).astype(run.compute_dtype)
    return _update(run, state, x, labels, k_update)

  return jax.jit(step, donate_argnums=(0,),
                 out_shardings=(run.replicated, run.replicated))


def make_eval_step(run: Run):
  """Sums of loss, top-1 and top-5 hits over the valid (mask=1) examples of a batch."""
  def step(params, batch_stats, images, labels, mask):
    x = augment.normalize(images, run.mean, run.std, run.compute_dtype)
    logits = run.model.apply({"params": params, "batch_stats": batch_stats}, x,
                             train=False)
    return eval_sums(logits, labels, mask)
  return jax.jit(step, out_shardings=run.replicated)


def eval_sums(logits, labels, mask):
  """Per-batch sums: each example counted once where mask is 1."""
  logits = logits.astype(jnp.float32)
  loss = cross_entropy(logits, jax.nn.one_hot(labels, logits.shape[-1]))
  k = min(5, logits.shape[-1])
  topk = jax.lax.top_k(logits, k)[1]
  top1 = topk[:, 0] == labels
  top5 = jnp.any(topk == labels[:, None], axis=-1)
  return {"loss": jnp.sum(loss * mask), "accuracy": jnp.sum(top1 * mask),
          "top5": jnp.sum(top5 * mask), "count": jnp.sum(mask)}


def padded_batches(split, batch_size: int):
  """(images, labels, mask) host batches of an in-memory split; the last batch is
  padded to the fixed batch size (one compilation) and the padding masked out."""
  n = len(split)
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    pad = batch_size - (stop - start)
    images, labels = split.images[start:stop], split.labels[start:stop]
    mask = np.ones(stop - start, np.float32)
    if pad:
      images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
      labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
      mask = np.concatenate([mask, np.zeros(pad, np.float32)])
    yield images, labels, mask


def evaluate(run: Run, eval_step, state, batches) -> dict:
  """Loss, top-1 and top-5 accuracy over global (images, labels, mask) batches;
  every example with mask 1 counts exactly once."""
  totals = None
  for images, labels, mask in batches:
    sums = eval_step(state.params, state.batch_stats, images, labels, mask)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  count = float(totals["count"])
  return {"loss": float(totals["loss"]) / count,
          "accuracy": float(totals["accuracy"]) / count,
          "top5": float(totals["top5"]) / count, "count": count}


class InMemoryFeed:
  """The whole training split on the devices (replicated uint8); each step
  gathers its batch from the epoch's permutation inside the jitted step."""

  def __init__(self, run: Run, dataset):
    self.run, self.dataset = run, dataset
    self.n = dataset.sizes["train"]
    self.images = self.labels = None     # put on the devices at the first step
    self.step_fn = make_train_step(run)
    self.perm, self.perm_epoch = None, None

  def train_step(self, state, step: int):
    if self.images is None:
      train = self.dataset.splits["train"]
      self.images = global_array(train.images, self.run.replicated)
      self.labels = global_array(train.labels, self.run.replicated)
    epoch = step // self.run.steps_per_epoch
    if self.perm_epoch != epoch:
      key = jax.random.fold_in(jax.random.PRNGKey(self.run.config.seed + 2), epoch)
      self.perm = jax.jit(lambda k: jax.random.permutation(k, self.n).astype(jnp.int32),
                          out_shardings=self.run.replicated)(key)
      self.perm_epoch = epoch
    return self.step_fn(state, self.images, self.labels, self.perm)

  def eval_batches(self, split: str, batch_size: int):
    for images, labels, mask in padded_batches(self.dataset.splits[split], batch_size):
      yield tuple(global_array(x, self.run.batch_sharding) for x in (images, labels, mask))


class StreamingFeed:
  """Batches from tf.data: each process decodes its share of every global batch."""

  def __init__(self, run: Run, dataset):
    self.run, self.dataset = run, dataset
    self.step_fn = make_batch_train_step(run)
    self.it, self.it_epoch = None, None

  def _global(self, x):
    return jax.make_array_from_process_local_data(self.run.batch_sharding, x)

  def train_step(self, state, step: int):
    spe = self.run.steps_per_epoch
    epoch = step // spe
    if self.it_epoch != epoch:
      self.it = self.dataset.train_batches(self.run.config, epoch, step % spe,
                                           jax.process_index(), jax.process_count())
      self.it_epoch = epoch
    images, labels = next(self.it)
    return self.step_fn(state, self._global(images), self._global(labels))

  def eval_batches(self, split: str, batch_size: int):
    for batch in self.dataset.eval_batches(split, batch_size, jax.process_index(),
                                           jax.process_count()):
      yield tuple(self._global(x) for x in batch)


def make_feed(run: Run, dataset):
  return InMemoryFeed(run, dataset) if hasattr(dataset.splits["train"], "images") \
      else StreamingFeed(run, dataset)


# ----------------------------------------------------------------------------- loop

class _Interrupt:
  """SIGTERM/SIGINT set a flag; the loop saves a checkpoint and exits cleanly."""

  def __init__(self):
    self.signal = None
    self._old = {}

  def __enter__(self):
    for s in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[s] = signal.signal(s, self._handle)
      except ValueError:  # not the main thread
        pass
    return self

  def _handle(self, signum, frame):
    self.signal = signum

  def __exit__(self, *exc):
    for s, h in self._old.items():
      signal.signal(s, h)


def setup(config, dataset) -> Run:
  """Builds the static parts of a run from a validated config and a dataset."""
  mesh = make_mesh()
  model = config_lib.build_model(config, dataset.num_classes)
  n_train = dataset.sizes["train"]
  if n_train < config.batch_size:
    raise ValueError(f"config.batch_size={config.batch_size} is larger than the "
                     f"{n_train} training examples")
  spe = n_train // config.batch_size
  total = config.num_steps or max(1, int(round(config.num_epochs * spe)))
  variables = jax.eval_shape(lambda: init_variables(model, dataset.image_shape, 0))
  tx = optim.make_optimizer(config, variables["params"])
  return Run(config=config, model=model, mesh=mesh, tx=tx,
             schedule=optim.make_schedule(config, spe, total),
             steps_per_epoch=spe, total_steps=total, mean=dataset.mean, std=dataset.std,
             schedule_template=variables.get("schedule"))


def _save_config(config, workdir):
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))


def train_and_evaluate(config, workdir: str, dataset=None) -> dict:
  """Trains per `config` in `workdir`, resuming from its latest checkpoint.

  Returns the final summary: step, epoch, and the validation/test metrics.
  """
  from flaxcnn import data as data_lib
  config_lib.validate(config, jax.device_count())
  if dataset is None:
    dataset = data_lib.load(config)
  run = setup(config, dataset)
  _save_config(config, workdir)
  writer = MetricWriter(workdir)
  ckpt = Checkpointer(workdir, config.keep_checkpoints)
  logging.info("model %s, %d training examples, %d steps/epoch, %d steps, %d devices",
               config.model.name, dataset.sizes["train"], run.steps_per_epoch,
               run.total_steps, jax.device_count())

  fresh = create_state(run, dataset.image_shape)
  state, restored_step = ckpt.restore_latest(fresh)
  if state is None:
    state = fresh
  else:
    print(f"Resumed from checkpoint at step {restored_step} in {workdir}", flush=True)
  del fresh

  feed = make_feed(run, dataset)
  eval_step = make_eval_step(run)
  plateau = optim.Plateau(config.schedule.patience, config.schedule.factor)
  eval_every = max(1, int(round(config.eval_every_epochs * run.steps_per_epoch)))

  step = int(jax.device_get(state.step))
  pending = []
  t_last, step_last, t_start = time.time(), step, time.time()
  summary = {}

  def flush_metrics(step):
    nonlocal pending, t_last, step_last
    if not pending:
      return
    m = jax.device_get(pending)
    pending = []
    if any(x["nonfinite"] for x in m):
      bad = [i for i, x in enumerate(m) if x["nonfinite"]][0]
      last = ckpt.steps()[-1] if ckpt.steps() else None
      raise NonFiniteLoss(
          f"loss is NaN/Inf at step {step - len(m) + bad + 1}; the run stopped and "
          f"the last good checkpoint ({'step ' + str(last) if last is not None else 'none'}) "
          f"in {ckpt.directory} is kept. Lower config.optimizer.lr or add warmup "
          f"(config.schedule.warmup_epochs), then rerun to resume.")
    now = time.time()
    ips = (step - step_last) * config.batch_size / max(now - t_last, 1e-9)
    values = {k: float(np.mean([x[k] for x in m])) for k in ("loss", "accuracy")}
    values["lr"] = float(m[-1]["lr"])
    values["img_per_sec"] = ips
    epoch = step / run.steps_per_epoch
    writer.write(step, "train", values, epoch=epoch)
    eta = (run.total_steps - step) * config.batch_size / max(ips, 1e-9)
    if jax.process_index() == 0:
      print(f"epoch {epoch:7.2f}  step {step}/{run.total_steps}  loss {values['loss']:.4f}  "
            f"acc {values['accuracy']:.4f}  lr {values['lr']:.4g}  {ips:8.1f} img/s  "
            f"ETA {format_duration(eta)}", flush=True)
    t_last, step_last = now, step

  def run_eval(state, step):
    nonlocal summary
    epoch = step / run.steps_per_epoch
    for name in ("validation", "test"):
      if name in dataset.splits:
        res = evaluate(run, eval_step, state,
                       feed.eval_batches(name, config.eval_batch_size))
        writer.write(step, name, res, epoch=epoch)
        summary[name] = res
        if jax.process_index() == 0:
          print(f"eval {name:10s} step {step}  epoch {epoch:.2f}  loss {res['loss']:.4f}  "
                f"top-1 {res['accuracy']:.4f}  top-5 {res['top5']:.4f}  "
                f"({int(res['count'])} examples)", flush=True)
    if config.schedule.name == "plateau" and "validation" in summary:
      best, bad, mult = plateau.update(float(state.plateau_best), int(state.plateau_bad),
                                       1.0 - summary["validation"]["accuracy"])
      state = state.replace(
          plateau_best=jax.device_put(jnp.float32(best), run.replicated),
          plateau_bad=jax.device_put(jnp.int32(bad), run.replicated),
          lr_scale=jax.device_put(state.lr_scale * mult, run.replicated))
      if mult != 1.0 and jax.process_index() == 0:
        print(f"validation error plateaued: learning rate x{mult}", flush=True)
    return state

  with _Interrupt() as interrupt:
    while step < run.total_steps:
      state, metrics = feed.train_step(state, step)
      step += 1
      pending.append(metrics)
      done = step == run.total_steps
      if step % config.log_every_steps == 0 or done:
        flush_metrics(step)
      if step % eval_every == 0 or done:
        flush_metrics(step)
        state = run_eval(state, step)
      if step % config.checkpoint_every_steps == 0 or done or interrupt.signal:
        flush_metrics(step)
        ckpt.save(state)
      if interrupt.signal:
        ckpt.wait()
        print(f"Received signal {interrupt.signal}: saved checkpoint at step {step}; "
              f"rerun the same command to resume.", flush=True)
        break
  ckpt.close()
  writer.close()
  summary.update(step=step, epoch=step / run.steps_per_epoch,
                 seconds=time.time() - t_start, interrupted=bool(interrupt.signal))
  if jax.process_index() == 0 and not interrupt.signal:
    parts = [f"{k} top-1 {summary[k]['accuracy']:.4f}" for k in ("validation", "test")
             if k in summary]
    print(f"Finished {config.model.name} on {dataset.name}: step {step}, "
          f"epoch {summary['epoch']:.2f}, " + ", ".join(parts) +
          f", {format_duration(summary['seconds'])}", flush=True)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  return summary


def evaluate_checkpoint(config, workdir: str, dataset=None) -> dict:
  """Evaluates the latest checkpoint in `workdir` on the validation and test splits."""
  from flaxcnn import data as data_lib
  config_lib.validate(config, jax.device_count())
  if dataset is None:
    dataset = data_lib.load(config)
  run = setup(config, dataset)
  ckpt = Checkpointer(workdir, config.keep_checkpoints)
  state, step = ckpt.restore_latest(create_state(run, dataset.image_shape))
  if state is None:
    raise FileNotFoundError(f"no checkpoint in {ckpt.directory}; train first "
                            f"(--config.mode=train)")
  eval_step = make_eval_step(run)
  results = {}
  for name in ("validation", "test"):
    if name in dataset.splits:
      results[name] = evaluate(run, eval_step, state,
                               make_feed(run, dataset).eval_batches(name, config.eval_batch_size))
      print(f"eval {name:10s} step {step}: loss {results[name]['loss']:.4f} top-1 "
            f"{results[name]['accuracy']:.4f} top-5 {results[name]['top5']:.4f}", flush=True)
  ckpt.close()
  return results


def load_state(config, workdir: str, dataset=None):
  """The latest train state saved in `workdir` (for notebooks, fine-tuning, tests)."""
  from flaxcnn import data as data_lib
  if dataset is None:
    dataset = data_lib.load(config)
  run = setup(config, dataset)
  ckpt = Checkpointer(workdir, config.keep_checkpoints)
  state, _ = ckpt.restore_latest(create_state(run, dataset.image_shape))
  ckpt.close()
  if state is None:
    raise FileNotFoundError(f"no checkpoint in {ckpt.directory}")
  return state
