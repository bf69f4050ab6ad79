"""launch.py's sweep flags: --sweep, --sweep_index, --list_variants, --launcher."""
from typing import Optional

from flaxcnn.sweep.declare import check_command_line
from flaxcnn.sweep.launchers import launch
from flaxcnn.sweep.tracking import FAILED, describe, summary_line
from flaxcnn.sweep.runner import run

def main(config_arg: str, config, workdir: Optional[str], index: Optional[int] = None,
         list_only: bool = False, fixed=(), launcher: Optional[str] = None, resources=None,
         retry_failed: bool = True) -> int:
  """launch.py's --sweep / --sweep_index / --list_variants / --launcher. Returns the
  exit status (or a one-line error message for sys.exit). `fixed`: the fields the
  command line set, which no variant may set again."""
  try:
    check_command_line(config_arg, config, fixed)
    if list_only:
      print(describe(config_arg, config=config, workdir=workdir), flush=True)
      return 0
    if launcher:
      return _launch_main(config_arg, config, workdir, launcher, resources, retry_failed)
    records = run(config_arg, workdir, index=index, config=config, retry_failed=retry_failed)
  except (ValueError, FileNotFoundError, TypeError) as e:
    return f"error: {e}"
  failed = [r for r in records if r["status"] == FAILED]
  if failed:
    return f"error: {summary_line(records, workdir)}"
  return 0


def _launch_main(config_arg, config, workdir, launcher, resources, retry_failed):
  handle = launch(config_arg, workdir, launcher, config=config, retry_failed=retry_failed,
                  resources=resources)
  if not handle.indices:
    print(f"sweep {workdir}: nothing to launch (every variant is finished, running or "
          "queued; see --list_variants)", flush=True)
    return 0
  if launcher == "slurm":   # the cluster runs them: report the jobs and return
    ids = sorted({j.job_id.split("_")[0] for j in handle.jobs.values()})
    print(f"sweep {workdir}: submitted {len(handle.indices)} variant(s) as job array "
          f"{', '.join(ids)}; watch them with --list_variants; launching again submits the "
          "variants whose jobs failed or were cancelled", flush=True)
    return 0
  records = handle.watch()
  print(summary_line(records, workdir), flush=True)
  failed = [r for r in records if r["status"] == FAILED]
  return f"error: {summary_line(records, workdir)}" if failed else 0
