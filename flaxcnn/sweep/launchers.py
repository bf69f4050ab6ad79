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
"""
import atexit
import collections
import contextlib
import dataclasses
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import weakref
from typing import Dict, List, Optional

import jax
import submitit

from flaxcnn import backend, distributed
from flaxcnn import workdir as workdir_lib
from flaxcnn.sweep import tracking
from flaxcnn.sweep.declare import source_path
from flaxcnn.sweep.runner import plan, run

LAUNCHERS = ("local", "slurm")
_TPU_BOUNDS = {1: "1,1,1", 2: "1,2,1", 4: "2,2,1"}


@dataclasses.dataclass
class Resources:
  """What each variant gets, and how many run at once (flags of the same names)."""
  parallel: Optional[int] = None       # variants at once (default: devices // devices_per_variant)
  devices_per_variant: int = 1         # GPUs / TPU chips (CPU: host devices) per variant
  processes_per_variant: int = 1       # processes joined by jax.distributed per variant
  timeout_min: int = 7 * 24 * 60       # a job's time limit (SLURM --time)
  slurm_partition: Optional[str] = None
  cpus_per_task: Optional[int] = None
  mem_gb: Optional[float] = None
  slurm_options: Dict[str, str] = dataclasses.field(default_factory=dict)  # e.g. account, qos
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


# ----------------------------------------------------------------------------- shares

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


def _setup() -> List[str]:
  """Shell lines a job runs first: the jobs import this very flaxcnn (a checkout that
  is not pip-installed, a notebook's sys.path)."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return [f"export PYTHONPATH={shlex.quote(root)}${{PYTHONPATH:+:$PYTHONPATH}}"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


# ----------------------------------------------------------------------------- launching

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

  def __init__(self, workdir: str, launcher: str, indices: List[int]):
    self.workdir, self.launcher, self.indices = workdir, launcher, indices
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
           **resource_fields) -> Launch:
  """Submits the sweep's variants that still need to run; returns a `Launch`.

  `source`, `arg`, `config`, `sweep` select the variants as in `sweep.variants`;
  `resources` (or its fields as keywords: parallel, devices_per_variant,
  processes_per_variant, timeout_min, slurm_partition, cpus_per_task, mem_gb,
  slurm_options) say where and how many. The local launcher keeps `parallel` jobs
  running from a background thread of this process; slurm submits one job array.
  """
  if launcher not in LAUNCHERS:
    raise ValueError(f"--launcher={launcher!r}: choose one of {', '.join(LAUNCHERS)}")
  res = dataclasses.replace(resources or Resources(), **resource_fields)
  res.check()
  if isinstance(source, (str, os.PathLike, types.ModuleType)):
    source = source_path(source)   # absolute: jobs import it again by path
  specs = plan(source, workdir, arg, None, config, sweep)
  overrides = [ov for _, ov, _ in specs]     # the jobs index this very list
  folder = os.path.join(workdir, ".submitit")
  todo = [i for i, (name, _, _) in enumerate(specs) if _needs_run(
      tracking.variant_status(os.path.join(workdir, name)), retry_failed, folder)]
  handle = Launch(workdir, launcher, todo)
  jobs = [VariantJob(source, os.path.abspath(workdir), i, arg, config, overrides, retry_failed,
                     name=specs[i][0]) for i in todo]
  if launcher == "local":
    _launch_local(handle, jobs, res, folder)
  else:
    _launch_slurm(handle, jobs, res, folder, os.path.basename(os.path.normpath(workdir)))
  return handle


def _needs_run(record: dict, retry_failed: bool, folder: str) -> bool:
  s = record["status"]
  if s == tracking.FAILED:
    return retry_failed
  if s in (tracking.RUNNING, tracking.QUEUED):
    return _slurm_job_over(record, folder)
  return s != tracking.FINISHED


_SLURM_ALIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING",
                "SUSPENDED", "UNKNOWN", "REQUEUE_HOLD", "REQUEUE_FED")


def _slurm_job_over(record: dict, folder: str) -> bool:
  """Whether the SLURM job of a queued or running variant has ended without finishing
  it (cancelled, failed, out of time): then it is submitted again."""
  if record.get("launcher") != "slurm" or not record.get("job_id") or not shutil.which("sacct"):
    return False
  state = submitit.SlurmJob(folder, str(record["job_id"])).state
  return state.split()[0] not in _SLURM_ALIVE


def _mark_queued(workdir: str, job: VariantJob, launcher: str, job_id=None, pid=None,
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


def _mark_pending(workdir: str, job: VariantJob) -> None:
  vdir = os.path.join(workdir, job.name)
  record = tracking.variant_status(vdir)
  if record["status"] == tracking.QUEUED:
    record.update(status=tracking.PENDING, pid=None)
    tracking.write_json(os.path.join(vdir, workdir_lib.VARIANT), record)


def _launch_local(handle: Launch, jobs: List[VariantJob], res: Resources, folder: str):
  platform, devices = local_devices()
  cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
      list(range(os.cpu_count() or 1))
  slots = shares(res, platform, devices, cores)
  executor = submitit.LocalExecutor(folder=folder)
  for job in jobs:   # waiting for a slot: queued by this process (pending again if it dies)
    _mark_queued(handle.workdir, job, "local", pid=os.getpid())

  def submit(job: VariantJob, share: dict):
    share = dict(share)
    if res.processes_per_variant > 1:
      share["coordinator"] = f"127.0.0.1:{_free_port()}"
    job.share = share
    executor.update_parameters(timeout_min=res.timeout_min,
                               tasks_per_node=res.processes_per_variant,
                               signal_delay_s=res.signal_delay_s, setup=_setup())
    sub = executor.submit(job)
    handle.jobs[job.index] = sub
    _mark_queued(handle.workdir, job, "local", job_id=sub.job_id, pid=os.getpid(),
                 still_queued=True)
    return sub

  def schedule():
    queue, free, running = collections.deque(jobs), collections.deque(slots), {}
    try:
      while queue or running:
        if handle.stopping and queue:   # never started: pending again
          for job in queue:
            _mark_pending(handle.workdir, job)
          queue.clear()
        while queue and free:
          share, job = free.popleft(), queue.popleft()
          running[id(share)] = (share, job, submit(job, share))
        time.sleep(0.5)
        for key, (share, job, sub) in list(running.items()):
          if sub.done():
            del running[key]
            free.append(share)
            _record_early_end(handle.workdir, job, sub)
    except BaseException as e:  # noqa: BLE001 - reported by wait()
      handle.error = e

  handle._thread = threading.Thread(target=schedule, name="flaxcnn-sweep-local", daemon=True)
  handle._thread.start()


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


def _launch_slurm(handle: Launch, jobs: List[VariantJob], res: Resources, folder: str,
                  name: str):
  missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
  if missing:
    raise ValueError(f"--launcher=slurm: this machine has no {' or '.join(missing)} on its "
                     "PATH; launch from a SLURM cluster's login node (or use --launcher=local)")
  if not jobs:
    return
  executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
  nodes = res.processes_per_variant
  params = dict(name=f"flaxcnn-{name}", timeout_min=res.timeout_min, nodes=nodes,
                tasks_per_node=1, gpus_per_node=res.devices_per_variant // nodes,
                slurm_signal_delay_s=res.signal_delay_s, slurm_setup=_setup(),
                slurm_array_parallelism=res.parallel or len(jobs))
  if res.slurm_partition:
    params["slurm_partition"] = res.slurm_partition
  if res.cpus_per_task:
    params["cpus_per_task"] = res.cpus_per_task
  if res.mem_gb:
    params["mem_gb"] = res.mem_gb
  if res.slurm_options:
    params["slurm_additional_parameters"] = dict(res.slurm_options)
  executor.update_parameters(**params)
  with executor.batch():
    subs = [executor.submit(job) for job in jobs]
  for job, sub in zip(jobs, subs):
    handle.jobs[job.index] = sub
    _mark_queued(handle.workdir, job, "slurm", job_id=sub.job_id)


_SLURM_FIELDS = {"partition": ("slurm_partition", str), "time": ("timeout_min", int),
                 "cpus_per_task": ("cpus_per_task", int), "mem_gb": ("mem_gb", float)}


def slurm_fields(items) -> dict:
  """--slurm=partition=gpu,time=720,account=abc -> Resources fields: partition, time
  (minutes), cpus_per_task and mem_gb by name, any other sbatch option (account, qos,
  constraint, ...) into slurm_options."""
  fields, extra = {}, {}
  for item in items or ():
    key, sep, value = (x.strip() for x in item.partition("="))
    if not sep or not key:
      raise ValueError(f"--slurm: {item!r} is not key=value (e.g. partition=gpu,time=720)")
    if key in _SLURM_FIELDS:
      name, kind = _SLURM_FIELDS[key]
      try:
        fields[name] = kind(value)
      except ValueError:
        raise ValueError(f"--slurm: {key}={value!r} is not {'an integer' if kind is int else 'a number' if kind is float else 'text'}") from None
    else:
      extra[key] = value
  return dict(fields, slurm_options=extra) if extra else fields
