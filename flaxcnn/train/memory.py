"""Out of memory, in words a user can act on: the field that most likely asked for
too much (batch_size, eval_batch_size, data.image_size, the model) and the size XLA
asked for, instead of one bare RESOURCE_EXHAUSTED line or a page of trace."""
import os
import re
import resource
from typing import Optional

import jax

from flaxcnn import models


class OutOfMemory(ValueError):
  """A step or an evaluation did not fit in memory (one line for the console)."""


class WontFit(MemoryError):
  """A computation that needs more memory than its device has free, refused before
  it runs (on a CPU, XLA aborts the process on a failed allocation)."""

  def __init__(self, need: int, free: int):
    super().__init__(f"needs {need} bytes, {free} bytes free")
    self.need, self.free = need, free


def _status_kib(path: str, field: str) -> Optional[int]:
  """A 'Field:  N kB' line of /proc/meminfo or /proc/self/status, in bytes."""
  try:
    with open(path) as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  return None


def free_bytes() -> Optional[int]:
  """What this process may still allocate on a CPU: the least of the memory the
  system has available and the room below its address-space limit (`ulimit -v`);
  None when unknown or on an accelerator (whose out of memory is an error XLA raises)."""
  if jax.local_devices()[0].platform != "cpu":
    return None
  room = [_status_kib("/proc/meminfo", "MemAvailable")]
  limit = resource.getrlimit(resource.RLIMIT_AS)[0]
  used = _status_kib(f"/proc/{os.getpid()}/status", "VmSize")
  if limit != resource.RLIM_INFINITY and used is not None:
    room.append(max(0, limit - used))
  room = [r for r in room if r is not None]
  return min(room) if room else None


def check_fits(compiled) -> None:
  """Raises WontFit when an ahead-of-time `compiled` computation needs more new
  memory (its temporaries and outputs) than `free_bytes`."""
  stats = compiled.memory_analysis()
  free = free_bytes()
  if stats is None or free is None:
    return
  need = stats.temp_size_in_bytes + stats.output_size_in_bytes
  if need > free:
    raise WontFit(need, free)


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
  if isinstance(e, WontFit):
    size = f"{e.need / 2**30:.1f} GiB, {e.free / 2**30:.1f} GiB free"
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
