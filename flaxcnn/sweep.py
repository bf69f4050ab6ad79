"""Sweeps: a config file declares its variants as products and zips of overrides.

An experiment file may define, next to `get_config(arg)`, a `get_sweep(arg)` that
returns a list of override dicts (dotted field names), built with these helpers:

    from flaxcnn import sweep

    def get_sweep(arg=""):
      return sweep.product(
          sweep.axis("model.kwargs.widen_factor", [1, 2, 4, 8]),  # WRN k
          sweep.seeds(3))

Each variant is the base config with its overrides applied; its name is made of
the overrides ("widen_factor=4,seed=1"), and it runs in WORKDIR/<name>/:

    python launch.py --config=experiments/ablations/digits_depth.py --workdir=DIR --sweep
    python launch.py --config=... --workdir=DIR --list_variants     # names, count, status
    python launch.py --config=... --workdir=DIR --sweep_index=3     # one variant per job

or from Python: `sweep.variants(path)` and `sweep.run(path, workdir, index=None)`.
Finished variants (summary.json present) are skipped, interrupted ones resume from
their checkpoints, and a variant that fails (an impossible combination, a NaN loss)
is recorded as failed in its variant.json without stopping the others.
`flaxcnn.results.load(DIR)` collects the outcome.
"""
import builtins
import importlib.util
import itertools
import json
import os
import socket
import time
import traceback
import types
from typing import Callable, Dict, List, Optional, Sequence

import jax
import ml_collections
from absl import logging
from jax.experimental.compilation_cache import compilation_cache as cc

from flaxcnn import config as config_lib, tasks, train
from flaxcnn import workdir as workdir_lib

Overrides = Dict[str, object]


def axis(field: str, values: Sequence) -> List[Overrides]:
  """One swept field: [{field: v} for v in values]."""
  return [{field: v} for v in values]


def seeds(n: int, start: int = 0) -> List[Overrides]:
  """`n` seeds (repeats of every variant)."""
  return axis("seed", list(range(start, start + n)))


def product(*axes: List[Overrides]) -> List[Overrides]:
  """Every combination of the given axes (the first varies slowest)."""
  out = []
  for combo in itertools.product(*axes):
    merged = {}
    for d in combo:
      merged.update(d)
    out.append(merged)
  return out


def zip(*axes: List[Overrides]) -> List[Overrides]:  # noqa: A001 (sweep.zip reads well)
  """Element-wise combination of axes of equal length (fields that move together)."""
  lengths = {len(a) for a in axes}
  if len(lengths) != 1:
    raise ValueError(f"sweep.zip: axes have different lengths {sorted(lengths)}")
  return [dict(kv for d in ds for kv in d.items()) for ds in builtins.zip(*axes)]


def chain(*sweeps: List[Overrides]) -> List[Overrides]:
  """Concatenation of sweeps (e.g. a baseline plus a grid)."""
  return [d for s in sweeps for d in s]


def _short(field: str) -> str:
  return field.split(".")[-1]


def _fmt(value) -> str:
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, (tuple, list)):
    return "x".join(_fmt(v) for v in value)
  return str(value)


def variant_name(overrides: Overrides) -> str:
  """A readable, filesystem-safe name for a variant: 'k=4,seed=1'."""
  if not overrides:
    return "base"
  name = ",".join(f"{_short(k)}={_fmt(v)}" for k, v in overrides.items())
  return "".join(c if c.isalnum() or c in "=,._-" else "_" for c in name)


# Overrides are applied by the config module (sweeps, progressive stages, tests).
apply_overrides = config_lib.apply_overrides


def _split_source(source, arg: str = ""):
  """(module, path, arg) of a config file path, 'path:arg' string or module."""
  if isinstance(source, types.ModuleType):
    return source, getattr(source, "__file__", None), arg
  if not isinstance(source, (str, os.PathLike)):
    raise TypeError(f"sweep: expected a config file path or module, got {type(source).__name__}")
  path = os.fspath(source)
  if not os.path.exists(path) and ":" in path:
    path, file_arg = path.split(":", 1)
    if arg and file_arg != arg:
      raise ValueError(f"sweep: config argument given twice ({file_arg!r} and {arg!r})")
    arg = file_arg
  if not os.path.exists(path):
    raise FileNotFoundError(f"sweep: config file {path} does not exist")
  return load_module(path), path, arg


def _call(fn, arg: str):
  """fn(arg) if an argument was given, fn() otherwise (as --config=file.py:arg does)."""
  return fn(arg) if arg else fn()


def load_module(path: str):
  """Imports a config file by path."""
  path = os.path.abspath(path)
  name = "flaxcnn_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def overrides_of(path, arg: str = "") -> List[Overrides]:
  """The sweep declared by the config file (a single empty variant if none).

  `path` may also be 'path:arg' or an imported config module.
  """
  module, _, arg = _split_source(path, arg)
  if not hasattr(module, "get_sweep"):
    return [{}]
  try:
    return list(_call(module.get_sweep, arg))
  except TypeError:
    return list(module.get_sweep())


def _specs(source, arg: str = "", config=None, sweep=None):
  """[(name, overrides, config)] of a sweep, checked for duplicate names."""
  if isinstance(source, ml_collections.ConfigDict):
    if config is not None:
      raise ValueError("sweep: pass the base config either as the source or as config=")
    base, label = source, "the sweep"
    overrides = [{}] if sweep is None else list(sweep)
  else:
    module, path, arg = _split_source(source, arg)
    label = path or getattr(module, "__name__", "the sweep")
    base = config if config is not None else _call(module.get_config, arg)
    overrides = list(sweep) if sweep is not None else overrides_of(module, arg)
  if not overrides:
    raise ValueError(f"sweep in {label}: no variants")
  out, seen = [], set()
  for ov in overrides:
    ov = dict(ov)
    name = variant_name(ov)
    if name in seen:
      raise ValueError(f"sweep in {label}: variant {name!r} appears twice")
    seen.add(name)
    out.append((name, ov, apply_overrides(base, ov)))
  return out


def variants(path, arg: str = "", config=None, sweep=None):
  """[(name, config)] of every variant a sweep declares.

  `path` is a config file (its `get_sweep(arg)`), 'path:arg', an imported config
  module, or a base ConfigDict together with `sweep=` (a list of overrides).
  `config` replaces the file's get_config(arg) as the base (e.g. the command line's
  config with its --config.* overrides); `sweep` replaces the file's get_sweep.
  """
  return [(name, cfg) for name, _, cfg in _specs(path, arg, config, sweep)]


# ----------------------------------------------------------------------------- running

FINISHED, FAILED, RUNNING, INTERRUPTED, INCOMPLETE, PENDING = (
    "finished", "failed", "running", "interrupted", "incomplete", "pending")


def _write_json(path: str, obj) -> None:
  """Writes JSON atomically (a temporary file renamed over the target)."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, default=_jsonable)
  os.replace(tmp, path)


def _jsonable(value):
  if isinstance(value, tuple):
    return list(value)
  if hasattr(value, "item"):       # numpy scalars
    return value.item()
  return str(value)


def _read_json(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _alive(record: dict) -> bool:
  """False when the process that marked the variant running is gone (same host only)."""
  if record.get("host") != socket.gethostname() or not record.get("pid"):
    return True
  try:
    os.kill(int(record["pid"]), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, OSError, ValueError):
    return True
  return True


def variant_status(variant_dir: str) -> dict:
  """The record of a variant (or plain run) directory: its variant.json, with status
  'finished' whenever summary.json is present (a completed run); 'interrupted' when
  marked running by a process of this host that is gone (killed); 'incomplete' for
  a run with metrics but neither summary nor record; 'pending' when never started."""
  record = _read_json(os.path.join(variant_dir, "variant.json")) or {}
  record.setdefault("name", os.path.basename(os.path.normpath(variant_dir)))
  if os.path.exists(os.path.join(variant_dir, "summary.json")):
    record["status"] = FINISHED
    record["error"] = None
  elif record.get("status") in (None, FINISHED):   # never recorded, or summary.json removed
    started = os.path.exists(os.path.join(variant_dir, "metrics.jsonl"))
    record["status"] = INCOMPLETE if started else PENDING
  elif record["status"] == RUNNING and not _alive(record):
    record["status"] = INTERRUPTED
  return record


def status(workdir: str) -> List[dict]:
  """The records of a sweep directory's variants, in sweep order (from sweep.json)."""
  sweep_json = _read_json(os.path.join(workdir, "sweep.json")) or {}
  out = []
  for v in sweep_json.get("variants", []):
    record = variant_status(os.path.join(workdir, v["name"]))
    record.setdefault("index", v.get("index"))
    record.setdefault("overrides", v.get("overrides", {}))
    out.append(record)
  return out


def _one_line(e: BaseException) -> str:
  text = " ".join(str(e).split()) or type(e).__name__
  return f"{type(e).__name__}: {text}"


def _enable_compilation_cache(cache) -> Callable[[], None]:
  """Points JAX's persistent compilation cache at `cache` (unless one is set), so
  variants that share shapes (seeds) compile once. Returns a function that undoes it."""
  if cache is False or jax.config.jax_compilation_cache_dir:
    return lambda: None
  if cache in (True, None):
    root = os.environ.get("FLAXCNN_CACHE", "~/.cache/flaxcnn")
    cache = os.path.join(os.path.expanduser(root), "jax")
  try:
    os.makedirs(cache, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", cache)
    cc.reset_cache()      # a cache checked before this (disabled) is looked at again
  except Exception as e:  # noqa: BLE001 - an optimization only
    logging.warning("sweep: persistent compilation cache not enabled: %s", e)
    return lambda: None

  def restore():
    jax.config.update("jax_compilation_cache_dir", None)
    cc.reset_cache()
  return restore


class _DataCache:
  """Loads a dataset once for consecutive variants with the same data fields."""

  def __init__(self):
    self.key, self.dataset = None, None

  def get(self, config, task):
    key = f"{task.name}/" + config.data.to_json_best_effort(sort_keys=True)
    if config.data.source == "synthetic":
      key += f"/seed={config.seed}"
    if key != self.key:
      self.key, self.dataset = None, None
      self.dataset = task.load_data(config)
      self.key = key
    return self.dataset


def _train_variant(config, vdir, data_cache):
  task = tasks.for_config(config)
  task.validate(config, jax.device_count())
  dataset = data_cache.get(config, task)
  return train.train_and_evaluate(config, vdir, dataset=dataset)


def run(source, workdir: str, arg: str = "", index: Optional[int] = None, config=None,
        sweep=None, retry_failed: bool = True, compilation_cache=True,
        train_fn: Optional[Callable] = None) -> List[dict]:
  """Runs a sweep's variants, each into WORKDIR/<name>/, one after the other.

  `source`, `arg`, `config`, `sweep` select the variants as in `variants()`.
  `index` runs only that variant (one per job of a cluster array or pod slice).
  Finished variants (summary.json present) are skipped; interrupted ones resume
  from their checkpoints; a variant that raises (bad combination, NaN loss, ...) is
  recorded as failed with its error, and the sweep goes on. A SIGTERM/SIGINT stops
  the sweep after the current variant has saved its checkpoint.

  Each variant directory gets a variant.json (name, index, overrides, status,
  error, wall_time in seconds over all attempts, attempts); WORKDIR/sweep.json
  lists the variants. Failed variants are retried when the sweep is rerun unless
  `retry_failed=False`. `compilation_cache`: True puts JAX's persistent compilation
  cache under $FLAXCNN_CACHE/jax (unless JAX already has one) so variants with the
  same shapes compile once; a path puts it there; False leaves JAX alone.
  `train_fn(config, workdir, data_cache)` replaces the training (tests).

  Returns the variant records of this call, in sweep order.
  """
  specs = _specs(source, arg, config, sweep)
  if index is not None and not 0 <= index < len(specs):
    raise ValueError(f"sweep index {index} is out of range: the sweep has {len(specs)} "
                     f"variants (0..{len(specs) - 1}); see --list_variants")
  jobs = sorted({cfg.job for _, _, cfg in specs} - {"train"})
  if jobs:   # once, before any variant, not as a failure of each
    raise ValueError(f"config.job={jobs[0]!r}: a sweep trains its variants; evaluate one "
                     "with --workdir=DIR/<variant> --config.job=eval (without --sweep)")
  chief = jax.process_index() == 0
  if chief:
    os.makedirs(workdir, exist_ok=True)
    label = _source_label(source)
    if label is None:   # a ConfigDict base (a notebook): keep the file a run named before
      before = _read_json(os.path.join(workdir, "sweep.json")) or {}
      label, arg = before.get("config"), arg or before.get("arg") or ""
    _write_json(os.path.join(workdir, "sweep.json"), {
        "config": label, "arg": arg, "count": len(specs),
        "fields": _fields(specs),
        "variants": [{"index": i, "name": n, "overrides": ov}
                     for i, (n, ov, _) in enumerate(specs)]})
  restore_cache = _enable_compilation_cache(compilation_cache)
  try:
    records = _run_variants(specs, workdir, index, retry_failed, train_fn or _train_variant,
                            chief)
  finally:
    restore_cache()
  if chief:
    print(summary_line(records, workdir), flush=True)
  return records


def _run_variants(specs, workdir, index, retry_failed, train_fn, chief):
  data_cache = _DataCache()
  todo = list(enumerate(specs)) if index is None else [(index, specs[index])]
  records = []
  for i, (name, overrides, cfg) in todo:
    vdir = os.path.join(workdir, name)
    record = variant_status(vdir)
    record.update(name=name, index=i, overrides=overrides)
    prefix = f"[sweep {i + 1}/{len(specs)}] {name}"
    if record["status"] == FINISHED or (record["status"] == FAILED and not retry_failed):
      if chief:
        print(f"{prefix}: {record['status']}, skipped", flush=True)
        changed = (workdir_lib.describe_changes(workdir_lib.config_changes(cfg, vdir))
                   if record["status"] == FINISHED else [])
        if changed:
          print(f"WARNING: {prefix}: the config differs from the finished run "
                f"({'; '.join(changed[:4])}); its results are the old config's. To rerun "
                f"it, delete {os.path.join(vdir, 'summary.json')} and its checkpoints (or "
                "use another --workdir)", flush=True)
      record["skipped"] = True
      records.append(record)
      continue
    resumed = os.path.isdir(os.path.join(vdir, "checkpoints"))
    record.update(status=RUNNING, error=None, attempts=record.get("attempts", 0) + 1,
                  started=time.time(), host=socket.gethostname(), pid=os.getpid())
    record.setdefault("wall_time", 0.0)
    if chief:
      os.makedirs(vdir, exist_ok=True)
      if os.path.exists(os.path.join(vdir, "error.log")):
        os.remove(os.path.join(vdir, "error.log"))     # from a failed earlier attempt
      _write_json(os.path.join(vdir, "variant.json"), record)
      print(f"{prefix}: {'resuming' if resumed else 'running'} in {vdir}", flush=True)
    t0 = time.time()
    stop = False
    try:
      summary = train_fn(cfg, vdir, data_cache)
    except Exception as e:  # noqa: BLE001 - a failed variant must not stop the sweep
      record.update(status=FAILED, error=_one_line(e))
      if chief:
        with open(os.path.join(vdir, "error.log"), "w") as f:
          f.write(traceback.format_exc())
        print(f"{prefix}: failed: {record['error']}", flush=True)
    except BaseException:  # KeyboardInterrupt, SystemExit: record, then let it through
      record.update(status=INTERRUPTED, wall_time=record["wall_time"] + time.time() - t0)
      if chief:
        _write_json(os.path.join(vdir, "variant.json"), record)
      raise
    else:
      if isinstance(summary, dict) and summary.get("interrupted"):
        record["status"] = INTERRUPTED
        stop = True
        if chief:
          print(f"{prefix}: interrupted; rerun the sweep to resume it", flush=True)
      else:
        record["status"] = FINISHED
    record["wall_time"] = record["wall_time"] + time.time() - t0
    record["ended"] = time.time()
    if chief:
      _write_json(os.path.join(vdir, "variant.json"), record)
    records.append(record)
    if stop:
      break
  return records


def _source_label(source):
  """The config file of a sweep as sweep.json records it: an absolute path (so the
  paper comparison works from any directory), with its ':arg' if given so."""
  if isinstance(source, ml_collections.ConfigDict):
    return None
  if isinstance(source, types.ModuleType):
    return getattr(source, "__file__", source.__name__)
  path, sep, arg = os.fspath(source).partition(":")
  if sep and not os.path.exists(os.fspath(source)):
    return os.path.abspath(path) + sep + arg
  return os.path.abspath(os.fspath(source))


def _fields(specs) -> List[str]:
  fields = []
  for _, ov, _ in specs:
    for k in ov:
      if k not in fields:
        fields.append(k)
  return fields


def summary_line(records: List[dict], workdir: str = "") -> str:
  """One line: how many variants finished, were skipped, failed (with the first error)."""
  counts = {}
  for r in records:
    counts[r["status"]] = counts.get(r["status"], 0) + 1
  skipped = sum(1 for r in records if r.get("skipped") and r["status"] == FINISHED)
  parts = []
  for s in (FINISHED, FAILED, INTERRUPTED, INCOMPLETE, RUNNING, PENDING):
    if counts.get(s):
      extra = f" ({skipped} already)" if s == FINISHED and skipped else ""
      parts.append(f"{counts[s]} {s}{extra}")
  failed = [r for r in records if r["status"] == FAILED]
  line = f"sweep {workdir}: {len(records)} variant(s): " + ", ".join(parts)
  if failed:
    line += "; failed: " + "; ".join(f"{r['name']} ({r['error']})" for r in failed[:3])
    if len(failed) > 3:
      line += f"; and {len(failed) - 3} more"
  return line


def describe(source, arg: str = "", config=None, workdir: Optional[str] = None,
             sweep=None) -> str:
  """A listing of the sweep's variants: count, then 'index name overrides [status]'."""
  specs = _specs(source, arg, config, sweep)
  lines = [f"{len(specs)} variant(s)"]
  for i, (name, ov, _) in enumerate(specs):
    line = f"{i}\t{name}\t{json.dumps(ov, default=_jsonable)}"
    if workdir:
      rec = variant_status(os.path.join(workdir, name))
      line += f"\t{rec['status']}"
      if rec.get("error") and rec["status"] == FAILED:
        line += f" ({rec['error']})"
    lines.append(line)
  return "\n".join(lines)


def check_command_line(config_arg: str, config, fields) -> None:
  """A ValueError naming the first command-line override (`fields`, dotted) that a
  variant of the sweep sets again: the variant's value would silently win."""
  for name, overrides, _ in _specs(config_arg, config=config):
    clash = sorted(set(fields) & set(overrides))
    if clash:
      raise ValueError(f"--config.{clash[0]} is set by the sweep itself (variant {name} has "
                       f"{clash[0]}={overrides[clash[0]]!r}), which would replace the flag's "
                       "value; drop the flag, or run one setting without --sweep/--sweep_index")


def main(config_arg: str, config, workdir: Optional[str], index: Optional[int] = None,
         list_only: bool = False, fixed=()) -> int:
  """launch.py's --sweep / --sweep_index / --list_variants. Returns the exit status
  (or a one-line error message for sys.exit). `fixed`: the fields the command line
  set, which no variant may set again."""
  try:
    check_command_line(config_arg, config, fixed)
    if list_only:
      print(describe(config_arg, config=config, workdir=workdir), flush=True)
      return 0
    records = run(config_arg, workdir, index=index, config=config)
  except (ValueError, FileNotFoundError, TypeError) as e:
    return f"error: {e}"
  failed = [r for r in records if r["status"] == FAILED]
  if failed:
    return f"error: {summary_line(records, workdir)}"
  return 0
