"""Multi-process (multi-host) set-up: `jax.distributed.initialize` before any JAX use."""
import jax


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
