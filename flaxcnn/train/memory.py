"""Out of memory, in words a user can act on: the field that most likely asked for
too much (batch_size, eval_batch_size, data.image_size, the model) and the size XLA
asked for, instead of one bare RESOURCE_EXHAUSTED line or a page of trace."""
import re

import jax

from flaxcnn import models


class OutOfMemory(ValueError):
  """A step or an evaluation did not fit in memory (one line for the console)."""


def is_out_of_memory(e: BaseException) -> bool:
  if isinstance(e, MemoryError):
    return True
  text = str(e)
  return isinstance(e, jax.errors.JaxRuntimeError) and (
      "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower())


def asked_for(e: BaseException) -> str:
  """'644.0 GiB' from XLA's 'allocating 691491088576 bytes', or '' when not said."""
  sizes = [int(n) for n in re.findall(r"(\d{4,}) bytes", str(e))]
  return f"{max(sizes) / 2**30:.1f} GiB" if sizes else ""


def explain(config, where: str, e: BaseException, saved: str = "") -> OutOfMemory:
  """The one line for an out-of-memory error in `where` ('the training step' or
  'the evaluation'); `saved` says what of the run was kept."""
  size = asked_for(e)
  if where == "the evaluation":
    fix = f"--config.eval_batch_size (now {config.eval_batch_size})"
    if config.eval_mode != "center":
      fix += f" or --config.eval_mode (now {config.eval_mode}: several views per image)"
  else:
    fix = (f"--config.batch_size (now {config.batch_size}), --config.data.image_size "
           f"(now {config.data.image_size or 'the data size'}) or the model "
           f"({models.model_label(config)})")
    if config.dtype == "float32":
      fix += ", or try --config.dtype=bfloat16"
  device = jax.devices()[0]
  return OutOfMemory(
      f"out of memory in {where}{f' (it asked for {size})' if size else ''} on "
      f"{device.platform.upper()} ({device.device_kind}): lower {fix}"
      + (f"; {saved}" if saved else ""))


def state_alive(state) -> bool:
  """Whether the state's arrays still hold their values (a failed step that donated
  them leaves them deleted)."""
  return all(not x.is_deleted() for x in jax.tree.leaves(state) if isinstance(x, jax.Array))
