"""What every launcher shares: the registry, the `Launcher` base, the resources each
variant gets, and the job that runs one variant.

A launcher is one class in one file of this package, decorated with `@register`:

    @register
    class MyCluster(Launcher):
      name = "mycluster"                 # --launcher=mycluster, sweep.launch(..., "mycluster")

      def submit(self, handle, jobs, folder):
        ...                              # start each VariantJob; handle.jobs[job.index] = ...

and imported in `flaxcnn/sweep/launchers/__init__.py`. Its own settings are the fields
of its `Options` dataclass (keywords of `sweep.launch`), and `parse_flag` reads them
from the command-line flag named by `flag` (e.g. --slurm=partition=gpu).
"""
import dataclasses
import os
import shlex
import signal
import socket
from typing import Optional

import submitit

import flaxcnn
from flaxcnn import backend, distributed
from flaxcnn import workdir as workdir_lib
from flaxcnn.sweep import tracking
from flaxcnn.sweep.runner import run

REGISTRY = {}
_TPU_BOUNDS = {1: "1,1,1", 2: "1,2,1", 4: "2,2,1"}


def register(cls):
  """Class decorator: makes a Launcher available under its `name`."""
  if cls.name in REGISTRY:
    raise ValueError(f"a launcher named {cls.name!r} is already registered")
  REGISTRY[cls.name] = cls
  return cls


@dataclasses.dataclass
class Resources:
  """What each variant gets, and how many run at once (flags of the same names)."""
  parallel: Optional[int] = None       # variants at once (default: devices // devices_per_variant)
  devices_per_variant: int = 1         # GPUs / TPU chips (CPU: host devices) per variant
  processes_per_variant: int = 1       # processes joined by jax.distributed per variant
  timeout_min: int = 7 * 24 * 60       # a job's time limit (SLURM --time)
  signal_delay_s: int = 120            # SIGUSR2 this long before the time limit

  def check(self) -> None:
    for name in ("devices_per_variant", "processes_per_variant", "timeout_min"):
      if getattr(self, name) < 1:
        raise ValueError(f"--{name}={getattr(self, name)} must be at least 1")
    if self.parallel is not None and self.parallel < 1:
      raise ValueError(f"--parallel={self.parallel} must be at least 1")
    if self.devices_per_variant % self.processes_per_variant:
      raise ValueError(f"--devices_per_variant={self.devices_per_variant} must be a multiple "
                       f"of --processes_per_variant={self.processes_per_variant} (each "
                       "process of a variant takes the same number of devices)")


@dataclasses.dataclass
class NoOptions:
  """A launcher without settings of its own."""


class Launcher:
  """Submits a sweep's variants as jobs. `resources` are the shared Resources,
  `options` an instance of the launcher's own `Options`."""
  name: str = ""
  Options = NoOptions
  flag: Optional[str] = None       # the command-line flag of its options (--<flag>=k=v,...)
  flag_help: str = ""

  def __init__(self, resources: Resources, options=None):
    self.resources, self.options = resources, options or self.Options()

  @classmethod
  def parse_flag(cls, items) -> dict:
    """The keywords of `sweep.launch` (Resources or Options fields) that the items of
    this launcher's flag ('key=value' strings) give."""
    return {}

  def submit(self, handle, jobs, folder: str) -> None:
    """Starts the VariantJobs `jobs` (submitit's files under `folder`), filling
    handle.jobs by variant index."""
    raise NotImplementedError

  @classmethod
  def job_over(cls, record: dict, folder: str) -> bool:
    """Whether the job of a queued or running variant this launcher submitted has
    ended without finishing it (then it is submitted again)."""
    return False

  def after_submit(self, handle):
    """What the command line does once the jobs are submitted; returns its exit
    status (0 or an 'error: ...' line). Here: watch the variants until they end."""
    records = handle.watch()
    print(tracking.summary_line(records, handle.workdir), flush=True)
    failed = [r for r in records if r["status"] == tracking.FAILED]
    return f"error: {tracking.summary_line(records, handle.workdir)}" if failed else 0


# ----------------------------------------------------------------------------- the job

class VariantJob(submitit.helpers.Checkpointable):
  """One variant of a sweep as a submitit job: takes its share of the machine, joins
  its other processes, and runs `sweep.run(..., index=i)`. Requeued by submitit (its
  `checkpoint` resubmits the same job) when the trainer stopped for SIGUSR2."""

  def __init__(self, source, workdir: str, index: int, arg: str, config, overrides,
               retry_failed: bool = True, share: Optional[dict] = None, name: str = ""):
    self.source, self.workdir, self.index, self.arg = source, workdir, index, arg
    self.config, self.overrides, self.retry_failed = config, overrides, retry_failed
    self.share = share or {}
    self.name = name                   # the variant's folder under workdir

  def __call__(self) -> dict:
    env = submitit.JobEnvironment()
    rank, count = env.global_rank, env.num_tasks
    take_share(self.share, rank, count)    # before JAX starts a backend in this process
    backend.configure()
    if count > 1:
      distributed.initialize(count, rank, self._coordinator(env))
    record = run(self.source, self.workdir, arg=self.arg, index=self.index,
                 config=self.config, sweep=self.overrides,
                 retry_failed=self.retry_failed)[0]
    if record["status"] == tracking.INTERRUPTED and record.get("signal") == "SIGUSR2":
      # The trainer has saved its checkpoint; submitit's own handler (back in place)
      # now calls `checkpoint` and requeues this job, which resumes from it.
      signal.raise_signal(signal.SIGUSR2)
    return record

  def _coordinator(self, env) -> str:
    if self.share.get("coordinator"):
      return self.share["coordinator"]
    digits = "".join(c for c in str(env.job_id) if c.isdigit()) or "0"
    return f"{env.hostnames[0]}:{20000 + int(digits) % 20000}"


def take_share(share: dict, rank: int = 0, count: int = 1) -> None:
  """Applies a variant's share to this process (process `rank` of `count`): the
  accelerators it may see, its host device count and CPU cores."""
  devices, platform = list(share.get("devices", ())), share.get("platform")
  mine = devices[len(devices) * rank // count:len(devices) * (rank + 1) // count]
  if platform == "gpu" and mine:
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, mine))
  elif platform == "tpu" and mine:
    port = 8476 + int(share.get("slot", 0)) * 8 + rank
    os.environ.update(TPU_VISIBLE_CHIPS=",".join(map(str, mine)), TPU_PROCESS_BOUNDS="1,1,1",
                      TPU_CHIPS_PER_PROCESS_BOUNDS=_TPU_BOUNDS[len(mine)],
                      TPU_PROCESS_PORT=str(port), TPU_PROCESS_ADDRESSES=f"localhost:{port}")
  elif platform == "cpu" and share.get("host_devices"):
    n = max(1, int(share["host_devices"]) // count)
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])
  cores = list(share.get("cores", ()))
  cores = cores[len(cores) * rank // count:len(cores) * (rank + 1) // count] or cores
  if cores and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, cores)


def setup_lines():
  """Shell lines a job runs first: the jobs import this very flaxcnn (a checkout that
  is not pip-installed, a notebook's sys.path)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(flaxcnn.__file__)))
  return [f"export PYTHONPATH={shlex.quote(root)}${{PYTHONPATH:+:$PYTHONPATH}}"]


def mark_queued(workdir: str, job: VariantJob, launcher: str, job_id=None, pid=None,
                still_queued: bool = False) -> None:
  """variant.json says 'queued' (with the job id once known); `still_queued`: only if
  its job has not moved it on already (running, finished)."""
  vdir, index = os.path.join(workdir, job.name), job.index
  os.makedirs(vdir, exist_ok=True)
  record = tracking.variant_status(vdir)
  if still_queued and record["status"] != tracking.QUEUED:
    return
  record.update(status=tracking.QUEUED, launcher=launcher, index=index,
                host=socket.gethostname() if pid else None, pid=pid)
  if pid:   # kept once the variant runs (its own pid replaces `pid`)
    record["launcher_pid"] = pid
  if job_id is not None:
    record["job_id"] = str(job_id)
  tracking.write_json(os.path.join(vdir, workdir_lib.VARIANT), record)


def mark_pending(workdir: str, job: VariantJob) -> None:
  """A queued variant that was never started is pending again."""
  vdir = os.path.join(workdir, job.name)
  record = tracking.variant_status(vdir)
  if record["status"] == tracking.QUEUED:
    record.update(status=tracking.PENDING, pid=None)
    tracking.write_json(os.path.join(vdir, workdir_lib.VARIANT), record)
