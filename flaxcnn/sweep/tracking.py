"""A sweep's record: each variant's variant.json and what it says (pending, queued,
running step/total, finished, failed, interrupted), read the same whichever process
or launcher ran it; the sweep's status table, listing and summary line."""
import json
import os
import socket
from typing import List, Optional

from flaxcnn import workdir as workdir_lib
from flaxcnn.sweep.declare import short_name, variant_specs

FINISHED, FAILED, RUNNING, INTERRUPTED, INCOMPLETE, PENDING, QUEUED = (
    "finished", "failed", "running", "interrupted", "incomplete", "pending", "queued")


def write_json(path: str, obj) -> None:
  """Writes JSON atomically from any process (launchers run without JAX)."""
  workdir_lib.write_json_atomic(path, obj, default=_jsonable)


def _jsonable(value):
  if isinstance(value, tuple):
    return list(value)
  if hasattr(value, "item"):       # numpy scalars
    return value.item()
  return str(value)


read_json = workdir_lib.read_json


def _alive(record: dict) -> bool:
  """False when the process that marked the variant running is gone (same host only)."""
  if record.get("host") != socket.gethostname() or not str(record.get("pid", "")).isdigit():
    return True
  return workdir_lib.process_alive(int(record["pid"]))


def variant_status(variant_dir: str) -> dict:
  """The record of a variant (or plain run) directory: its variant.json, with status
  'finished' whenever summary.json is present (a completed run); 'interrupted' when
  marked running by a process of this host that is gone (killed); 'incomplete' for
  a run with metrics but neither summary nor record; 'pending' when never started,
  or when queued by a launcher of this host that is gone; 'queued' when a launcher
  submitted it (with its `job_id`). A running variant carries `step` and
  `total_steps` from the trainer's progress.json."""
  record = workdir_lib.read_variant(variant_dir)
  record.setdefault("name", os.path.basename(os.path.normpath(variant_dir)))
  if os.path.exists(os.path.join(variant_dir, workdir_lib.SUMMARY)):
    record["status"] = FINISHED
    record["error"] = None
  elif record.get("status") in (None, FINISHED):   # never recorded, or summary.json removed
    started = os.path.exists(os.path.join(variant_dir, workdir_lib.METRICS))
    record["status"] = INCOMPLETE if started else PENDING
  elif record["status"] == RUNNING and not _alive(record):
    record["status"] = INTERRUPTED
  elif record["status"] == QUEUED and not _alive(record):
    record["status"] = PENDING if not os.path.exists(
        os.path.join(variant_dir, workdir_lib.METRICS)) else INTERRUPTED
  if record["status"] == RUNNING:
    progress = read_json(os.path.join(variant_dir, workdir_lib.PROGRESS)) or {}
    record.update({k: progress[k] for k in ("step", "total_steps") if k in progress})
  return record


def records(workdir: str) -> List[dict]:
  """The records of a sweep directory's variants, in sweep order (from sweep.json)."""
  sweep_json = workdir_lib.read_sweep(workdir)
  out = []
  for v in sweep_json.get("variants", []):
    record = variant_status(os.path.join(workdir, v["name"]))
    record.setdefault("index", v.get("index"))
    record.setdefault("overrides", v.get("overrides", {}))
    out.append(record)
  return out


STATUS_COLUMNS = ("index", "name", "status", "step", "total_steps", "launcher", "job_id",
                  "attempts", "wall_time", "error")


def status(workdir: str):
  """A DataFrame of the sweep's variants, whichever launcher runs them: index, name,
  status (pending, queued, running, finished, failed, interrupted, incomplete), step
  and total_steps of a running one, launcher and job id, attempts, wall time, the
  failure's one line, and a column per swept field."""
  import pandas as pd   # heavy (0.4 s, 60 MB): not on every launch.py start
  rows = []
  for r in records(workdir):
    row = {c: r.get(c) for c in STATUS_COLUMNS}
    row.update({short_name(k): v for k, v in r.get("overrides", {}).items()})
    rows.append(row)
  return pd.DataFrame(rows, columns=None if rows else list(STATUS_COLUMNS))


def one_line(e: BaseException) -> str:
  text = " ".join(str(e).split()) or type(e).__name__
  return f"{type(e).__name__}: {text}"


def summary_line(records: List[dict], workdir: str = "") -> str:
  """One line: how many variants finished, were skipped, failed (with the first error)."""
  counts = {}
  for r in records:
    counts[r["status"]] = counts.get(r["status"], 0) + 1
  skipped = sum(1 for r in records if r.get("skipped") and r["status"] == FINISHED)
  parts = []
  for s in (FINISHED, FAILED, INTERRUPTED, INCOMPLETE, RUNNING, QUEUED, PENDING):
    if counts.get(s):
      extra = f" ({skipped} already)" if s == FINISHED and skipped else ""
      extra += " (in another process)" if s == RUNNING else ""
      parts.append(f"{counts[s]} {s}{extra}")
  failed = [r for r in records if r["status"] == FAILED]
  line = f"sweep {workdir}: {len(records)} variant(s): " + ", ".join(parts)
  if failed:
    line += "; failed: " + "; ".join(f"{r['name']} ({r['error']})" for r in failed[:3])
    if len(failed) > 3:
      line += f"; and {len(failed) - 3} more"
  return line


def describe(source, arg: str = "", config=None, workdir: Optional[str] = None,
             sweep=None, specs=None) -> str:
  """A listing of the sweep's variants: count, then 'index name overrides [status]'
  (`specs`: the sweep's variant_specs, when the caller has them)."""
  if specs is None:
    specs = variant_specs(source, arg, config, sweep)
  lines = [f"{len(specs)} variant(s)"]
  for i, (name, ov, _) in enumerate(specs):
    line = f"{i}\t{name}\t{json.dumps(ov, default=_jsonable)}"
    if workdir:
      line += "\t" + describe_state(variant_status(os.path.join(workdir, name)))
    lines.append(line)
  for name in left_over(workdir, [name for name, _, _ in specs]) if workdir else ():
    state = describe_state(variant_status(os.path.join(workdir, name)))
    lines.append(f"-\t{name}\tnot in the sweep (its axes changed since)\t{state}")
  return "\n".join(lines)


def left_over(workdir: str, names) -> List[str]:
  """The runs in a sweep's `workdir` that are none of its variants `names`: left
  behind when the sweep's axes changed."""
  if not os.path.isdir(workdir):
    return []
  run_files = (workdir_lib.METRICS, workdir_lib.SUMMARY, workdir_lib.VARIANT)
  return sorted(d for d in os.listdir(workdir) if d not in set(names) and any(
      os.path.exists(os.path.join(workdir, d, f)) for f in run_files))


def result_words(variant_dir: str) -> str:
  """A finished variant's final figures from its summary.json: 'validation top-1
  0.9611, test top-1 0.9500' (mIoU for segmentation); '' when there are none."""
  summary = workdir_lib.read_summary(variant_dir)
  words = []
  for split in ("validation", "test"):
    res = summary.get(split)
    if isinstance(res, dict) and "mean_iou" in res:
      words.append(f"{split} mIoU {res['mean_iou']:.4f}")
    elif isinstance(res, dict) and "accuracy" in res:
      words.append(f"{split} top-1 {res['accuracy']:.4f}")
  return ", ".join(words)


def describe_state(record: dict) -> str:
  """A variant's state in words: 'running 40/95', 'queued (job 1234_0)', 'failed
  (ValueError: ...)', 'finished', 'pending', ..."""
  s = record["status"]
  if s == RUNNING and record.get("total_steps"):
    return f"running {record.get('step', 0)}/{record['total_steps']}"
  if s == QUEUED and record.get("job_id"):
    return f"queued (job {record['job_id']})"
  if s == FAILED and record.get("error"):
    return f"failed ({record['error']})"
  return s
