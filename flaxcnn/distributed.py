"""Multi-process (multi-host) set-up: `jax.distributed.initialize` before any JAX use,
then a check that every process runs the same config."""
import atexit
import fcntl
import glob
import hashlib
import json
import os
import socket
import sys
import tempfile
import threading
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from flaxcnn.data.core import fingerprint
from flaxcnn.papers import flatten


def initialize(num_processes: int = 1, process_id: int = 0,
               coordinator_address=None, auto: bool = False, timeout: int = 300) -> None:
  """Connects the processes of a multi-host run; a no-op for one process.

  On CPU the cross-process collectives use gloo, so several processes on one
  machine (or CPU hosts) can run the same program as a TPU pod or GPU cluster.
  A process other than 0 first checks, for up to `timeout` seconds, that the
  coordinator answers: JAX's own wait ends in an abort (a C++ trace) after minutes.
  """
  if auto:
    jax.distributed.initialize()
    return
  if num_processes <= 1:
    return
  if coordinator_address is None:
    raise ValueError("--coordinator_address (host:port of process 0) is required when "
                     "--num_processes > 1")
  if not 0 <= process_id < num_processes:
    raise ValueError(f"--process_id={process_id} must be in 0..{num_processes - 1} "
                     f"(--num_processes={num_processes})")
  if process_id:
    _wait_for_coordinator(coordinator_address, process_id, num_processes, timeout)
  else:
    _claim_coordinator(coordinator_address)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  # JAX's own timeout ends in an abort (a C++ trace); this one line comes first.
  watchdog = threading.Timer(timeout, _stop, args=(
      f"error: process {process_id} of {num_processes}: the {num_processes} processes did "
      f"not all join at {coordinator_address} within {timeout:g} s (--distributed_timeout):"
      f" start each --process_id from 0 to {num_processes - 1} once, with the same "
      "--num_processes and --coordinator_address",))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=int(timeout) + 60)
  except Exception as e:  # noqa: BLE001 - e.g. the coordinator's port already taken
    raise ValueError(
        f"process {process_id} of {num_processes} could not join at {coordinator_address} "
        f"({' '.join(str(e).split())[:200]}): is another run's process 0 using this "
        "--coordinator_address, or a --process_id given twice?") from None
  finally:
    watchdog.cancel()


_CLAIMS = []   # the coordinator claims this process holds (open files), until it exits


def _claim_coordinator(address: str) -> None:
  """Process 0 holds a lock named after its coordinator port on this host: a second
  process 0 (a --process_id given twice) stops here with one line, before JAX's
  coordination service sees two task 0s and aborts both."""
  port = address.rpartition(":")[2]
  path = os.path.join(tempfile.gettempdir(), f"flaxcnn-coordinator-{port}.lock")
  while True:
    f = open(path, "a")
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      f.close()
      raise ValueError(f"--coordinator_address={address} is taken by another process 0 on "
                       "this machine: give each process of the run its own --process_id "
                       "(0 once), or another run another port") from None
    if _same_file(f, path):
      break
    f.close()   # its holder removed the file on exit after we opened it: claim anew
  _CLAIMS.append(f)
  atexit.register(_release, f, path)


def _same_file(f, path: str) -> bool:
  try:
    return os.path.samestat(os.fstat(f.fileno()), os.stat(path))
  except OSError:
    return False


def _release(f, path: str) -> None:
  """Removes the claim's file at exit, while still holding its lock (a process that
  opened it meanwhile sees it gone and claims a new one)."""
  try:
    os.unlink(path)
  except OSError:
    pass
  f.close()


def _stop(line: str) -> None:
  """Ends the process at once with one line (the main thread is blocked in JAX)."""
  sys.stderr.write(line + "\n")
  sys.stderr.flush()
  os._exit(1)


def _wait_for_coordinator(address: str, process_id: int, num_processes: int,
                          timeout: float) -> None:
  """Returns once the coordinator's port accepts a connection; a ValueError naming
  the flags to check when it does not within `timeout` seconds."""
  host, _, port = address.rpartition(":")
  deadline = time.time() + timeout
  while True:
    try:
      with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
        return
    except OSError:
      if time.time() > deadline:
        raise ValueError(
            f"process {process_id} of {num_processes} could not reach the coordinator at "
            f"{address} within {timeout:g} s: start process 0 (--process_id=0) with the "
            "same --coordinator_address, and check --num_processes and that each "
            f"--process_id from 0 to {num_processes - 1} runs once") from None
      time.sleep(0.5)


def check_same_config(config) -> None:
  """Every process of a multi-process run must run the same config and the same
  flaxcnn code (a different batch_size or seed on one process trained a model at
  chance level, exit 0). Each process shares both with all; a difference stops every
  process with the same one line naming the fields, their values and the processes."""
  if jax.process_count() == 1:
    return
  diffs = _differences(json.loads(config.to_json_best_effort(sort_keys=True)))
  if diffs:
    raise ValueError(f"the processes of this run were given different configs "
                     f"({'; '.join(diffs[:4])}{' ...' if len(diffs) > 4 else ''}); start "
                     "every process with the same --config and --config.* flags")
  diffs = _differences({"flaxcnn code": code_version()})
  if diffs:
    raise ValueError(f"the processes of this run run different flaxcnn code ({diffs[0]}: a "
                     "hash of the package's files); check out the same commit on every host")


def check_same_data(dataset, prints=None) -> None:
  """Every process must have loaded the same data (its splits' sizes and hashes,
  `prints` if computed): a folder that differs on one host would train each process
  on other images."""
  if jax.process_count() == 1:
    return
  diffs = _differences(prints or fingerprint(dataset))
  if diffs:
    raise ValueError(f"the processes of this run loaded different data ({'; '.join(diffs[:3])}"
                     "; size:hash of each split); give every host the same data.root content")


def code_version() -> str:
  """A hash of flaxcnn's source files (names and bytes)."""
  root = os.path.dirname(os.path.abspath(__file__))
  h = hashlib.sha1()
  for path in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)):
    h.update(os.path.relpath(path, root).encode())
    with open(path, "rb") as f:
      h.update(f.read())
  return h.hexdigest()[:12]


def _differences(mine: dict) -> list:
  """'field: v0 (process 0) vs v1 (process p)' for each field of the (nested) dict
  where some process differs from process 0 (all processes call this together)."""
  data = np.frombuffer(json.dumps(mine, sort_keys=True).encode(), np.uint8)
  sizes = multihost_utils.process_allgather(np.int32(data.size))
  padded = np.zeros(int(np.max(sizes)), np.uint8)
  padded[:data.size] = data
  everyone = multihost_utils.process_allgather(padded)
  dicts = [flatten(json.loads(bytes(row[:n]).decode())) for row, n in zip(everyone, sizes)]
  diffs = []
  for p, other in enumerate(dicts[1:], start=1):
    for field in sorted(set(dicts[0]) | set(other)):
      if dicts[0].get(field) != other.get(field):
        diffs.append(f"{field}: {dicts[0].get(field)!r} (process 0) vs "
                     f"{other.get(field)!r} (process {p})")
  return diffs
