"""Reading runs: one row per run directory (its settings, final and best metrics,
diagnosis), and the per-epoch curves of all of them."""
import json
import os
from typing import Dict, List, Sequence, Union

import numpy as np
import pandas as pd

from flaxcnn import papers
from flaxcnn import sweep as sweep_lib
from flaxcnn import tasks
from flaxcnn import workdir as workdir_lib
from flaxcnn.results.curve import EVAL_SPLITS, epoch_curve, metric_column, read_metrics
from flaxcnn.results.diagnosis import diagnose

_RUN_FILES = (workdir_lib.METRICS, workdir_lib.SUMMARY, workdir_lib.VARIANT)

_RESERVED = {"run", "status", "in_sweep", "data", "error_kind", "epochs", "steps", "wall_time",
             "cores", "error", "path", "index", "advice", "underfit", "overfit", "dev_split", "train_dev_gap", "dev_best_epoch",
             "dev_still_improving"}

# Fields that do not change what a run learns.
_BOOKKEEPING = {"log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
                "profile_steps", "eval_batch_size"}


def run_dirs(path: Union[str, Sequence[str]]) -> List[str]:
  """The run directories under `path`: itself if it is a run, else its
  subdirectories that are runs (in sweep order when it has a sweep.json)."""
  if not isinstance(path, (str, os.PathLike)):
    return [d for p in path for d in run_dirs(p)]
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"results: {path} is not a directory")
  if any(os.path.exists(os.path.join(path, f)) for f in _RUN_FILES):
    return [path]
  order = [v["name"] for v in workdir_lib.read_sweep(path)
           .get("variants", [])]
  found = sorted(d for d in os.listdir(path)
                 if any(os.path.exists(os.path.join(path, d, f)) for f in _RUN_FILES))
  names = [n for n in order if n in found] + [n for n in found if n not in order]
  return [os.path.join(path, n) for n in names]


def task_metric(run_dir: str) -> str:
  """The headline metric of the run's task (`Task.metric`: classification's
  'accuracy', segmentation's 'mean_iou'); 'accuracy' for a run without a config.json
  or whose task this version cannot tell."""
  if workdir_lib.read_config_json(run_dir) is None:
    return "accuracy"
  try:
    return tasks.for_config(workdir_lib.read_config(run_dir)).metric
  except (ValueError, KeyError, AttributeError, ImportError):   # e.g. a model preset since removed
    return "accuracy"


def trained_on(run_path):
  """The run's data.json (what it trained on: name, classes, image shape), or None."""
  return workdir_lib.read_json(os.path.join(run_path, workdir_lib.DATA_STATS))


def _column_names(fields: List[str], reserved) -> Dict[str, str]:
  """dotted field -> column: its last part when unambiguous, else the dotted name."""
  short = [f.split(".")[-1] for f in fields]
  out = {}
  for f, s in zip(fields, short):
    out[f] = s if short.count(s) == 1 and s not in reserved else f
  return out


def _flat_config(run_dir: str) -> dict:
  """{dotted field: value} of the config a run saved (config.json); {} before it ran."""
  saved = workdir_lib.read_config_json(run_dir)
  return papers.flatten(saved) if isinstance(saved, dict) else {}


def _differing_config_fields(dirs, exclude=()) -> List[str]:
  """The config fields whose values differ between the runs that saved a config:
  runs of different models, data or budgets are never pooled into one row, also
  when they were not launched as one sweep."""
  configs = [c for c in map(_flat_config, dirs) if c]
  if len(configs) < 2:
    return []
  keys = sorted(set().union(*configs) - set(exclude) - _BOOKKEEPING)
  return [k for k in keys
          if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]


def _hashable(v):
  if isinstance(v, (list, tuple)):
    return "x".join(str(x) for x in v)
  if isinstance(v, dict):
    return json.dumps(v, sort_keys=True)
  return v


def _records(path, dirs):
  """[(run directory, its sweep record or variant status, in_sweep)], the variants a
  sweep listed but never started (status 'pending') last. in_sweep is False for a
  run in a sweep folder that its sweep.json does not list: left over from a changed
  axis."""
  listed = {}   # sweep.json's variants, with their overrides (a queued one's record has none)
  sweeps = set()   # the folders that have a sweep.json
  for folder in ([path] if isinstance(path, (str, os.PathLike)) else path):
    for record in sweep_lib.records(os.fspath(folder)):
      listed[os.path.join(os.fspath(folder), record["name"])] = record
      sweeps.add(os.path.normpath(folder))
  in_sweep = lambda d: d in listed or os.path.dirname(os.path.normpath(d)) not in sweeps
  infos = [(d, listed.get(d) or sweep_lib.variant_status(d), in_sweep(d)) for d in dirs]
  return infos + [(d, r, True) for d, r in listed.items() if d not in dirs]


def _fields(infos, dirs) -> List[str]:
  """The overridden fields (in order of appearance), then the differing config fields."""
  fields: List[str] = []
  for _, record, _ in infos:
    for f in (record.get("overrides") or {}):
      if f not in fields:
        fields.append(f)
  return fields + _differing_config_fields(dirs, exclude=fields)


def _wall_time(record: dict, summary: dict, records: List[dict]) -> float:
  wall = record.get("wall_time")
  if wall is None:
    wall = summary.get("seconds")
  if wall is None and records:
    wall = records[-1].get("time", np.nan) - records[0].get("time", np.nan)
  return float(wall) if wall is not None else np.nan


def _row(info, columns: Dict[str, str], metric: str, curve, records, diagnose_kwargs) -> dict:
  """The row of a run; `info`: (its directory, record, in_sweep) as `_records` gives;
  `columns`: {field: its column}."""
  d, record, in_sweep = info
  summary = workdir_lib.read_summary(d)
  data = trained_on(d) or {}
  row = {"run": record.get("name", os.path.basename(d)), "status": record["status"],
         "in_sweep": in_sweep, "data": data.get("label") or data.get("name") or np.nan}
  overrides = {**_flat_config(d), **(record.get("overrides") or {})}
  for f, column in columns.items():
    row[column] = _hashable(overrides.get(f, np.nan))
  row.update(_run_metrics(curve, summary, records, metric))
  row["wall_time"] = _wall_time(record, summary, records)
  row["cores"] = record.get("cores", np.nan)   # a sweep variant's CPU cores (its sums)
  row.update(diagnose(curve, metric=metric, **diagnose_kwargs))
  row["error"] = record.get("error")
  row["path"] = d
  return row


def load(path: Union[str, Sequence[str]], curves: bool = False, **diagnose_kwargs):
  """One row per run under `path` (see the package docstring for the columns).

  With `curves=True`, returns (runs, curves): the per-epoch curves of every run in
  long form (run, split, epoch, step, loss, accuracy, error, top5, lr, the task's
  metric where it is not accuracy, and the swept fields). `diagnose_kwargs` go to
  `diagnose`. `attrs["metric"]` is the runs' task metric ('accuracy' unless all runs
  share another, e.g. segmentation's 'mean_iou').
  """
  dirs = run_dirs(path)
  infos = _records(path, dirs)
  fields = _fields(infos, dirs)
  names = _column_names(fields, _RESERVED)
  metrics = {d: task_metric(d) for d, _, _ in infos}
  rows, curve_frames = [], []
  for info in infos:
    d = info[0]
    records = read_metrics(d)
    curve = epoch_curve(records, metrics[d])
    row = _row(info, names, metrics[d], curve, records, diagnose_kwargs)
    rows.append(row)
    if curves:
      curve.insert(0, "run", row["run"])
      for f in fields:
        curve[names[f]] = row[names[f]]
      curve_frames.append(curve)
  runs = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["run", "status"])
  runs.attrs.update(_attrs(fields, names, metrics))
  if not curves:
    return runs
  curve_df = pd.concat(curve_frames, ignore_index=True) if curve_frames else pd.DataFrame(
      columns=["run", "split", "epoch", "step", "loss", "accuracy", "error"])
  curve_df.attrs.update(_attrs(fields, names, metrics))
  return runs, curve_df


def _attrs(fields, names, metrics) -> dict:
  """The frames' attrs: the swept columns, {column: field}, the task metric."""
  shared = set(metrics.values())
  return {"swept": [names[f] for f in fields], "fields": {names[f]: f for f in fields},
          "metric": shared.pop() if len(shared) == 1 else "accuracy"}


def curves(path: Union[str, Sequence[str]]) -> pd.DataFrame:
  """The per-epoch curves of every run under `path` (as `load(path, curves=True)[1]`)."""
  return load(path, curves=True)[1]


def _run_metrics(curve: pd.DataFrame, summary: dict, records: List[dict],
                 metric: str = "accuracy") -> dict:
  """Epochs, steps and the final metrics: train (its last average), validation and
  test (summary.json's, else the last evaluation), with the task's `metric`."""
  epochs = summary.get("epoch")
  if epochs is None:
    epochs = max((r.get("epoch", 0.0) for r in records), default=np.nan)
  steps = summary.get("step")
  if steps is None:
    steps = max((r.get("step", 0) for r in records), default=np.nan)
  row = {"epochs": float(epochs), "steps": steps,
         "error_kind": error_kind(summary, records, metric)}
  train = curve[curve.split == "train"]
  last = train.iloc[-1] if len(train) else None
  for k in ("error", "accuracy", "loss"):
    row[f"final_train_{k}"] = float(last[k]) if last is not None else np.nan
  for split in EVAL_SPLITS:
    ev = curve[curve.split == split]
    final = summary.get(split) if isinstance(summary.get(split), dict) else None
    if final is None and len(ev):
      final = ev.iloc[-1].to_dict()
    row.update(final_metrics(split, final or {}, metric))
    row.update(_best(ev, split, metric))
  row["test_error_at_best_validation"] = _test_at_best_validation(curve, metric)
  return row


def error_kind(summary: dict, records: List[dict], metric: str = "accuracy"):
  """What a run's error and accuracy count: 'pixel' (segmentation: its task's metric
  or its evaluations have a mean IoU), 'top-1' (classification), NaN before any
  metrics."""
  lines = records + [v for v in summary.values() if isinstance(v, dict)]
  if metric == "mean_iou" or any("mean_iou" in r for r in lines):
    return "pixel"
  return "top-1" if records or summary else np.nan


def final_metrics(split: str, final: dict, metric: str = "accuracy") -> dict:
  """The final_{split}_* columns of a split's metrics (error: 1 - accuracy)."""
  acc = final.get("accuracy", np.nan)
  row = {f"final_{split}_error": 1.0 - acc if acc == acc else np.nan,
         f"final_{split}_accuracy": acc,
         f"final_{split}_loss": final.get("loss", np.nan),
         f"final_{split}_top5": final.get("top5", np.nan)}
  if metric not in ("accuracy", "loss", "top5"):
    row[f"final_{split}_{metric}"] = final.get(metric, np.nan)
  return row


def _best_index(ev: pd.DataFrame, metric: str):
  """The index of `ev`'s best evaluation by the task's `metric`; None without one."""
  column = metric_column(metric)
  if column not in ev or not ev[column].notna().any():
    return None
  values = ev[column].astype(float)
  return values.idxmin() if column == "error" else values.idxmax()


def _best(ev: pd.DataFrame, split: str, metric: str = "accuracy") -> dict:
  """best_{split}_error and best_{split}_epoch at the split's best evaluation by the
  task's `metric` (and best_{split}_{metric} when it is not accuracy)."""
  i = _best_index(ev, metric) if len(ev) else None
  row = {f"best_{split}_error": np.nan, f"best_{split}_epoch": np.nan}
  if metric != "accuracy":
    row[f"best_{split}_{metric}"] = np.nan
  if i is None:
    return row
  row[f"best_{split}_error"] = float(ev.loc[i, "error"])
  row[f"best_{split}_epoch"] = float(ev.loc[i, "epoch"])
  if metric != "accuracy":
    row[f"best_{split}_{metric}"] = float(ev.loc[i, metric])
  return row


def _test_at_best_validation(curve: pd.DataFrame, metric: str = "accuracy") -> float:
  """The test error recorded at the step of the best validation evaluation."""
  val, test = curve[curve.split == "validation"], curve[curve.split == "test"]
  i = _best_index(val, metric) if len(val) and len(test) else None
  if i is not None:
    match = test[test.step == val.loc[i, "step"]]
    if len(match):
      return float(match["error"].iloc[0])
  return np.nan
