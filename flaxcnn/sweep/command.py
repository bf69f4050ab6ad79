"""launch.py's sweep flags: --sweep, --sweep_index, --list_variants, --launcher."""
from typing import Optional

from flaxcnn.sweep.declare import check_command_line, variant_specs
from flaxcnn.sweep.launchers import launch
from flaxcnn.sweep.tracking import FAILED, describe, summary_line
from flaxcnn.sweep.runner import run

def main(config_arg: str, config, workdir: Optional[str], index: Optional[int] = None,
         list_only: bool = False, fixed=(), launcher: Optional[str] = None, settings=None,
         retry_failed: bool = True) -> int:
  """launch.py's --sweep / --sweep_index / --list_variants / --launcher. Returns the
  exit status (or a one-line error message for sys.exit). `fixed`: the fields the
  command line set, which no variant may set again; `settings`: the launcher's
  keywords (Resources fields and its own options)."""
  try:
    specs = variant_specs(config_arg, config=config)   # the file's sweep, read once
    check_command_line(config_arg, config, fixed, specs)
    if list_only:
      print(describe(config_arg, config=config, workdir=workdir, specs=specs), flush=True)
      return 0
    if launcher:
      return _launch_main(config_arg, config, workdir, launcher, settings or {}, retry_failed,
                          specs)
    records = run(config_arg, workdir, index=index, config=config, retry_failed=retry_failed,
                  specs=specs)
  except (ValueError, FileNotFoundError, TypeError) as e:
    return f"error: {e}"
  failed = [r for r in records if r["status"] == FAILED]
  if failed:
    return f"error: {summary_line(records, workdir)}"
  return 0


def _launch_main(config_arg, config, workdir, launcher, settings, retry_failed, specs):
  handle = launch(config_arg, workdir, launcher, config=config, retry_failed=retry_failed,
                  specs=specs, **settings)
  if not handle.indices:
    print(f"sweep {workdir}: nothing to launch (every variant is finished, running or "
          "queued; see --list_variants)", flush=True)
    return 0
  return handle.runner.after_submit(handle)
