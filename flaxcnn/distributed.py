"""Multi-process (multi-host) set-up: `jax.distributed.initialize` before any JAX use,
then a check that every process runs the same config."""
import json

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize(num_processes: int = 1, process_id: int = 0,
               coordinator_address=None, auto: bool = False) -> None:
  """Connects the processes of a multi-host run; a no-op for one process.

  On CPU the cross-process collectives use gloo, so several processes on one
  machine (or CPU hosts) can run the same program as a TPU pod or GPU cluster.
  """
  if auto:
    jax.distributed.initialize()
    return
  if num_processes <= 1:
    return
  if coordinator_address is None:
    raise ValueError("--coordinator_address (host:port of process 0) is required when "
                     "--num_processes > 1")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
  return out


def check_same_config(config) -> None:
  """Every process of a multi-process run must run the same config (a different
  batch_size or seed on one process trained a model at chance level, exit 0). Each
  process shares its config with all; a difference stops every process with the
  same one line naming the fields, their values and the processes."""
  if jax.process_count() == 1:
    return
  mine = np.frombuffer(config.to_json_best_effort(sort_keys=True).encode(), np.uint8)
  sizes = multihost_utils.process_allgather(np.int32(mine.size))
  padded = np.zeros(int(np.max(sizes)), np.uint8)
  padded[:mine.size] = mine
  everyone = multihost_utils.process_allgather(padded)
  configs = [_flat(json.loads(bytes(row[:n]).decode())) for row, n in zip(everyone, sizes)]
  diffs = []
  for p, other in enumerate(configs[1:], start=1):
    for field in sorted(set(configs[0]) | set(other)):
      if configs[0].get(field) != other.get(field):
        diffs.append(f"{field}: {configs[0].get(field)!r} (process 0) vs "
                     f"{other.get(field)!r} (process {p})")
  if diffs:
    raise ValueError(f"the processes of this run were given different configs "
                     f"({'; '.join(diffs[:4])}{' ...' if len(diffs) > 4 else ''}); start "
                     "every process with the same --config and --config.* flags")
