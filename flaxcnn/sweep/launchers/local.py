"""The `local` launcher: the variants on this machine, N at a time, each in its own
process (submitit's LocalExecutor) with its own share of the accelerators or cores."""
import collections
import os
import socket
import subprocess
import sys
import threading
import time
from typing import List

import jax
import submitit

from flaxcnn import backend
from flaxcnn.sweep import tracking
from flaxcnn.sweep.launchers.base import (_TPU_BOUNDS, Launcher, Resources, VariantJob,
                                          mark_pending, mark_queued, register, setup_lines)
from flaxcnn import workdir as workdir_lib


@register
class Local(Launcher):
  """Keeps `parallel` jobs running from a background thread of this process."""
  name = "local"

  def submit(self, handle, jobs: List[VariantJob], folder: str) -> None:
    res = self.resources
    platform, devices = local_devices()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        list(range(os.cpu_count() or 1))
    slots = shares(res, platform, devices, cores)
    executor = submitit.LocalExecutor(folder=folder)
    for job in jobs:   # waiting for a slot: queued by this process (pending again if it dies)
      mark_queued(handle.workdir, job, self.name, pid=os.getpid())

    def start(job: VariantJob, share: dict):
      share = dict(share)
      if res.processes_per_variant > 1:
        share["coordinator"] = f"127.0.0.1:{_free_port()}"
      job.share = share
      executor.update_parameters(timeout_min=res.timeout_min,
                                 tasks_per_node=res.processes_per_variant,
                                 signal_delay_s=res.signal_delay_s, setup=setup_lines())
      sub = executor.submit(job)
      handle.jobs[job.index] = sub
      mark_queued(handle.workdir, job, self.name, job_id=sub.job_id, pid=os.getpid(),
                  still_queued=True)
      return sub

    handle._thread = threading.Thread(target=_schedule,
                                      args=(handle, settings_first(jobs), slots, start),
                                      name="flaxcnn-sweep-local", daemon=True)
    handle._thread.start()


def settings_first(jobs: List[VariantJob]) -> List[VariantJob]:
  """The jobs in starting order: the first seed of every setting, then the second of
  every setting, ... (otherwise in sweep order). A partial sweep then has every setting,
  and the variants that start together differ in their programs, so a repeat's
  process reads them back from the compilation cache instead of compiling them again
  at the same time (a digits ResNet-8 variant: 9.1 s alone, 5.5 s after its seed 0)."""
  seen = collections.Counter()
  def repeat(job):
    setting = repr(sorted((k, repr(v)) for k, v in job.overrides[job.index].items()
                          if k != "seed"))
    seen[setting] += 1
    return seen[setting]
  ranks = [repeat(job) for job in jobs]
  return [job for _, job in sorted(zip(ranks, jobs), key=lambda rj: rj[0])]


def _schedule(handle, jobs, slots, start) -> None:
  """Starts the jobs as slots come free, until all have ended."""
  queue, free, running = collections.deque(jobs), collections.deque(slots), {}
  try:
    while queue or running:
      if handle.stopping and queue:   # never started: pending again
        for job in queue:
          mark_pending(handle.workdir, job)
        queue.clear()
      while queue and free:
        share, job = free.popleft(), queue.popleft()
        running[id(share)] = (share, job, start(job, share))
      time.sleep(0.5)
      for key, (share, job, sub) in list(running.items()):
        if sub.done():
          del running[key]
          free.append(share)
          _record_early_end(handle.workdir, job, sub)
  except BaseException as e:  # noqa: BLE001 - reported by wait()
    handle.error = e


def _record_early_end(workdir: str, job: VariantJob, sub) -> None:
  """A job that ended before its variant started (its record still says queued) is
  recorded as failed, with the job's error and its log file."""
  vdir = os.path.join(workdir, job.name)
  record = tracking.variant_status(vdir)
  if record["status"] != tracking.QUEUED:
    return
  try:
    error = sub.exception()
  except Exception as e:  # noqa: BLE001 - no result at all (the process was killed)
    error = e
  record.update(status=tracking.FAILED, error=(
      f"the job ended before training: {tracking.one_line(error) if error else 'no result'}"
      f" (log: {sub.paths.stderr})"))
  tracking.write_json(os.path.join(vdir, workdir_lib.VARIANT), record)


def local_devices():
  """(platform, count) of this machine's accelerators; asked in a child process
  unless this one has started JAX already, so that it does not hold the GPUs."""
  if backend._backends_started():
    return jax.default_backend(), jax.local_device_count()
  out = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend(), "
                        "jax.local_device_count())"], capture_output=True, text=True,
                       timeout=600)
  words = out.stdout.split()
  if out.returncode or len(words) != 2:
    raise RuntimeError(f"could not list this machine's devices: {out.stderr.strip()[-300:]}")
  return words[0], int(words[1])


def shares(res: Resources, platform: str, devices: int, cores: List[int]) -> List[dict]:
  """One share per slot (`parallel` of them): disjoint accelerators; on a CPU, host
  devices and a disjoint slice of the cores (shared round-robin when slots > cores)."""
  per = res.devices_per_variant
  parallel = res.parallel or max(1, devices // per)
  if platform != "cpu" and parallel * per > devices:
    raise ValueError(f"--parallel={parallel} x --devices_per_variant={per} needs "
                     f"{parallel * per} {platform.upper()} devices; this machine has {devices}")
  chips = per // res.processes_per_variant
  if platform == "tpu" and chips not in _TPU_BOUNDS:
    raise ValueError(f"--devices_per_variant={per} gives each process {chips} TPU chips; a "
                     f"process of a TPU VM takes {', '.join(map(str, _TPU_BOUNDS))} chips")
  out = []
  for slot in range(parallel):
    share = {"platform": platform, "slot": slot}
    if platform == "cpu":
      c = max(1, len(cores) // parallel)
      mine = cores[slot * c:(slot + 1) * c] if parallel <= len(cores) else \
          [cores[slot % len(cores)]]
      share.update(cores=mine, host_devices=per)
    else:
      share["devices"] = list(range(slot * per, (slot + 1) * per))
    out.append(share)
  return out


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]
