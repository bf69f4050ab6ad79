"""The train state and the static description of a run: create, restore, resume checks.

`Run` holds what never changes during a run (task, model, optimizer, schedule,
mesh, sizes, the global batch and each process's share of it); `TrainState` what
every step changes. The state is replicated over the `data` axis of a `Mesh` of all
devices.
"""
import dataclasses
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from flaxcnn import models, optim, parallel, tasks
from flaxcnn import workdir as workdir_lib
from flaxcnn.checkpoint import Checkpointer, OldLayerNames, StructureMismatch
from flaxcnn.data import streaming
from flaxcnn.train import finetune


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
  global_batch: int        # config.batch_size: over all devices and processes
  process_batch: int       # this process's share of it (its slice of every batch)
  stream: streaming.Options   # what streamed data read of the run
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


def init_variables(model, input_shape, seed):
  rng = jax.random.PRNGKey(seed)
  return model.init({"params": rng, "dropout": rng},
                    jnp.zeros((1,) + tuple(input_shape), jnp.float32), train=False)


def setup(config, dataset) -> Run:
  """Builds the static parts of a run from a validated config and a dataset."""
  task = tasks.for_config(config)
  head = config.model.kwargs.get("num_classes")
  if head is not None and head != dataset.num_classes:
    raise ValueError(f"config.model.kwargs.num_classes={head} but {dataset.name} has "
                     f"{dataset.num_classes} classes; drop the override (the model's head "
                     "follows the data)")
  n_train, batch = dataset.sizes["train"], config.batch_size
  if n_train < batch:
    raise ValueError(f"config.batch_size={batch} is larger than the "
                     f"{n_train} training examples")
  spe = n_train // batch
  process_batch = batch // jax.process_count()
  total = config.num_steps or max(1, int(round(config.num_epochs * spe)))
  model = models.build_model(config, dataset.num_classes, total_steps=total)
  task.check(config, model, dataset)
  variables = jax.eval_shape(lambda: init_variables(model, dataset.image_shape, 0))
  masks = finetune.finetune_masks(config, variables["params"], spe) if config.init_from \
      else None
  run = Run(config=config, task=task, model=model, mesh=parallel.make_mesh(),
            tx=optim.make_optimizer(config, variables["params"], masks),
            schedule=optim.make_schedule(config, spe, total),
            steps_per_epoch=spe, total_steps=total, mean=dataset.mean, std=dataset.std,
            num_classes=dataset.num_classes, global_batch=batch,
            process_batch=process_batch,
            stream=streaming.options(config.data, config.augment, batch, process_batch,
                                     config.seed, config.eval_mode, config.eval_scales),
            finetune=masks)
  run.train_size = task.train_size(config, dataset)
  return run


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


def restore(config, workdir: str, ckpt: Checkpointer, fresh: TrainState):
  """(state, step) of the latest readable checkpoint, or (None, None); a checkpoint
  of another structure is one line naming the config fields that differ."""
  try:
    return ckpt.restore_latest(fresh)
  except OldLayerNames as e:
    raise ValueError(str(e)) from None
  except StructureMismatch as e:
    diff = workdir_lib.describe_changes(workdir_lib.config_changes(config, workdir))
    if not diff:   # the same config: the layout of the train state itself changed
      raise ValueError(f"{e}, although the config is the run's own: its checkpoints were "
                       "written by another version of flaxcnn's train state (the optimizer "
                       "state of fine-tuning runs changed layout). Resume it with that "
                       f"version, or start a new --workdir with --config.init_from={workdir} "
                       "(its weights carry over)") from None
    raise ValueError(f"the config differs from the run in {workdir} "
                     f"({'; '.join(diff[:6])}): {e}. Use another --workdir for a new run, "
                     "or the run's own config to resume it") from None


def load_state(config, workdir: str, dataset=None) -> TrainState:
  """The latest train state saved in `workdir` (for notebooks, fine-tuning, tests)."""
  if dataset is None:
    dataset = tasks.for_config(config).load_data(config)
  run = setup(config, dataset)
  owner = workdir_lib.holder(workdir)
  if owner is not None and jax.process_index() == 0:
    print(f"{workdir} is in use by a run (host {owner.get('host')}, pid {owner.get('pid')}): "
          "reading its newest finished checkpoint without touching its files", flush=True)
  ckpt = Checkpointer(workdir, config.keep_checkpoints, read_only=owner is not None)
  try:
    state, _ = restore(config, workdir, ckpt, create_state(run, dataset.image_shape))
  finally:
    ckpt.close()
  if state is None:
    raise FileNotFoundError(f"no checkpoint in {ckpt.directory}; train first")
  return state
