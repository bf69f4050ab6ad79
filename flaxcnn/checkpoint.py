"""Orbax checkpoints of the whole train state: periodic, final, atomic, last K kept.

`restore_latest` restores the newest checkpoint that is readable, finite and intact.
Each save records a checksum of every array (`checksums`: the sum of its bits as
uint32 words, exact whatever the sharding) in the step's metadata; a restore whose
arrays do not match it (bytes changed on disk, which Orbax reads without complaint)
counts as corrupt. An unreadable one (a write cut short, a corrupt file) is moved aside to
`checkpoints/corrupt-<step>/` and one with NaN/Inf arrays to
`checkpoints/nonfinite-<step>/`, with a warning, so that no later run or
evaluation silently reads an older step while the newer one stays on disk; the
run then writes that step again. A checkpoint of another model or optimizer (its
arrays do not match the config's) is never moved: that is `StructureMismatch`.
A save that fails (a full disk, a quota) is `CheckpointWriteError`: its partial
temporary directory is removed and the earlier checkpoints stay as they were.
"""
import contextlib
import glob
import os
import re
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import serialization


# Automatic linen names (Conv_0, ResidualBlock_3, BNReLUConv_1) of checkpoints written
# before every layer of every family was named.
AUTO_NAMED = re.compile(r"'(Conv|BatchNorm|ConvBN|Projection|ResidualBlock|BNReLUConv)_\d+'")


# How often a reader beside a training run lists its checkpoints again when the
# run removed the one it was reading.
READ_TRIES = 5
ROTATED = object()


class StructureMismatch(ValueError):
  """The checkpoints in a workdir hold another model's or optimizer's arrays."""


class OldLayerNames(StructureMismatch):
  """Checkpoints written before every layer was named (Conv_0 instead of stem_conv)."""


class CheckpointWriteError(RuntimeError):
  """A checkpoint could not be written (full disk, quota, permissions)."""


def _write_reason(e: BaseException) -> str:
  """The operating system's words for a failed write, e.g. 'No space left on device'."""
  for x in (e, e.__cause__, e.__context__):
    if isinstance(x, OSError) and x.errno:
      return os.strerror(x.errno)
  code = re.search(r"os_error_code='?(\d+)", str(e))
  if code:
    return os.strerror(int(code.group(1)))
  first = str(e).splitlines()[0] if str(e) else type(e).__name__
  return first[:160]


def _shapes(tree) -> dict:
  """{path: shape} of a (state dict or metadata) tree."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(p): tuple(getattr(x, "shape", np.shape(x))) for p, x in flat}


@jax.jit
def _leaf_checksums(tree):
  """Per array: the sum of its bits as uint32 words (mod 2**32), so exact in any
  order of addition, on any number of devices or processes."""

  def words(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
      x = x.astype(jnp.uint8)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[x.dtype.itemsize]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)

  return [jnp.sum(words(x), dtype=jnp.uint32) for x in jax.tree.leaves(tree)]


def checksums(tree) -> list:
  """`_leaf_checksums` as Python ints (the replicated scalars read on this process)."""
  return [int(np.asarray(c.addressable_data(0))) for c in _leaf_checksums(tree)]


def all_finite(tree) -> bool:
  return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(jax.device_get(tree))
             if np.issubdtype(np.asarray(x).dtype, np.floating))


def read_only_manager(directory: str, **kwargs) -> ocp.CheckpointManager:
  """An Orbax manager that never writes, created without its three warnings that a
  read-only manager is read-only (they reached the console of every fine-tuning and
  feature-extraction run)."""
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    return ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
        read_only=True), **kwargs)
  finally:
    logging.set_verbosity(level)


class Checkpointer:

  def __init__(self, workdir: str, keep: int = 3, read_only: bool = False):
    """`read_only`: a reader beside the run that owns the workdir (evaluating a run
    that is training): it never removes a save in progress or moves a checkpoint
    aside, it skips what it cannot read."""
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.read_only = read_only
    handler = ocp.StandardCheckpointHandler()
    self.manager = read_only_manager(self.directory, item_handlers=handler) if read_only \
        else ocp.CheckpointManager(self.directory, item_handlers=handler, options=(
            ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         enable_async_checkpointing=True,
                                         cleanup_tmp_directories=True)))
    self._in_flight = None   # the step of a save that may still be writing

  def save(self, state) -> None:
    step = int(jax.device_get(state.step))
    if step in self.manager.all_steps():
      return
    self.wait()   # the previous asynchronous save, which may have failed
    tree = serialization.to_state_dict(state)
    sums = checksums(tree)
    with self._writing(step):
      self.manager.save(step, args=ocp.args.StandardSave(tree), force=True,
                        custom_metadata={"checksums": sums})
    self._in_flight = step

  @contextlib.contextmanager
  def _writing(self, step):
    """Turns a failed save of `step` into CheckpointWriteError and removes what it
    left half-written."""
    try:
      yield
    except Exception as e:  # orbax/tensorstore raise ValueError, OSError, ...
      removed = self._remove_partial()
      what = f"checkpoint {step}" if step is not None else "a checkpoint"
      self._in_flight = None
      logging.info("writing %s into %s failed: %r", what, self.directory, e)
      raise CheckpointWriteError(
          f"could not write {what} into {self.directory}: {_write_reason(e)}"
          + (" (its partial files were removed)" if removed else "")
          + f"; the checkpoints on disk ({', '.join(map(str, self.steps())) or 'none'}) "
          "are intact. Free space there (or fix the disk), then rerun to resume.") from e

  def _remove_partial(self) -> bool:
    """Deletes the temporary directories of saves that did not finish."""
    if jax.process_index() != 0:
      return False
    partial = glob.glob(os.path.join(self.directory, "*.orbax-checkpoint-tmp*"))
    for path in partial:
      shutil.rmtree(path, ignore_errors=True)
    return bool(partial)

  def reached_preemption(self, step: int) -> bool:
    """True on every process once any of them was told of a preemption (Orbax's
    own check), so all processes of a multi-host run save the same step."""
    return self.manager.reached_preemption(step)

  def wait(self):
    with self._writing(self._in_flight):
      self.manager.wait_until_finished()
    self._in_flight = None

  def steps(self):
    return sorted(self.manager.all_steps())

  def _set_aside(self, step: int, kind: str, reason: str) -> None:
    if self.read_only:
      print(f"WARNING: checkpoint {step} in {self.directory} is {reason}; skipped (read "
            "only: its run owns the files) and trying the previous one", flush=True)
      return
    src = os.path.join(self.directory, str(step))
    dst = os.path.join(self.directory, f"{kind}-{step}")
    if jax.process_index() == 0 and os.path.exists(src):
      n = 1
      while os.path.exists(dst):
        dst = os.path.join(self.directory, f"{kind}-{step}.{n}")
        n += 1
      os.replace(src, dst)
    print(f"WARNING: checkpoint {step} is {reason}; moved it to {dst} and trying the "
          "previous one", flush=True)
    logging.info("checkpoint %d in %s is %s; moved to %s", step, self.directory, reason, dst)
    self.manager.reload()

  def _check_structure(self, step: int, target: dict) -> None:
    try:
      saved = _shapes(self.manager.item_metadata(step).tree)
    except Exception:  # unreadable metadata: treated as corrupt by the caller
      return
    wanted = _shapes(target)
    if saved != wanted:
      missing = sorted(set(wanted) - set(saved))
      extra = sorted(set(saved) - set(wanted))
      shape = sorted(k for k in set(saved) & set(wanted) if saved[k] != wanted[k])
      detail = (f"{len(missing)} arrays missing, {len(extra)} unexpected, "
                f"{len(shape)} of another shape; e.g. "
                + ", ".join((missing + extra + shape)[:2]))
      old = [k for k in extra if AUTO_NAMED.search(k)]
      if old:
        raise OldLayerNames(
            f"the checkpoints in {self.directory} carry the automatic layer names of an "
            f"older flaxcnn (e.g. {old[0]}); this version names every layer and cannot "
            "resume them: train the run anew in another --workdir")
      raise StructureMismatch(f"the checkpoints in {self.directory} are of another model or "
                              f"optimizer than the config ({detail})")

  def restore_latest(self, abstract_state):
    """Restores the newest readable, finite checkpoint into the structure (and
    shardings) of `abstract_state`; returns (state, step) or (None, None) when there
    is none. Raises StructureMismatch when the saved arrays belong to another
    model, and RuntimeError when checkpoints exist but none can be used. Read only,
    beside a run that keeps its last K checkpoints, a step the run removes while it
    is read sends it back to the newest one on disk then."""
    target = serialization.to_state_dict(abstract_state)
    for attempt in range(READ_TRIES):
      if attempt:
        time.sleep(0.2)
      if self.read_only:
        self._reload()
      steps = self.steps()
      found = self._restore_newest(steps, target)
      if found is not ROTATED:
        break
    else:
      raise RuntimeError(
          f"the run writing {self.directory} removed the checkpoints read here before "
          f"they were read, {READ_TRIES} times (it keeps its last --config.keep_checkpoints "
          "and rotates them): evaluate again when it has finished")
    if found is not None:
      restored, step = found
      return serialization.from_state_dict(abstract_state, restored), step
    if steps and self.read_only:
      raise RuntimeError(f"none of the checkpoints {steps} in {self.directory} could be "
                         "read beside the run that is writing them (nothing was moved); "
                         "evaluate again after its next checkpoint")
    if steps:
      raise RuntimeError(f"none of the checkpoints {steps} in {self.directory} is readable "
                         "and finite (they were moved aside); rerun to start from scratch")
    return None, None

  def _restore_newest(self, steps, target):
    """(restored tree, step) of the newest usable one of `steps`, None when none is,
    or ROTATED when a reader beside the run saw them replaced while it read."""
    if self.read_only and not steps and self._on_disk():
      return ROTATED   # listed while the run replaced them
    for step in reversed(steps):
      self._check_structure(step, target)
      try:
        restored = self.manager.restore(step, args=ocp.args.StandardRestore(target))
      except Exception as e:  # orbax raises many kinds for unreadable files
        if self.read_only and not os.path.isdir(os.path.join(self.directory, str(step))):
          return ROTATED   # the run removed it while it was read
        first = str(e).splitlines()[0][:200] if str(e) else ""
        logging.info("checkpoint %d unreadable: %s: %s", step, type(e).__name__, first)
        self._set_aside(step, "corrupt", "unreadable")
        continue
      if not intact(self.manager, step, restored):
        self._set_aside(step, "corrupt", "corrupt (its arrays differ from the checksums "
                        "written with them)")
        continue
      if not all_finite({"params": restored["params"],
                         "batch_stats": restored.get("batch_stats", {})}):
        self._set_aside(step, "nonfinite", "not finite (NaN/Inf parameters)")
        continue
      return restored, step
    return None

  def _reload(self):
    """The steps on disk now (a step the run removes while they are listed: again)."""
    for _ in range(READ_TRIES):
      try:
        return self.manager.reload()
      except (OSError, ValueError):
        time.sleep(0.2)
    self.manager.reload()

  def _on_disk(self) -> bool:
    """Are there step directories, finished or not, in the checkpoint directory?"""
    return os.path.isdir(self.directory) and any(
        d.isdigit() for d in os.listdir(self.directory))

  def close(self):
    try:
      self.wait()
    finally:
      self.manager.close()


def intact(manager, step: int, restored) -> bool:
  """Do the restored arrays of `step` match the checksums saved with them? True
  for checkpoints written before checksums were recorded."""
  try:
    saved = (manager.metadata(step).custom_metadata or {}).get("checksums")
  except Exception:  # no step metadata: nothing to compare with
    saved = None
  return saved is None or list(saved) == checksums(restored)


def on_this_device(manager, step: int):
  """The saved tree's arrays as abstract arrays on this process's first device: a
  restore that does not depend on the devices or processes that wrote it (Orbax
  would otherwise place each array as it was sharded when saved, which fails for a
  checkpoint of a 2-process run read by one process)."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                      manager.item_metadata(step).tree)


def load_raw(workdir: str, with_step: bool = False):
  """{'params', 'batch_stats'} (numpy) of the latest readable checkpoint of a run in
  `workdir`, whatever its model (fine-tuning, feature extraction); with
  `with_step`, (step, variables). Read-only: nothing is moved."""
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"no checkpoint in {directory}; train that run first")
  manager = read_only_manager(directory, item_handlers=ocp.StandardCheckpointHandler())
  try:
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        restored = jax.device_get(manager.restore(step, args=ocp.args.StandardRestore(
            on_this_device(manager, step))))
      except Exception as e:  # unreadable: try the previous one
        print(f"WARNING: checkpoint {step} in {directory} is unreadable "
              f"({type(e).__name__}); trying the previous one", flush=True)
        continue
      if not intact(manager, step, restored):
        print(f"WARNING: checkpoint {step} in {directory} is corrupt (its arrays differ "
              "from the checksums written with them); trying the previous one", flush=True)
        continue
      variables = {"params": restored["params"],
                   "batch_stats": restored.get("batch_stats", {})}
      return (int(step), variables) if with_step else variables
  finally:
    manager.close()
  raise FileNotFoundError(f"no readable checkpoint in {directory}")
