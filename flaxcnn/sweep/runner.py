"""Running a sweep's variants in this process, one after another (a job of a
launcher runs one of them): skip the finished, resume the interrupted, leave a variant
another process holds to it, record a failure and go on."""
import os
import socket
import time
import traceback
from typing import Callable, List, Optional

import jax
from absl import logging
from jax.experimental.compilation_cache import compilation_cache as cc

from flaxcnn import features, tasks, train
from flaxcnn import workdir as workdir_lib
from flaxcnn.sweep.declare import source_path, variant_specs
from flaxcnn.sweep.tracking import (FAILED, FINISHED, INTERRUPTED, RUNNING, one_line,
                                   summary_line, variant_status, write_json)

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


# The jobs a variant may run: training, or a linear head on a trained backbone's
# features (a baseline beside fine-tuning in a transfer sweep).
SWEEP_JOBS = ("train", "features")


def _train_variant(config, vdir, data_cache):
  task = tasks.for_config(config)
  task.validate(config, jax.device_count())
  dataset = data_cache.get(config, task)
  if config.job == "features":
    return features.run_locked(config, vdir, dataset=dataset)
  return train.train_and_evaluate(config, vdir, dataset=dataset)


def run(source, workdir: str, arg: str = "", index: Optional[int] = None, config=None,
        sweep=None, retry_failed: bool = True, compilation_cache=True,
        train_fn: Optional[Callable] = None, specs=None) -> List[dict]:
  """Runs a sweep's variants, each into WORKDIR/<name>/, one after the other.

  `source`, `arg`, `config`, `sweep` select the variants as in `variants()`.
  `index` runs only that variant (one per job of a cluster array or pod slice;
  `launch` runs several at once, here or on a cluster).
  Finished variants (summary.json present) are skipped; interrupted ones resume
  from their checkpoints; a variant that another process is training (its workdir
  lock is held) is left to it; a variant that raises (bad combination, NaN loss,
  ...) is recorded as failed with its error, and the sweep goes on. A SIGTERM/SIGINT
  stops the sweep after the current variant has saved its checkpoint.

  Each variant directory gets a variant.json (name, index, overrides, status,
  error, wall_time in seconds over all attempts, attempts); WORKDIR/sweep.json
  lists the variants. Failed variants are retried when the sweep is rerun unless
  `retry_failed=False`. `compilation_cache`: True puts JAX's persistent compilation
  cache under $FLAXCNN_CACHE/jax (unless JAX already has one) so variants with the
  same shapes compile once; a path puts it there; False leaves JAX alone.
  `train_fn(config, workdir, data_cache)` replaces the training (tests). `specs`:
  the sweep's variant_specs, when the caller has them.

  Returns the variant records of this call, in sweep order.
  """
  specs = plan(source, workdir, arg, index, config, sweep, specs)
  restore_cache = _enable_compilation_cache(compilation_cache)
  try:
    records = _run_variants(specs, workdir, index, retry_failed, train_fn or _train_variant)
  finally:
    restore_cache()
  if jax.process_index() == 0:
    print(summary_line(records, workdir), flush=True)
  return records


def plan(source, workdir: str, arg: str = "", index: Optional[int] = None, config=None,
         sweep=None, specs=None):
  """The sweep's [(name, overrides, config)] (variant_specs, unless given as `specs`),
  checked (index in range, a training job), and WORKDIR/sweep.json written (process
  0), before any variant runs."""
  if specs is None:
    specs = variant_specs(source, arg, config, sweep)
  if index is not None and not 0 <= index < len(specs):
    raise ValueError(f"sweep index {index} is out of range: the sweep has {len(specs)} "
                     f"variants (0..{len(specs) - 1}); see --list_variants")
  jobs = sorted({cfg.job for _, _, cfg in specs} - set(SWEEP_JOBS))
  if jobs:   # once, before any variant, not as a failure of each
    raise ValueError(f"config.job={jobs[0]!r}: a sweep trains its variants (or fits a "
                     "head on features); evaluate one with --workdir=DIR/<variant> "
                     "--config.job=eval (without --sweep)")
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    label = source_path(source)
    if label is None:   # a ConfigDict base (a notebook): keep the file a run named before
      before = workdir_lib.read_sweep(workdir)
      label, arg = before.get("config"), arg or before.get("arg") or ""
    write_json(os.path.join(workdir, workdir_lib.SWEEP), {
        "config": label, "arg": arg, "count": len(specs),
        "fields": _fields(specs),
        "variants": [{"index": i, "name": n, "overrides": ov}
                     for i, (n, ov, _) in enumerate(specs)]})
  return specs


def _run_variants(specs, workdir, index, retry_failed, train_fn):
  data_cache = _DataCache()
  todo = list(enumerate(specs)) if index is None else [(index, specs[index])]
  out = []
  for i, (name, overrides, cfg) in todo:
    vdir = os.path.join(workdir, name)
    record = variant_status(vdir)
    record.update(name=name, index=i, overrides=overrides)
    prefix = f"[sweep {i + 1}/{len(specs)}] {name}"
    if record["status"] == FINISHED or (record["status"] == FAILED and not retry_failed):
      _say_skipped(prefix, record, cfg, vdir)
      out.append(record)
      continue
    try:
      lock = workdir_lib.prepare(vdir)
    except workdir_lib.WorkdirBusy:
      who = workdir_lib.holder(vdir) or {}
      record.update(status=RUNNING, skipped=True, elsewhere=True)
      _say(f"{prefix}: being trained by another process (host {who.get('host')}, pid "
           f"{who.get('pid')}), left to it")
      out.append(record)
      continue
    try:
      record = _run_variant(prefix, record, cfg, vdir, train_fn, data_cache)
    finally:
      lock.release()
    out.append(record)
    if record["status"] == INTERRUPTED:
      break
  return out


def _say(line: str) -> None:
  if jax.process_index() == 0:
    print(line, flush=True)


def _say_skipped(prefix, record, cfg, vdir) -> None:
  record["skipped"] = True
  _say(f"{prefix}: {record['status']}, skipped")
  changed = (workdir_lib.describe_changes(workdir_lib.config_changes(cfg, vdir))
             if record["status"] == FINISHED and jax.process_index() == 0 else [])
  if changed:
    _say(f"WARNING: {prefix}: the config differs from the finished run "
         f"({'; '.join(changed[:4])}); its results are the old config's. To rerun "
         f"it, delete {os.path.join(vdir, workdir_lib.SUMMARY)} and its checkpoints (or "
         "use another --workdir)")


def _run_variant(prefix, record, cfg, vdir, train_fn, data_cache) -> dict:
  """Trains one variant whose workdir this process has locked; returns its record."""
  chief = jax.process_index() == 0
  resumed = os.path.isdir(os.path.join(vdir, "checkpoints"))
  record.update(status=RUNNING, error=None, signal=None, attempts=record.get("attempts", 0) + 1,
                started=time.time(), host=socket.gethostname(), pid=os.getpid(),
                devices=f"{jax.device_count()} x {jax.devices()[0].device_kind}",
                cores=_cores())
  record.setdefault("wall_time", 0.0)
  if chief:
    if os.path.exists(os.path.join(vdir, "error.log")):
      os.remove(os.path.join(vdir, "error.log"))     # from a failed earlier attempt
    write_json(os.path.join(vdir, workdir_lib.VARIANT), record)
  _say(f"{prefix}: {'resuming' if resumed else 'running'} in {vdir}")
  t0 = time.time()
  try:
    summary = train_fn(cfg, vdir, data_cache)
  except Exception as e:  # noqa: BLE001 - a failed variant must not stop the sweep
    record.update(status=FAILED, error=one_line(e))
    if chief:
      with open(os.path.join(vdir, "error.log"), "w") as f:
        f.write(traceback.format_exc())
    _say(f"{prefix}: failed: {record['error']}")
  except BaseException:  # KeyboardInterrupt, SystemExit: record, then let it through
    record.update(status=INTERRUPTED, wall_time=record["wall_time"] + time.time() - t0)
    if chief:
      write_json(os.path.join(vdir, workdir_lib.VARIANT), record)
    raise
  else:
    if isinstance(summary, dict) and summary.get("interrupted"):
      record.update(status=INTERRUPTED, signal=summary.get("signal"))
      _say(f"{prefix}: interrupted; rerun the sweep to resume it")
    else:
      record["status"] = FINISHED
  record["wall_time"] = record["wall_time"] + time.time() - t0
  record["ended"] = time.time()
  if chief:
    write_json(os.path.join(vdir, workdir_lib.VARIANT), record)
  return record


def _cores() -> int:
  """The CPU cores this process may run on (XLA's thread pools follow them, and on a
  CPU a variant's float sums, so its numbers, depend on how many there are)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:     # no affinity on this platform
    return os.cpu_count() or 1


def _fields(specs) -> List[str]:
  fields = []
  for _, ov, _ in specs:
    for k in ov:
      if k not in fields:
        fields.append(k)
  return fields
