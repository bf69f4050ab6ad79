"""The training loop of every task: one jitted step, data parallel over a device mesh.

    launch -> config -> data -> model -> task -> loop (this file) -> checkpoint/metrics

A `Task` (flaxcnn/tasks/: classification, segmentation) says what the
data are, how a batch is augmented and how evaluation sums become metrics; all the
rest is here, once: resume, periodic evaluation, checkpoints, signals and
preemption, the non-finite guard, progress, metrics, progressive stages and
fine-tuning phases.

The train state (parameters, BatchNorm statistics, optimizer state, step, RNG,
learning-rate scale) is replicated over the `data` axis of a `Mesh` of all devices;
batches are sharded along it. In-memory datasets live on the devices as uint8
arrays; each step gathers its examples from the epoch's permutation and augments
them inside the jitted step. Everything random derives from (seed, step), so a
resumed run repeats the uninterrupted one exactly.
"""
import dataclasses
import json
import os
import re
import signal
import sys
import time
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh

from flaxcnn import augment, config as config_lib, optim, parallel, tasks
from flaxcnn import workdir as workdir_lib
from flaxcnn.checkpoint import Checkpointer, StructureMismatch
from flaxcnn.metrics import MetricWriter, format_duration
from flaxcnn.parallel import global_array, make_mesh, padded_batches  # noqa: F401 (API)


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
  ema: Any = flax.struct.field(default_factory=dict)  # {'params', 'batch_stats'} EMA, or {}


class NonFiniteLoss(FloatingPointError):
  pass


@dataclasses.dataclass
class Run:
  """Everything static about a run: the task, model, step functions, shardings."""
  config: Any
  task: tasks.Task
  model: Any
  mesh: Mesh
  tx: optax.GradientTransformation
  schedule: Any
  steps_per_epoch: int
  total_steps: int
  mean: tuple
  std: tuple
  num_classes: int
  schedule_template: Any   # the 'schedule' collection's structure (DropBlock), or None
  finetune: Any = None     # (head_mask, trainable_mask, head_steps) when fine-tuning
  train_size: Optional[int] = None   # in-memory: resize training crops to this size

  @property
  def replicated(self):
    return parallel.replicated(self.mesh)

  @property
  def batch_sharding(self):
    return parallel.batch_sharded(self.mesh)

  @property
  def compute_dtype(self):
    return jnp.bfloat16 if self.config.dtype == "bfloat16" else jnp.float32


# ----------------------------------------------------------------------------- state

def init_variables(model, input_shape, seed):
  rng = jax.random.PRNGKey(seed)
  return model.init({"params": rng, "dropout": rng},
                    jnp.zeros((1,) + tuple(input_shape), jnp.float32), train=False)


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
        plateau_bad=jnp.zeros((), jnp.int32),
        ema=({"params": params, "batch_stats": variables.get("batch_stats", {})}
             if run.config.ema_decay else {}))
  # The non-partitionable threefry lowering compiles the many random initializers
  # several times faster on CPU (same distributions, different draws).
  with jax.threefry_partitionable(False):
    return jax.jit(init, out_shardings=run.replicated)()


# ----------------------------------------------------------------------------- steps

def _count_nonfinite(tree):
  """The number of NaN/Inf entries of a tree: one fused reduction."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
  return sum((jnp.sum(~jnp.isfinite(x)) for x in leaves), jnp.zeros((), jnp.int32))


def _update(run: Run, state: TrainState, x, labels, rng):
  """Forward, loss, backward and optimizer update on one normalized batch."""
  cfg = run.config
  k_mix, k_drop = jax.random.split(rng)
  targets = run.task.targets(run, labels)
  x, targets = augment.mixup(k_mix, x, targets, cfg.augment.mixup_alpha)

  variables = {"batch_stats": state.batch_stats}
  if run.schedule_template is not None:
    strength = jnp.minimum(state.step / run.total_steps, 1.0).astype(jnp.float32) \
        if cfg.dropblock_schedule == "linear" else jnp.ones((), jnp.float32)
    variables["schedule"] = jax.tree.map(lambda _: strength, run.schedule_template)
  frozen_bn = run.finetune is not None and cfg.finetune.freeze_bn

  def loss_fn(params):
    logits, new_vars = run.model.apply(
        {"params": params, **variables}, x, train=not frozen_bn,
        mutable=["batch_stats"], rngs={"dropout": k_drop})
    return run.task.loss(logits, targets), (logits, new_vars)

  (loss, (logits, new_vars)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  lr = run.schedule(state.step) * state.lr_scale
  scale = None
  if run.finetune is not None:
    # Head-only phase, then everything (but the frozen paths) at lr * lr_mult.
    head_mask, trainable, head_steps = run.finetune
    in_head_phase = state.step < head_steps
    scale = jax.tree.map(lambda h, t: jnp.where(in_head_phase, h, t * cfg.finetune.lr_mult),
                         head_mask, trainable)
    grads = jax.tree.map(lambda g, s: g * (s > 0), grads, scale)
  opt_state = state.opt_state
  opt_state.hyperparams["learning_rate"] = lr
  updates, opt_state = run.tx.update(grads, opt_state, state.params)
  if scale is not None:
    updates = jax.tree.map(lambda u, s: u * s.astype(u.dtype), updates, scale)
  params = optax.apply_updates(state.params, updates)
  batch_stats = state.batch_stats if frozen_bn else new_vars.get("batch_stats",
                                                                 state.batch_stats)
  ema = state.ema
  if cfg.ema_decay:
    d = cfg.ema_decay
    ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, state.ema,
                       {"params": params, "batch_stats": batch_stats})
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
  """XLA options of the run's compiled steps: on the CPU, keep optimization barriers.

  XLA:CPU's `cse_barrier_expander` pass deletes optimization barriers before
  fusion. The models place them at residual block boundaries
  (`layers.block_boundary`: without them XLA:CPU recomputes the whole residual
  chain inside later blocks' fusions, 2x the step time of ResNet-110), and
  `jax.checkpoint` places them around recomputed values (remat, memory-efficient
  DenseNet: without them CSE undoes the recomputation and saves no memory).
  GPU and TPU compilers keep barriers; there this is None.
  """
  from flaxcnn.models import layers
  return layers.compiler_options(run.mesh.devices.flat[0].platform)


def make_train_step(run: Run):
  """The in-memory training step: gather, augment, update, all on the device.

  `images`/`labels` are the whole training split (replicated, uint8); `perm` is
  this epoch's permutation of it.
  """
  B, spe = run.config.batch_size, run.steps_per_epoch

  def step(state, images, labels, perm):
    rng = jax.random.fold_in(state.rng, state.step)
    k_aug, k_update = jax.random.split(rng)
    idx = jax.lax.dynamic_slice_in_dim(perm, (state.step % spe) * B, B)
    idx = jax.lax.with_sharding_constraint(idx, run.batch_sharding)
    x, y = run.task.augment(run, k_aug, images[idx], labels[idx])
    x = jax.lax.with_sharding_constraint(x, run.batch_sharding)
    return _update(run, state, x, y, k_update)

  return jax.jit(step, donate_argnums=(0,), compiler_options=compiler_options(run),
                 out_shardings=(run.replicated, run.replicated))


def make_batch_train_step(run: Run):
  """The streaming training step: the batch (already cropped/flipped by tf.data,
  uint8) arrives sharded; RandAugment, normalization, Cutout and mixup run here."""
  def step(state, images, labels):
    rng = jax.random.fold_in(state.rng, state.step)
    k_aug, k_update = jax.random.split(rng)
    x, y = run.task.augment_batch(run, k_aug, images, labels)
    return _update(run, state, x, y, k_update)

  return jax.jit(step, donate_argnums=(0,), compiler_options=compiler_options(run),
                 out_shardings=(run.replicated, run.replicated))


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
  totals = None
  for images, labels, mask in batches:
    sums = eval_step(params, batch_stats, images, labels, mask)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  return run.task.reduce(jax.device_get(totals), dataset)


class InMemoryFeed:
  """The whole training split on the devices (replicated uint8); each step
  gathers its batch from the epoch's permutation inside the jitted step."""

  def __init__(self, run: Run, dataset, arrays=None):
    self.run, self.dataset = run, dataset
    self.n = dataset.sizes["train"]
    self.arrays = arrays                 # put on the devices at the first step
    self.step_fn = make_train_step(run)
    self.perm, self.perm_epoch = None, None
    self._permute = jax.jit(lambda k: jax.random.permutation(k, self.n).astype(jnp.int32),
                            out_shardings=run.replicated)   # compiled once per run

  def train_step(self, state, step: int):
    if self.arrays is None:
      train = self.dataset.splits["train"]
      self.arrays = (global_array(train.images, self.run.replicated),
                     global_array(train.labels, self.run.replicated))
    epoch = step // self.run.steps_per_epoch
    if self.perm_epoch != epoch:
      key = jax.random.fold_in(jax.random.PRNGKey(self.run.config.seed + 2), epoch)
      self.perm = self._permute(key)
      self.perm_epoch = epoch
    return self.step_fn(state, *self.arrays, self.perm)

  def eval_batches(self, split: str, batch_size: int):
    for batch in padded_batches(self.dataset.splits[split], batch_size):
      yield tuple(global_array(x, self.run.batch_sharding) for x in batch)


class StreamingFeed:
  """Batches from tf.data: each process decodes its share of every global batch."""

  def __init__(self, run: Run, dataset, arrays=None):
    self.run, self.dataset = run, dataset
    self.step_fn = make_batch_train_step(run)
    self.it, self.it_epoch = None, None
    self.arrays = None

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
    dataset, cfg = self.dataset, self.run.config
    if cfg.eval_mode == "multiscale":   # He et al. 2015: whole images, shorter side s
      for views, labels, mask in dataset.multiscale_batches(
          split, batch_size, cfg.eval_scales, jax.process_index(), jax.process_count()):
        yield (tuple(self._global(v) for v in views), self._global(labels), self._global(mask))
      return
    if cfg.eval_mode != "center":    # ten-crop: the views are cut on the device
      dataset = dataclasses.replace(dataset, eval_crop=round(dataset.image_size / 0.875))
    for batch in dataset.eval_batches(split, batch_size, jax.process_index(),
                                      jax.process_count()):
      yield tuple(self._global(x) for x in batch)


def is_streaming(dataset) -> bool:
  return not hasattr(dataset.splits["train"], "images")


def make_feed(run: Run, dataset, arrays=None):
  return (StreamingFeed if is_streaming(dataset) else InMemoryFeed)(run, dataset, arrays)


def eval_image_size(config, dataset) -> int:
  """Evaluation resolution: config.data.image_size, else the dataset's own."""
  return config.data.image_size or dataset.image_shape[0]


# ----------------------------------------------------------------------------- stages

def stage_plan(config, total_steps: int):
  """[(first_step, end_step, overrides)]: EfficientNetV2's progressive learning splits
  training into equal stages whose image size and regularization (dropout,
  RandAugment magnitude, mixup alpha) grow linearly from the first to the second
  value (Tan & Le 2021, Algorithm 1); one stage without overrides otherwise."""
  p = config.progressive
  if not p.stages:
    return [(0, total_steps, {})]
  plan = []
  for i in range(p.stages):
    t = i / (p.stages - 1) if p.stages > 1 else 1.0
    lerp = lambda pair: pair[0] + (pair[1] - pair[0]) * t  # noqa: E731
    size = int(round(lerp(p.image_size)))
    # streaming: the scale-augmentation range shrinks with the stage's image size
    ratio = size / p.image_size[1]   # scale_range is set for the last stage
    overrides = {"data.image_size": size,
                 "augment.scale_range": tuple(max(size, int(round(r * ratio)))
                                              for r in config.augment.scale_range),
                 "model.kwargs.dropout": float(lerp(p.dropout)),
                 "augment.randaugment_magnitude": float(lerp(p.randaugment_magnitude)),
                 "augment.mixup_alpha": float(lerp(p.mixup_alpha))}
    plan.append((i * total_steps // p.stages, (i + 1) * total_steps // p.stages, overrides))
  return plan


def stage_run(config, dataset, overrides):
  """The Run (model, compiled shapes) of one stage; the optimizer state carries over."""
  if not overrides:
    return setup(config, dataset), dataset
  stage_config = config_lib.apply_overrides(config, overrides)
  if is_streaming(dataset):
    dataset = dataclasses.replace(dataset, image_size=stage_config.data.image_size)
  run = setup(stage_config, dataset)
  run.train_size = stage_config.data.image_size
  return run, dataset


# ----------------------------------------------------------------------------- fine-tuning

HEAD = "head"   # every classification model's classifier module (params['head'])


def _path_str(path):
  return "/".join(str(getattr(k, "key", k)) for k in path)


def finetune_masks(config, params, steps_per_epoch: int):
  """(head_mask, trainable_mask, head_steps) as float trees for fine-tuning."""
  patterns = [re.compile(p) for p in config.finetune.freeze]
  paths = [_path_str(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  for p in patterns:
    if not any(p.search(x) for x in paths):
      raise ValueError(f"config.finetune.freeze: {p.pattern!r} matches no parameter of "
                       f"{config.model.name}, whose paths look like "
                       f"{', '.join(sorted({x.split('/')[0] for x in paths})[:4])}, ... "
                       f"(e.g. {paths[0]!r}); `python -m flaxcnn.models.summary "
                       f"{config.model.name} --params` lists them")
  head = jax.tree_util.tree_map_with_path(
      lambda path, _: np.float32(getattr(path[0], "key", None) == HEAD), params)
  trainable = jax.tree_util.tree_map_with_path(
      lambda path, _: np.float32(not any(p.search(_path_str(path)) for p in patterns)),
      params)
  return head, trainable, int(round(config.finetune.head_epochs * steps_per_epoch))


def load_initial_weights(config, state: TrainState, run: Run) -> TrainState:
  """Copies the parameters and BatchNorm statistics of `config.init_from` (a workdir
  or a weights file) into a fresh state wherever the shapes match; a new head (other
  number of classes) keeps its fresh initialization."""
  from flaxcnn import checkpoint as ckpt_lib
  source = config.init_from
  if os.path.isdir(source):
    loaded = ckpt_lib.load_raw(source)
  elif os.path.isfile(source):
    from flaxcnn import pretrained
    loaded = pretrained.load(config.model.name, source)
  else:
    raise FileNotFoundError(f"config.init_from={source} is neither a run directory nor a "
                            "weights file")
  kept, fresh_paths = 0, []

  def merge(path, fresh):
    nonlocal kept
    node = loaded
    for k in path:
      key = getattr(k, "key", None)
      if not isinstance(node, dict) or key not in node:
        fresh_paths.append(_path_str(path))
        return fresh
      node = node[key]
    if tuple(np.shape(node)) != tuple(fresh.shape):
      fresh_paths.append(_path_str(path))
      return fresh
    kept += 1
    return jnp.asarray(node, fresh.dtype)

  variables = jax.tree_util.tree_map_with_path(
      merge, {"params": state.params, "batch_stats": state.batch_stats})
  if not kept:
    raise ValueError(f"config.init_from={source}: no parameter matches model "
                     f"{config.model.name}; is it the same architecture?")
  if jax.process_index() == 0:
    print(f"Initialized {kept} arrays from {source}; fresh: "
          f"{', '.join(fresh_paths[:6]) or 'none'}{' ...' if len(fresh_paths) > 6 else ''}",
          flush=True)
  variables = jax.device_put(variables, run.replicated)
  return state.replace(params=variables["params"], batch_stats=variables["batch_stats"],
                       opt_state=jax.jit(run.tx.init, out_shardings=run.replicated)(
                           variables["params"]),
                       ema=({"params": variables["params"],
                             "batch_stats": variables["batch_stats"]}
                            if config.ema_decay else {}))


# ----------------------------------------------------------------------------- set-up

def setup(config, dataset) -> Run:
  """Builds the static parts of a run from a validated config and a dataset."""
  task = tasks.for_config(config)
  head = config.model.kwargs.get("num_classes")
  if head is not None and head != dataset.num_classes:
    raise ValueError(f"config.model.kwargs.num_classes={head} but {dataset.name} has "
                     f"{dataset.num_classes} classes; drop the override (the model's head "
                     "follows the data)")
  model = config_lib.build_model(config, dataset.num_classes)
  n_train = dataset.sizes["train"]
  if n_train < config.batch_size:
    raise ValueError(f"config.batch_size={config.batch_size} is larger than the "
                     f"{n_train} training examples")
  task.check(config, model, dataset)
  spe = n_train // config.batch_size
  total = config.num_steps or max(1, int(round(config.num_epochs * spe)))
  variables = jax.eval_shape(lambda: init_variables(model, dataset.image_shape, 0))
  run = Run(config=config, task=task, model=model, mesh=make_mesh(),
            tx=optim.make_optimizer(config, variables["params"]),
            schedule=optim.make_schedule(config, spe, total),
            steps_per_epoch=spe, total_steps=total, mean=dataset.mean, std=dataset.std,
            num_classes=dataset.num_classes, schedule_template=variables.get("schedule"))
  if config.init_from:
    run.finetune = finetune_masks(config, variables["params"], spe)
  run.train_size = task.train_size(config, dataset)
  return run


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


class Console:
  """What a person reads: a header, progress (a live bar on a terminal, plain lines
  otherwise), evaluation lines, warnings. Only process 0 prints."""

  def __init__(self, total: int):
    self.active = jax.process_index() == 0
    self.tty = self.active and sys.stdout.isatty()
    self.total, self._bar, self._t = total, False, 0.0

  def line(self, text: str):
    if not self.active:
      return
    if self._bar:
      sys.stdout.write("\r\033[K")
      self._bar = False
    print(text, flush=True)

  def progress(self, step: int, start: float, first_step: int):
    if not self.tty or time.time() - self._t < 0.25:
      return
    self._t = time.time()
    frac = step / max(self.total, 1)
    done = int(30 * frac)
    rate = (step - first_step) / max(self._t - start, 1e-9)
    sys.stdout.write(f"\r[{'#' * done}{'.' * (30 - done)}] {step}/{self.total} "
                     f"{rate:.2f} steps/s")
    sys.stdout.flush()
    self._bar = True


def _header(config, run: Run, dataset, workdir, resumed: Optional[int]) -> str:
  """One line: model, parameters, multiply-adds, data, devices, steps, workdir."""
  abstract = jax.eval_shape(lambda: init_variables(run.model, dataset.image_shape, 0))
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(abstract["params"]))
  try:
    from clu import parameter_overview
    logging.info("parameters of %s:\n%s", config.model.name,
                 parameter_overview.get_parameter_overview(abstract["params"],
                                                           include_stats=False))
  except Exception as e:  # clu is optional for the header
    logging.info("no parameter overview: %s", e)
  macs = ""
  h, w, c = dataset.image_shape
  if h == w:
    try:
      from flaxcnn.models import summary
      macs = f", {summary.count_macs(run.model, h, c) / 1e6:,.1f}M MACs"
    except Exception as e:  # the header never stops a run
      logging.info("no MAC count: %s", e)
  sizes = " / ".join(f"{k} {v:,}" for k, v in dataset.sizes.items())
  devices = f"{jax.device_count()} {jax.devices()[0].platform} device(s)"
  if jax.process_count() > 1:
    devices += f" in {jax.process_count()} processes"
  start = f"Resumed from checkpoint at step {resumed}" if resumed is not None \
      else "from scratch"
  return (f"{config.model.name} ({n_params:,} params{macs}) on {dataset.name} "
          f"({sizes}; {'x'.join(map(str, dataset.image_shape))}, {dataset.num_classes} "
          f"classes) | {devices} | {run.total_steps:,} steps "
          f"({run.total_steps / run.steps_per_epoch:.1f} epochs), {config.dtype} | "
          f"{workdir} | {start}")


# Fields whose change would make a resumed run's steps other images than the steps
# before: the global batch (steps per epoch, the epochs of every schedule), the seed
# (each epoch's order and augmentation) and which examples the splits hold.
RESUME_FIXED = ("batch_size", "seed", "data.source", "data.name", "data.validation_size",
                "data.train_split")


def check_resume(config, workdir: str, step: int) -> None:
  """A ValueError naming a RESUME_FIXED field that differs from the checkpointed run."""
  changed = workdir_lib.config_changes(config, workdir)
  for field in RESUME_FIXED:
    if field in changed:
      saved, now = changed[field]
      raise ValueError(
          f"config.{field}={now!r} differs from the run in {workdir} ({saved!r}), whose "
          f"checkpoint at step {step} it would resume: its steps would no longer continue "
          f"the same epochs. Resume with --config.{field}={saved!r}, or start a new "
          f"--workdir (--config.init_from={workdir} starts from its weights)")


def _restore(config, workdir, ckpt, fresh):
  try:
    return ckpt.restore_latest(fresh)
  except StructureMismatch as e:
    diff = workdir_lib.describe_changes(workdir_lib.config_changes(config, workdir))
    raise ValueError(f"the config differs from the run in {workdir} "
                     f"({'; '.join(diff[:6]) if diff else 'see below'}): {e}. Use another "
                     "--workdir for a new run, or the run's own config to resume it") from None


def train_and_evaluate(config, workdir: str, dataset=None) -> dict:
  """Trains per `config` in `workdir`, resuming from its latest checkpoint.

  Returns the final summary: step, epoch, seconds, interrupted, and the
  validation/test metrics of the task.
  """
  task = tasks.for_config(config)
  task.validate(config, jax.device_count())
  lock = workdir_lib.prepare(workdir)
  try:
    return _train(config, workdir, dataset, task, lock)
  finally:
    lock.release()


def _train(config, workdir, dataset, task, lock) -> dict:
  if dataset is None:
    dataset = task.load_data(config)
  base = setup(config, dataset)
  ckpt = Checkpointer(workdir, config.keep_checkpoints)
  try:
    fresh = create_state(base, dataset.image_shape)
    state, restored_step = _restore(config, workdir, ckpt, fresh)
    if restored_step is not None:
      check_resume(config, workdir, restored_step)
    if state is None:
      state = load_initial_weights(config, fresh, base) if config.init_from else fresh
    del fresh
    workdir_lib.save_config(config, workdir)
    writer = MetricWriter(workdir, resume_step=restored_step,
                          hparams=json.loads(config.to_json_best_effort()))
  except BaseException:
    ckpt.close()
    raise
  console = Console(base.total_steps)
  console.line(_header(config, base, dataset, workdir, restored_step))

  eval_feed = make_feed(base, dataset)
  eval_step = make_eval_step(base, eval_image_size(config, dataset))
  plateau = optim.Plateau(config.schedule.patience, config.schedule.factor)
  spe, total = base.steps_per_epoch, base.total_steps
  eval_every = max(1, int(round(config.eval_every_epochs * spe)))
  plan = stage_plan(config, total)
  head_steps = base.finetune[2] if base.finetune else 0

  step = int(jax.device_get(state.step))
  first_step = step
  pending = []
  t_last, step_last, t_start = time.time(), step, time.time()
  summary = {}
  profile = (step + 1, step + 1 + config.profile_steps) if config.profile_steps else None

  def flush_metrics(step):
    nonlocal pending, t_last, step_last
    if not pending:
      return
    m = jax.device_get(pending)
    pending = []
    bad = [i for i, x in enumerate(m) if x["nonfinite_loss"] or x["nonfinite_state"]]
    if bad:
      i = bad[0]
      what = "loss is NaN/Inf" if m[i]["nonfinite_loss"] else \
          "parameters or BatchNorm statistics became NaN/Inf"
      last = ckpt.steps()[-1] if ckpt.steps() else None
      raise NonFiniteLoss(
          f"{what} at step {step - len(m) + i + 1}; the run stopped and "
          f"the last good checkpoint ({'step ' + str(last) if last is not None else 'none'}) "
          f"in {ckpt.directory} is kept. Lower config.optimizer.lr or add warmup "
          f"(config.schedule.warmup_epochs), then rerun to resume.")
    now = time.time()
    ips = (step - step_last) * config.batch_size / max(now - t_last, 1e-9)
    values = {k: float(np.mean([x[k] for x in m]))
              for k in ("loss", "accuracy", "grad_norm", "param_norm")}
    values["lr"] = float(m[-1]["lr"])
    values["img_per_sec"] = ips
    epoch = step / spe
    writer.write(step, "train", values, epoch=epoch)
    lock.heartbeat()
    eta = (total - step) * config.batch_size / max(ips, 1e-9)
    console.line(f"epoch {epoch:7.2f}  step {step}/{total}  loss {values['loss']:.4f}  "
                 f"{task.accuracy_label} {values['accuracy']:.4f}  lr {values['lr']:.4g}  "
                 f"|g| {values['grad_norm']:.3g}  {ips:8.1f} img/s  ETA {format_duration(eta)}")
    t_last, step_last = now, step

  def run_eval(state, step):
    epoch = step / spe
    weights = [("", state.params, state.batch_stats)]
    if config.ema_decay:
      weights.append(("_ema", state.ema["params"], state.ema["batch_stats"]))
    for name in ("validation", "test"):
      if name not in dataset.splits:
        continue
      for suffix, params, stats in weights:
        res = evaluate(base, eval_step, params, stats,
                       eval_feed.eval_batches(name, config.eval_batch_size), dataset)
        writer.write(step, name + suffix, res, epoch=epoch)
        summary[name + suffix] = res
        console.line(f"eval {name + suffix:14s} step {step}  epoch {epoch:.2f}  "
                     + task.eval_line(res))
    if config.schedule.name == "plateau" and "validation" in summary:
      best, bad, mult = plateau.update(float(state.plateau_best), int(state.plateau_bad),
                                       1.0 - summary["validation"]["accuracy"])
      state = state.replace(
          plateau_best=jax.device_put(jnp.float32(best), base.replicated),
          plateau_bad=jax.device_put(jnp.int32(bad), base.replicated),
          lr_scale=jax.device_put(state.lr_scale * mult, base.replicated))
      if mult != 1.0:
        console.line(f"validation error plateaued: learning rate x{mult}")
    return state

  stage, feed = None, None
  interrupt = _Interrupt()
  try:
    with interrupt:
      while step < total:
        current = next(i for i, (a, b, _) in enumerate(plan) if a <= step < b)
        if current != stage:
          stage = current
          run, stage_data = stage_run(config, dataset, plan[stage][2])
          feed = make_feed(run, stage_data, arrays=getattr(feed, "arrays", None))
          if len(plan) > 1:
            console.line(f"stage {stage + 1}/{len(plan)} from step {step}: " + ", ".join(
                f"{k.split('.')[-1]}={v:g}" for k, v in plan[stage][2].items()
                if not isinstance(v, tuple)))
        if head_steps and step == head_steps:   # head trained: fresh optimizer for all
          state = state.replace(opt_state=jax.jit(base.tx.init, out_shardings=base.replicated)(
              state.params))
        if profile and step == profile[0]:
          jax.profiler.start_trace(os.path.join(workdir, "profile"))
        state, metrics = feed.train_step(state, step)
        step += 1
        if profile and step == profile[1]:
          jax.block_until_ready(state)
          jax.profiler.stop_trace()
          console.line(f"profiled steps {profile[0]}-{profile[1] - 1} into "
                       f"{os.path.join(workdir, 'profile')} (TensorBoard's profile tab)")
          profile = None
        pending.append(metrics)
        console.progress(step, t_start, first_step)
        done = step == total
        preempted = interrupt.signal or ckpt.reached_preemption(step)
        if step % config.log_every_steps == 0 or done or preempted:
          flush_metrics(step)
        if step % eval_every == 0 or done:
          flush_metrics(step)
          state = run_eval(state, step)
        if step % config.checkpoint_every_steps == 0 or done or preempted:
          flush_metrics(step)   # raises before a non-finite state is saved
          ckpt.save(state)
        if preempted:
          ckpt.wait()
          why = f"signal {interrupt.signal}" if interrupt.signal else "preemption"
          console.line(f"Received {why}: saved checkpoint at step {step}; "
                       "rerun the same command to resume.")
          interrupt.signal = interrupt.signal or "preemption"
          break
    if profile:
      jax.profiler.stop_trace()
    if not interrupt.signal and not summary:   # resumed from the final checkpoint
      state = run_eval(state, step)
  finally:
    ckpt.close()   # waits for an asynchronous save in flight
    writer.close()
  summary.update(step=step, epoch=step / spe, seconds=time.time() - t_start,
                 interrupted=bool(interrupt.signal))
  if jax.process_index() == 0 and not interrupt.signal:
    parts = [f"{k} {task.final_line(summary[k])}" for k in
             ("validation", "test", "validation_ema", "test_ema") if k in summary]
    console.line(f"Finished {config.model.name} on {dataset.name}: step {step}, "
                 f"epoch {summary['epoch']:.2f}, " + ", ".join(parts) +
                 f", {format_duration(summary['seconds'])}")
    workdir_lib.write_json(os.path.join(workdir, "summary.json"), summary)
  return summary


def load_state(config, workdir: str, dataset=None):
  """The latest train state saved in `workdir` (for notebooks, fine-tuning, tests)."""
  if dataset is None:
    dataset = tasks.for_config(config).load_data(config)
  run = setup(config, dataset)
  ckpt = Checkpointer(workdir, config.keep_checkpoints)
  try:
    state, _ = _restore(config, workdir, ckpt, create_state(run, dataset.image_shape))
  finally:
    ckpt.close()
  if state is None:
    raise FileNotFoundError(f"no checkpoint in {ckpt.directory}; train first")
  return state


def evaluate_checkpoint(config, workdir: str, dataset=None) -> dict:
  """Evaluates the latest checkpoint in `workdir` on the validation and test splits
  (classification: with `config.eval_mode`, center / ten_crop / multiscale)."""
  task = tasks.for_config(config)
  task.validate(config, jax.device_count())
  if dataset is None:
    dataset = task.load_data(config)
  run = setup(config, dataset)
  state = load_state(config, workdir, dataset)
  feed = make_feed(run, dataset)
  eval_step = make_eval_step(run, eval_image_size(config, dataset))
  results = {}
  for name in ("validation", "test"):
    if name in dataset.splits:
      res = evaluate(run, eval_step, state.params, state.batch_stats,
                     feed.eval_batches(name, config.eval_batch_size), dataset)
      results[name] = res
      if jax.process_index() == 0:
        print(f"eval {name:10s} ({config.eval_mode}) step {int(state.step)}: "
              + task.eval_line(res), flush=True)
  return results
