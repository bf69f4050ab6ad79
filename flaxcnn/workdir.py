"""The run's directory: checked before anything is loaded, locked while a run uses it.

`prepare(workdir)` fails with one line when the workdir is a file, lies under a
file or is not writable, and takes WORKDIR/.lock (host, pid, start time) so that a
second run on the same workdir is refused instead of mixing its checkpoints and
metrics with the first's. A lock left by a killed run is stale (its process is gone
on this host, or its heartbeat, renewed at every logged step, is older than
STALE_SECONDS) and is taken over. Multi-host runs take it on process 0 only.
"""
import dataclasses
import json
import os
import socket
import time

import jax

from flaxcnn.config import default_config
from flaxcnn.data.core import example_hashes, fingerprint
from flaxcnn.data.core import keep_validation as keep_validation_split
from flaxcnn.papers import flatten

STALE_SECONDS = 15 * 60

# The run directory's files (the one place that names them):
CONFIG = "config.json"          # the run's config (save_config / read_config)
SUMMARY = "summary.json"        # written once the run is complete (read_summary)
METRICS = "metrics.jsonl"       # one line per logged step and evaluation
VARIANT = "variant.json"        # a sweep variant's record (flaxcnn.sweep)
SWEEP = "sweep.json"            # a sweep folder's variants (flaxcnn.sweep)


def read_json(path: str):
  """The JSON object in `path`, or None when it is missing or unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def read_summary(workdir: str) -> dict:
  """WORKDIR/summary.json ({} before the run is complete)."""
  return read_json(os.path.join(workdir, SUMMARY)) or {}


def read_config_json(workdir: str):
  """WORKDIR/config.json as a dict, or None."""
  return read_json(os.path.join(workdir, CONFIG))


def _tupled(v):
  return tuple(_tupled(x) for x in v) if isinstance(v, (list, tuple)) else v


def read_config(workdir: str):
  """The config of the run in `workdir` (workdir/config.json, written when it
  started) over default_config(); fields this version does not know are skipped."""
  saved = read_config_json(workdir)
  if saved is None:
    raise FileNotFoundError(f"{workdir}: no readable {CONFIG} (not a flaxcnn run)")
  config = default_config()

  def merge(node, values, open_dict=False):
    for k, v in values.items():
      if open_dict:
        node[k] = _tupled(v)
      elif k not in node:
        continue
      elif hasattr(node[k], "items") and isinstance(v, dict):
        merge(node[k], v, open_dict=(k == "kwargs"))
      else:
        try:
          node[k] = _tupled(v) if isinstance(node[k], tuple) or v is None else v
        except (TypeError, ValueError, AttributeError):
          continue
  merge(config, saved)
  return config


def read_variant(workdir: str) -> dict:
  """A sweep variant's WORKDIR/variant.json ({} when it has none)."""
  return read_json(os.path.join(workdir, VARIANT)) or {}


def read_sweep(workdir: str) -> dict:
  """A sweep folder's sweep.json ({} when it has none)."""
  return read_json(os.path.join(workdir, SWEEP)) or {}


class WorkdirBusy(ValueError):
  pass


def check_writable(workdir: str) -> None:
  """One-line errors for a workdir that cannot hold a run."""
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"--workdir={workdir} is a file; give a directory")
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ValueError(f"--workdir={workdir} lies under the file {parent}; give a directory")
  try:
    os.makedirs(path, exist_ok=True)
    probe = os.path.join(path, f".write-test-{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ValueError(f"--workdir={workdir} is not writable ({e.strerror}); give a "
                     "directory you can write to") from None


def process_alive(pid: int) -> bool:
  """Whether process `pid` of this host exists (one we may not signal counts)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except (PermissionError, OSError):
    return True
  return True


class Lock:
  """A workdir's lock file: `heartbeat` keeps it fresh; `release` removes it if this
  process took it (`owned`; a nested holder, e.g. a sweep's variant trained in the
  sweep's process, only keeps it fresh)."""

  def __init__(self, path, owned: bool = True):
    self.path = path
    self.held = path is not None and owned

  def heartbeat(self):
    if self.path is not None:
      try:
        os.utime(self.path)
      except OSError:
        pass

  def release(self):
    if self.held:
      try:
        with open(self.path) as f:
          if json.load(f).get("pid") == os.getpid():
            os.remove(self.path)
      except (OSError, ValueError):
        pass
      self.held = False


def _holder(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _stale(holder, path) -> bool:
  if holder is None:
    return True
  if holder.get("host") == socket.gethostname() and not process_alive(int(holder.get("pid", -1))):
    return True
  try:
    return time.time() - os.path.getmtime(path) > STALE_SECONDS
  except OSError:
    return True


def holder(workdir: str):
  """The live run (host, pid, start) that holds `workdir`'s lock, other than this
  process; None when it is free or its lock is stale."""
  path = os.path.join(os.path.abspath(workdir), ".lock")
  if not os.path.exists(path):
    return None
  who = _holder(path)
  if who is None or _stale(who, path) or (
      who.get("pid") == os.getpid() and who.get("host") == socket.gethostname()):
    return None
  return who


def prepare(workdir: str) -> Lock:
  """Checks the workdir and locks it for this run (process 0); returns the Lock."""
  check_writable(workdir)
  if jax.process_index() != 0:
    return Lock(None)
  path = os.path.join(os.path.abspath(workdir), ".lock")
  me = {"host": socket.gethostname(), "pid": os.getpid(),
        "start": time.strftime("%Y-%m-%d %H:%M:%S")}
  for _ in range(3):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      holder = _holder(path)
      if holder is not None and holder.get("pid") == os.getpid() \
          and holder.get("host") == me["host"]:
        return Lock(path, owned=False)    # this process holds it already (nested)
      if _stale(holder, path):
        try:
          os.remove(path)
        except FileNotFoundError:
          pass
        continue
      raise WorkdirBusy(f"--workdir={workdir} is in use by another run (host "
                        f"{holder.get('host')}, pid {holder.get('pid')}, started "
                        f"{holder.get('start')}); wait for it or use another workdir")
    with os.fdopen(fd, "w") as f:
      json.dump(me, f)
    return Lock(path)
  raise WorkdirBusy(f"--workdir={workdir}: could not take its lock {path}")


PROGRESS = "progress.json"


def write_progress(workdir: str, step: int, total_steps: int, eta_seconds=None) -> None:
  """WORKDIR/progress.json: where a training run is (read by a sweep's status)."""
  write_json(os.path.join(workdir, PROGRESS), {
      "step": int(step), "total_steps": int(total_steps), "time": time.time(),
      "eta_seconds": None if eta_seconds is None else round(float(eta_seconds), 1)})


def write_json(path: str, obj) -> None:
  """Writes JSON atomically on process 0 (a crash leaves the old file or the new one)."""
  if jax.process_index() == 0:
    write_json_atomic(path, obj)


def write_json_atomic(path: str, obj, default=None) -> None:
  """Writes JSON through a temporary file renamed over `path` (any process; no JAX)."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, default=default)
  os.replace(tmp, path)


def save_config(config, workdir: str) -> None:
  if jax.process_index() != 0:
    return
  tmp = os.path.join(workdir, f"config.json.tmp{os.getpid()}")
  with open(tmp, "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  os.replace(tmp, os.path.join(workdir, CONFIG))


DATA_STATS = "data.json"


def write_data_stats(workdir: str, dataset, prints=None, resumed: bool = False,
                     label: str = "") -> None:
  """WORKDIR/data.json: what the model was trained on (name, label, classes, image shape,
  split sizes, each split's fingerprint) and the input normalization, for the
  resume check and for jobs that reuse the weights (feature extraction) without
  loading the training data again. `prints`: the fingerprint, if computed.
  'started_with' keeps the fingerprint of the run's first start."""
  if jax.process_index() != 0:
    return
  stats = {
      "name": dataset.name, "label": label or dataset.name,
      "num_classes": int(dataset.num_classes),
      "image_shape": [int(x) for x in dataset.image_shape],
      "sizes": {k: int(v) for k, v in dataset.sizes.items()},
      "mean": [float(x) for x in dataset.mean], "std": [float(x) for x in dataset.std],
      "class_names": list(dataset.class_names or []),
      "fingerprint": prints or fingerprint(dataset)}
  saved = (read_data_stats(workdir) or {}) if resumed else {}
  stats["started_with"] = saved.get("started_with", saved.get("fingerprint",
                                                              stats["fingerprint"]))
  validation = dataset.splits.get("validation")
  if getattr(dataset, "validation_held_out", False) and getattr(validation, "images", None) \
      is not None:   # the held-out examples, kept for a resume on changed data
    stats["validation_examples"] = saved.get("validation_examples") or \
        example_hashes(validation)
  write_json(os.path.join(workdir, DATA_STATS), stats)


def keep_validation(workdir: str, dataset, allow_changed: bool, prints=None):
  """A resume on changed data (config.data.allow_changed): the validation split the
  run held out at its start stays its validation split (images added since train,
  they are never validated on) and its normalization stays the recorded one.
  `prints`: the dataset's fingerprint, if computed."""
  saved = read_data_stats(workdir) or {}
  held = saved.get("validation_examples")
  if (not allow_changed or not held or not os.path.isdir(os.path.join(workdir, "checkpoints"))
      or saved.get("fingerprint") == (prints or fingerprint(dataset))
      or not getattr(dataset, "validation_held_out", False)):
    return dataset
  dataset, found = keep_validation_split(dataset, held)
  dataset = dataclasses.replace(dataset, mean=tuple(saved["mean"]), std=tuple(saved["std"]))
  if jax.process_index() == 0:
    print(f"WARNING: the data changed; the validation split stays the one the run started "
          f"with ({found} of its {len(held)} examples are still there), every other image "
          "trains, and the normalization stays the recorded one", flush=True)
  return dataset


def check_same_data(workdir: str, dataset, step: int, allow_changed: bool = False,
                    prints=None):
  """The fingerprint of `dataset` (`prints`, if computed); a ValueError when it differs
  from the one the run in `workdir` recorded (a folder that gained, lost or changed
  images between a kill and the resume: its steps would see other images, and the
  validation split drawn again would hold trained-on images), unless `allow_changed`."""
  prints = prints or fingerprint(dataset)
  saved = (read_data_stats(workdir) or {}).get("fingerprint")
  if not saved or saved == prints:
    return prints
  changed = [f"{k}: {_size(saved.get(k))} -> {_size(prints.get(k))} examples"
             + ("" if _size(saved.get(k)) != _size(prints.get(k)) else ", other images")
             for k in sorted(set(saved) | set(prints)) if saved.get(k) != prints.get(k)]
  if allow_changed:
    print(f"WARNING: the data differ from those the run in {workdir} started with "
          f"({'; '.join(changed)}); going on (config.data.allow_changed)", flush=True)
    return prints
  raise ValueError(f"the data differ from those the run in {workdir} started with "
                   f"({'; '.join(changed)}), whose checkpoint at step {step} it would "
                   "resume: its steps would see other images. Restore the data, start a "
                   "new --workdir, or go on with --config.data.allow_changed=True")


def _size(entry):
  return None if entry is None else int(str(entry).split(":")[0])


def read_data_stats(workdir: str):
  """The dict write_data_stats saved in `workdir`, or None (runs older than it)."""
  try:
    with open(os.path.join(workdir, DATA_STATS)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def config_changes(config, workdir: str) -> dict:
  """{field: (saved, now)} where `config` differs from the run's workdir/config.json
  ({} when there is none, or it cannot be read)."""
  saved = read_config_json(workdir)
  if saved is None:
    return {}
  saved = flatten(saved)
  now = flatten(json.loads(config.to_json_best_effort()))
  defaults = flatten(json.loads(default_config().to_json_best_effort()))

  def schema_change(k):
    """A field one version of flaxcnn's schema has and the other lacks: added since
    the run (and at its default now), or removed since."""
    if k.startswith("model.kwargs."):
      return False
    if k not in saved:
      return now.get(k) == defaults.get(k)
    return k not in now and k not in defaults

  return {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now))
          if saved.get(k) != now.get(k) and not schema_change(k)}


def describe_changes(changes: dict) -> list:
  """['field: saved -> now', ...] of `config_changes`."""
  return [f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()]


EVALUATIONS = "evaluations.jsonl"


def record_evaluation(workdir: str, config, step: int, results: dict) -> None:
  """Appends an eval job's results to WORKDIR/evaluations.jsonl: the checkpoint's
  step, the test (eval_mode, data.eval_image_size, eval_scales) and each split's
  metrics, so that `results --paper` can put a 10-crop or 320-pixel test of a
  trained run beside the paper. A workdir that cannot be written only warns."""
  if jax.process_index() != 0:
    return
  line = {"step": int(step), "time": time.time(), "eval_mode": config.eval_mode,
          "eval_image_size": config.data.get("eval_image_size"),
          "eval_scales": list(config.eval_scales) if config.eval_mode == "multiscale"
          else None, **results}
  try:
    with open(os.path.join(workdir, EVALUATIONS), "a") as f:
      f.write(json.dumps(line, default=lambda x: x.tolist() if hasattr(x, "tolist")
                         else float(x)) + "\n")
  except OSError as e:
    print(f"WARNING: the evaluation is not recorded in {workdir} ({e.strerror})", flush=True)


CONFIG_HISTORY = "config_history.jsonl"


def record_config_changes(config, workdir: str, step: int) -> list:
  """Before a resumed run overwrites config.json: what its config changes (a learning
  rate, an augmentation, a budget), appended to WORKDIR/config_history.jsonl as one
  line {step, time, changes: {field: [before, after]}}, so the record keeps what the
  steps before `step` used. Returns the changes' descriptions."""
  changes = config_changes(config, workdir)
  if changes and jax.process_index() == 0:
    with open(os.path.join(workdir, CONFIG_HISTORY), "a") as f:
      f.write(json.dumps({"step": int(step), "time": time.time(),
                          "changes": {k: [a, b] for k, (a, b) in changes.items()}},
                         default=str) + "\n")
  return describe_changes(changes)
