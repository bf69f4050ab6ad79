"""The `slurm` launcher: the variants as one SLURM job array (submitit's
SlurmExecutor), submitted from a cluster's login node; the cluster runs them."""
import dataclasses
import os
import shutil
from typing import Dict, List, Optional

import submitit

from flaxcnn.sweep.launchers.base import Launcher, VariantJob, mark_queued, register, setup_lines

# the job states of sacct in which a job may still run its variant
_ALIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING",
          "SUSPENDED", "UNKNOWN", "REQUEUE_HOLD", "REQUEUE_FED")
# --slurm=KEY=VALUE keys that are fields (of Resources or Slurm.Options), and their types
_FIELDS = {"partition": ("slurm_partition", str), "time": ("timeout_min", int),
           "cpus_per_task": ("cpus_per_task", int), "mem_gb": ("mem_gb", float)}


@register
class Slurm(Launcher):
  name = "slurm"
  flag = "slurm"
  flag_help = ("SLURM options key=value,...: partition, time (minutes), cpus_per_task, "
               "mem_gb, and any sbatch option (account, qos, ...)")

  @dataclasses.dataclass
  class Options:
    slurm_partition: Optional[str] = None
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[float] = None
    slurm_options: Dict[str, str] = dataclasses.field(default_factory=dict)  # account, qos

  @classmethod
  def parse_flag(cls, items) -> dict:
    """--slurm=partition=gpu,time=720,account=abc -> sweep.launch's keywords: partition,
    time (minutes), cpus_per_task and mem_gb by name, any other sbatch option
    (account, qos, constraint, ...) into slurm_options."""
    fields, extra = {}, {}
    for item in items or ():
      key, sep, value = (x.strip() for x in item.partition("="))
      if not sep or not key:
        raise ValueError(f"--slurm: {item!r} is not key=value (e.g. partition=gpu,time=720)")
      if key not in _FIELDS:
        extra[key] = value
        continue
      name, kind = _FIELDS[key]
      try:
        fields[name] = kind(value)
      except ValueError:
        what = {int: "an integer", float: "a number"}.get(kind, "text")
        raise ValueError(f"--slurm: {key}={value!r} is not {what}") from None
    return dict(fields, slurm_options=extra) if extra else fields

  @classmethod
  def job_over(cls, record: dict, folder: str) -> bool:
    """The SLURM job has ended without finishing its variant (cancelled, failed, out
    of time), as sacct says."""
    if not record.get("job_id") or not shutil.which("sacct"):
      return False
    state = submitit.SlurmJob(folder, str(record["job_id"])).state
    return state.split()[0] not in _ALIVE

  def submit(self, handle, jobs: List[VariantJob], folder: str) -> None:
    missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
    if missing:
      raise ValueError(f"--launcher=slurm: this machine has no {' or '.join(missing)} on its "
                       "PATH; launch from a SLURM cluster's login node (or use --launcher=local)")
    if not jobs:
      return
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(**self._parameters(handle.workdir, len(jobs)))
    with executor.batch():
      subs = [executor.submit(job) for job in jobs]
    for job, sub in zip(jobs, subs):
      handle.jobs[job.index] = sub
      mark_queued(handle.workdir, job, self.name, job_id=sub.job_id)

  def _parameters(self, workdir: str, count: int) -> dict:
    """submitit's parameters of the job array."""
    res, opt = self.resources, self.options
    nodes = res.processes_per_variant
    name = os.path.basename(os.path.normpath(workdir))
    params = dict(name=f"flaxcnn-{name}", timeout_min=res.timeout_min, nodes=nodes,
                  tasks_per_node=1, gpus_per_node=res.devices_per_variant // nodes,
                  slurm_signal_delay_s=res.signal_delay_s, slurm_setup=setup_lines(),
                  slurm_array_parallelism=res.parallel or count)
    if opt.slurm_partition:
      params["slurm_partition"] = opt.slurm_partition
    if opt.cpus_per_task:
      params["cpus_per_task"] = opt.cpus_per_task
    if opt.mem_gb:
      params["mem_gb"] = opt.mem_gb
    if opt.slurm_options:
      params["slurm_additional_parameters"] = dict(opt.slurm_options)
    return params

  def after_submit(self, handle):
    """The cluster runs the jobs: report the job array and return."""
    ids = sorted({j.job_id.split("_")[0] for j in handle.jobs.values()})
    print(f"sweep {handle.workdir}: submitted {len(handle.indices)} variant(s) as job array "
          f"{', '.join(ids)}; watch them with --list_variants; launching again submits the "
          "variants whose jobs failed or were cancelled", flush=True)
    return 0
