r"""Where a sweep's variants run: on this machine N at a time, each in its own
process with its own share of the accelerators (`local`), or on a SLURM cluster as
a job array (`slurm`); `--sweep` alone runs them one after another in one process.
Both launchers go through submitit (its LocalExecutor and SlurmExecutor: the same
pickled job either way, and its requeue on preemption):

    python launch.py --config=experiments/ablations/digits_depth.py --workdir=runs/dd \
        --launcher=local --parallel=2
    python launch.py --config=experiments/ablations/wrn_width.py --workdir=/scratch/wrn \
        --launcher=slurm --devices_per_variant=1 \
        --slurm=partition=gpu,time=720,cpus_per_task=8,mem_gb=64,account=myproject

or from Python and notebooks:

    handle = sweep.launch("experiments/ablations/digits_depth.py", "runs/dd",
                          launcher="local", parallel=2)
    handle.status()      # DataFrame: pending, queued (job id), running (step/total), ...
    handle.wait()        # the variants' records

Each job runs `sweep.run(..., index=i)`, so a variant's record, resume and failure
handling are those of a sequential sweep. Launching again skips finished variants and
those another process is training, and submits the pending, interrupted and (unless
retry_failed=False) failed ones. A job warned of its time limit or preempted (SIGUSR2,
which submitit asks SLURM to send `signal_delay_s` before the end) saves a checkpoint
and is requeued by submitit; the requeued job resumes from it. SIGINT or SIGTERM to a
local launcher (Ctrl-C, `kill`) stops its running variants after their checkpoint and
starts no other; each variant's record names the launcher (`launcher_pid`) and its
own process (`pid`).

Shares (local): a variant gets `devices_per_variant` GPUs (CUDA_VISIBLE_DEVICES) or
TPU chips (TPU_VISIBLE_CHIPS and its bounds), and, on a CPU, `devices_per_variant`
host devices and its slice of the cores (the process's CPU affinity, which XLA's and
tf.data's thread pools follow). A variant of `processes_per_variant` > 1 runs as that
many processes joined by jax.distributed (gloo on CPUs), with the coordinator on this
machine (local) or on the job's first node (slurm). On a CPU a variant's numbers
depend on how many cores XLA uses (the order of its float sums): a variant run at
--parallel=2 equals the same variant run alone on as many cores, bit for bit.

The package: base.py (the `Launcher` base, `@register`, Resources, the job of one
variant), one file per launcher (local.py, slurm.py), and here the registry's
`names`/`get`, `launch` and its handle. A new launcher is one `@register` class in a
new file of this package, imported below.
"""
import atexit
import contextlib
import dataclasses
import os
import signal
import socket
import sys
import threading
import time
import types
import weakref
from typing import Dict, List, Optional

import submitit

from flaxcnn.sweep import tracking
from flaxcnn.sweep.declare import source_path
from flaxcnn.sweep.launchers.base import (REGISTRY, Launcher, Resources,  # noqa: F401
                                          VariantJob, register, setup_lines, take_share)
from flaxcnn.sweep.launchers import local, slurm  # noqa: F401  (they register themselves)
from flaxcnn.sweep.runner import plan


def names():
  return tuple(REGISTRY)


def get(name: str) -> type:
  """The Launcher class registered as `name`."""
  if name not in REGISTRY:
    raise ValueError(f"--launcher={name!r}: choose one of {', '.join(REGISTRY)}")
  return REGISTRY[name]


def make(name: str, resources: Optional[Resources] = None, **fields) -> Launcher:
  """The launcher `name`, its Resources and Options taken from `resources` and the
  keyword `fields` (of either); a field neither has is a ValueError naming them."""
  cls = get(name)
  shared = {f.name for f in dataclasses.fields(Resources)}
  own = {f.name for f in dataclasses.fields(cls.Options)}
  unknown = sorted(set(fields) - shared - own)
  if unknown:
    raise ValueError(f"--launcher={name}: no setting {', '.join(unknown)}; it takes "
                     f"{', '.join(sorted(shared | own))}")
  res = dataclasses.replace(resources or Resources(),
                            **{k: v for k, v in fields.items() if k in shared})
  res.check()
  return cls(res, cls.Options(**{k: v for k, v in fields.items() if k in own}))


_LIVE = weakref.WeakSet()   # Launch handles, whose submitit jobs are dropped at exit


@atexit.register
def _drop_jobs() -> None:
  """submitit's LocalJob.__del__ fails (a traceback on stderr) when it runs during the
  interpreter's teardown; dropping the jobs before it runs them at a safe time."""
  for handle in list(_LIVE):
    handle.jobs.clear()


class Launch:
  """A launched sweep: `status()` (a DataFrame), `done()`, `wait()` (the records of
  the launched variants), and the submitit `jobs` by variant index."""

  def __init__(self, workdir: str, runner: Launcher, indices: List[int]):
    self.workdir, self.launcher, self.indices = workdir, runner.name, indices
    self.runner = runner
    self.jobs: Dict[int, submitit.Job] = {}
    self._thread: Optional[threading.Thread] = None
    self.error: Optional[BaseException] = None
    self.stopping = False            # set by `stop`: no further variant starts
    self._stopped = set()            # the pids `stop` has signalled
    _LIVE.add(self)

  def status(self):
    return tracking.status(self.workdir)

  def done(self) -> bool:
    if self._thread is not None and self._thread.is_alive():
      return False
    return all(j.done() for j in self.jobs.values())

  def wait(self, poll: float = 1.0) -> List[dict]:
    if self._thread is not None:
      self._thread.join()
    while not self.done():
      time.sleep(poll)
    if self.error is not None:
      raise self.error
    by_index = {r["index"]: r for r in tracking.records(self.workdir)}
    return [by_index[i] for i in self.indices]

  def stop(self) -> None:
    """Starts no further variant and sends SIGTERM to the launched ones running on this
    machine: each saves a checkpoint and stops (launching again resumes them). Called
    again, it signals the ones that have started since."""
    self.stopping = True
    here = socket.gethostname()
    for r in tracking.records(self.workdir):
      pid = r.get("pid")
      if (r["index"] in self.indices and r["status"] == tracking.RUNNING
          and r.get("host") == here and pid and pid != os.getpid() and pid not in self._stopped):
        self._stopped.add(pid)
        try:
          os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:   # it has just ended
          pass

  @contextlib.contextmanager
  def _stopping_on_signals(self, out):
    """SIGINT and SIGTERM to this process (Ctrl-C, `kill`) `stop` the variants
    rather than leave them running without their launcher."""
    def handle(signum, frame):
      print(f"[sweep] {signal.Signals(signum).name}: stopping the running variants after "
            "their checkpoint and starting no other; launching again resumes them",
            file=out, flush=True)
      self.stop()
    old = {}
    if threading.current_thread() is threading.main_thread():
      old = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
      yield
    finally:
      for s, h in old.items():
        signal.signal(s, h)

  def watch(self, every: float = 2.0, out=None) -> List[dict]:
    """Prints a line whenever a variant changes status (not at each step: --list_variants
    shows the steps), a finished one with its final figures, until all are done. A
    SIGINT or SIGTERM meanwhile `stop`s the sweep."""
    out = out or sys.stdout
    with self._stopping_on_signals(out):
      return self._watch(every, out)

  def _watch(self, every: float, out) -> List[dict]:
    seen = {}
    while True:
      if self.stopping:
        self.stop()   # the variants that started since
      finished = self.done()
      records = tracking.records(self.workdir)
      for r in records:
        if r["index"] in self.indices and seen.get(r["index"]) != r["status"]:
          seen[r["index"]] = r["status"]
          state = tracking.describe_state(r)
          if r["status"] == tracking.FINISHED:
            result = tracking.result_words(os.path.join(self.workdir, r["name"]))
            state += f": {result}" if result else ""
          elif r["status"] == tracking.RUNNING:
            state = "running"
          print(f"[sweep {r['index'] + 1}/{len(records)}] {r['name']}: {state}", file=out,
                flush=True)
      if finished:
        return self.wait()
      time.sleep(every)


def launch(source, workdir: str, launcher: str = "local", arg: str = "", config=None,
           sweep=None, retry_failed: bool = True, resources: Optional[Resources] = None,
           specs=None, **fields) -> Launch:
  """Submits the sweep's variants that still need to run; returns a `Launch`.

  `source`, `arg`, `config`, `sweep` select the variants as in `sweep.variants`
  (`specs`: their variant_specs, when the caller has them);
  `resources` (or its fields as keywords: parallel, devices_per_variant,
  processes_per_variant, timeout_min) and the launcher's own options as keywords
  (slurm: slurm_partition, cpus_per_task, mem_gb, slurm_options) say where and how
  many. The local launcher keeps `parallel` jobs running from a background thread of
  this process; slurm submits one job array.
  """
  runner = make(launcher, resources, **fields)
  if isinstance(source, (str, os.PathLike, types.ModuleType)):
    source = source_path(source)   # absolute: jobs import it again by path
  specs = plan(source, workdir, arg, None, config, sweep, specs)
  overrides = [ov for _, ov, _ in specs]     # the jobs index this very list
  folder = os.path.join(workdir, ".submitit")
  todo = [i for i, (name, _, _) in enumerate(specs) if _needs_run(
      tracking.variant_status(os.path.join(workdir, name)), retry_failed, folder)]
  handle = Launch(workdir, runner, todo)
  jobs = [VariantJob(source, os.path.abspath(workdir), i, arg, config, overrides, retry_failed,
                     name=specs[i][0]) for i in todo]
  runner.submit(handle, jobs, folder)
  return handle


def _needs_run(record: dict, retry_failed: bool, folder: str) -> bool:
  s = record["status"]
  if s == tracking.FAILED:
    return retry_failed
  if s in (tracking.RUNNING, tracking.QUEUED):
    owner = REGISTRY.get(record.get("launcher"))
    return owner is not None and owner.job_over(record, folder)
  return s != tracking.FINISHED
