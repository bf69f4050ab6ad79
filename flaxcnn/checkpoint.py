"""Orbax checkpoints of the whole train state: periodic, final, atomic, last K kept.

`restore_latest` falls back to the previous checkpoint, with a warning, when the
latest one cannot be read (a write cut short, a corrupt file), so a run never
loses more than one checkpoint interval of work.
"""
import os

import jax
import orbax.checkpoint as ocp
from absl import logging
from flax import serialization


class Checkpointer:

  def __init__(self, workdir: str, keep: int = 3):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=True))

  def save(self, state, force: bool = False) -> None:
    step = int(jax.device_get(state.step))
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.StandardSave(serialization.to_state_dict(state)),
                      force=True)

  def wait(self):
    self.manager.wait_until_finished()

  def steps(self):
    return sorted(self.manager.all_steps())

  def restore_latest(self, abstract_state):
    """Restores the newest readable checkpoint into the structure (and shardings) of
    `abstract_state`; returns (state, step) or (None, None) when there is none."""
    target = serialization.to_state_dict(abstract_state)
    for step in reversed(self.steps()):
      try:
        restored = self.manager.restore(step, args=ocp.args.StandardRestore(target))
      except Exception as e:  # orbax raises many kinds for unreadable files
        logging.warning("checkpoint %d in %s is unreadable (%s: %s); falling back to "
                        "the previous one", step, self.directory, type(e).__name__,
                        str(e).splitlines()[0][:200] if str(e) else "")
        print(f"WARNING: checkpoint {step} is unreadable; trying the previous one",
              flush=True)
        continue
      return serialization.from_state_dict(abstract_state, restored), step
    if self.steps():
      raise RuntimeError(f"no readable checkpoint in {self.directory} (steps "
                         f"{self.steps()}); move the directory away to start afresh")
    return None, None

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def load_raw(workdir: str) -> dict:
  """{'params', 'batch_stats'} (numpy) of the latest readable checkpoint of a run in
  `workdir`, whatever its model, for initializing another run (fine-tuning)."""
  directory = os.path.join(workdir, "checkpoints")
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      read_only=True))
  try:
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        restored = manager.restore(step, args=ocp.args.StandardRestore())
      except Exception as e:  # unreadable: try the previous one
        logging.warning("checkpoint %d in %s is unreadable (%s)", step, directory, e)
        continue
      restored = jax.device_get(restored)
      return {"params": restored["params"], "batch_stats": restored.get("batch_stats", {})}
  finally:
    manager.close()
  raise FileNotFoundError(f"config.init_from: no readable checkpoint in {directory}")
