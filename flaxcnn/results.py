"""Results of runs and sweeps: a DataFrame per sweep, paper-style tables, figures,
and the tuning diagnostics of the lecture (is a run underfit? overfit?).

    from flaxcnn import results
    runs = results.load("runs/digits_depth")              # one row per run
    runs, curves = results.load("runs/digits_depth", curves=True)
    print(results.table(runs))                           # mean ± std over seeds
    results.plot_curves(curves, path="curves.png")       # train/validation per variant
    results.plot_vs_field(runs, "depth", path="err.png") # final error vs the swept field
    print(results.diagnostics_table(runs))               # gap, best epoch, flags, advice
    results.report("runs/digits_depth")                  # all of it, written to files
    results.compare("runs/wrn_width")                    # the paper's values beside ours

or `python -m flaxcnn.results runs/digits_depth` (`--paper` for the comparison).

A run is a directory written by `train.train_and_evaluate` (metrics.jsonl,
summary.json once complete) and, in a sweep (`flaxcnn.sweep`), its variant.json
(name, overrides, status, error, wall time). `load` accepts one run, a sweep
directory of runs, or a list of either.

Columns of `load` (errors and accuracies are fractions; tables and figures show %):
  run, status ('finished' | 'failed' | 'running' | 'interrupted' | 'incomplete' |
  'pending'; see `flaxcnn.sweep.variant_status`), in_sweep (False for a run in a
  sweep folder that its sweep.json no longer lists: left over from a changed axis;
  tables mark it), data (what the run trained on, as its config labels it: data.json's
  label),
  one column per overridden field, and per config field whose value differs between
  the runs (config.json; so runs of different models, data or budgets are never
  pooled into one row), by its last dotted part (e.g. 'depth', 'seed') when that is
  unambiguous, the dotted name otherwise; listed in `runs.attrs["swept"]`,
  epochs, steps, error_kind ('top-1', or 'pixel' for segmentation: what the errors
  and accuracies count; tables never put the two in one column),
  wall_time (seconds), cores (the CPU cores a sweep variant ran on),
  final_{train,validation,test}_{error,accuracy,loss} (train: averaged over the last
  epoch, as measured during training, i.e. with augmentation and dropout on),
  final_{validation,test}_top5, best_{validation,test}_{error,epoch},
  test_error_at_best_validation,
  and the diagnostics (see `diagnose`): dev_split, train_dev_gap, dev_best_epoch,
  dev_still_improving, underfit, overfit, advice; then error and path.

The diagnostics follow the lecture's advice (NPFL114, Lecture 5): check that a model
neither underfits (the training performance still increases at the end: train longer
or add capacity) nor overfits (the train/dev gap; dev performance getting worse while
training performance improves: regularize more), and train for as many epochs as it
takes for the dev performance to stop improving.
"""
import argparse
import json
import math
import os
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flaxcnn import config as config_lib
from flaxcnn import papers
from flaxcnn import sweep as sweep_lib
from flaxcnn import workdir as workdir_lib
from flaxcnn.metrics import read_jsonl

_PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_SPLITS = ("validation", "test")
_RUN_FILES = (workdir_lib.METRICS, workdir_lib.SUMMARY, workdir_lib.VARIANT)


# ----------------------------------------------------------------------------- reading

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


def read_metrics(run_dir: str) -> List[dict]:
  """metrics.jsonl without the lines a resumed run wrote twice (the last one of each
  split and step is kept), sorted by step."""
  path = os.path.join(run_dir, workdir_lib.METRICS)
  if not os.path.exists(path):
    return []
  latest = {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        r = json.loads(line)
      except ValueError:        # a line cut short by a kill
        continue
      latest[(r.get("split"), r.get("step"))] = r
  return sorted(latest.values(), key=lambda r: (r.get("step", 0), r.get("split", "")))


def _epoch_curve(records: List[dict]) -> pd.DataFrame:
  """The curve of one run: train lines averaged (step-weighted) over each epoch, or
  over each interval between evaluations where these are shorter (runs of a fraction
  of an epoch); evaluation lines as they are. Columns split, epoch, step, loss,
  accuracy, error, top5, count, lr."""
  rows = []
  train = [r for r in records if r.get("split") == "train"]
  evals = sorted({r["step"] for r in records if r.get("split") != "train"})
  bounds = set(evals)
  if train:
    last = train[-1]
    per_epoch = last["step"] / last["epoch"] if last.get("epoch") else None
    if per_epoch:
      bounds |= {int(round(k * per_epoch))
                 for k in range(1, int(math.ceil(last["epoch"] - 1e-9)) + 1)}
    bounds.add(last["step"])
  bounds = np.array(sorted(bounds))
  buckets: Dict[int, list] = {}
  prev = 0
  for r in train:
    weight = max(r["step"] - prev, 1)
    prev = r["step"]
    key = int(bounds[np.searchsorted(bounds, r["step"])]) if r["step"] <= bounds[-1] \
        else r["step"]
    buckets.setdefault(key, []).append((weight, r))
  for _, items in sorted(buckets.items()):
    w = np.array([x[0] for x in items], float)
    row = {"split": "train", "epoch": max(x[1]["epoch"] for x in items),
           "step": max(x[1]["step"] for x in items)}
    for k in ("loss", "accuracy"):
      vals = np.array([x[1].get(k, np.nan) for x in items], float)
      row[k] = float(np.sum(w * vals) / np.sum(w))
    row["lr"] = items[-1][1].get("lr", np.nan)
    rows.append(row)
  for r in records:
    if r.get("split") != "train":
      rows.append({k: r.get(k, np.nan) for k in ("split", "epoch", "step", "loss", "accuracy",
                                                 "top5", "count")})
  frame = pd.DataFrame(rows, columns=["split", "epoch", "step", "loss", "accuracy", "top5",
                                      "count", "lr"])
  frame["error"] = 1.0 - frame["accuracy"]
  return frame.sort_values(["split", "step"], kind="stable").reset_index(drop=True)


def _column_names(fields: List[str], reserved) -> Dict[str, str]:
  """dotted field -> column: its last part when unambiguous, else the dotted name."""
  short = [f.split(".")[-1] for f in fields]
  out = {}
  for f, s in zip(fields, short):
    out[f] = s if short.count(s) == 1 and s not in reserved else f
  return out


_RESERVED = {"run", "status", "in_sweep", "data", "error_kind", "epochs", "steps", "wall_time", "cores", "error", "path",
             "index", "advice", "underfit", "overfit", "dev_split", "train_dev_gap", "dev_best_epoch",
             "dev_still_improving"}


# Fields that do not change what a run learns.
_BOOKKEEPING = {"log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
                "profile_steps", "eval_batch_size"}


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


def load(path: Union[str, Sequence[str]], curves: bool = False, **diagnose_kwargs):
  """One row per run under `path` (see the module docstring for the columns).

  With `curves=True`, returns (runs, curves): the per-epoch curves of every run in
  long form (run, split, epoch, step, loss, accuracy, error, top5, lr, and the swept
  fields). `diagnose_kwargs` go to `diagnose`.
  """
  dirs = run_dirs(path)
  listed = {}   # sweep.json's variants, with their overrides (a queued one's record has none)
  sweeps = set()   # the folders that have a sweep.json: a run there that it lacks is left over
  for folder in ([path] if isinstance(path, (str, os.PathLike)) else path):
    for record in sweep_lib.records(os.fspath(folder)):
      listed[os.path.join(os.fspath(folder), record["name"])] = record
      sweeps.add(os.fspath(folder))
  infos = [(d, listed.get(d) or sweep_lib.variant_status(d)) for d in dirs]
  infos += [(d, r) for d, r in listed.items() if d not in dirs]   # never started: 'pending'
  fields: List[str] = []
  for _, record in infos:
    for f in (record.get("overrides") or {}):
      if f not in fields:
        fields.append(f)
  fields += _differing_config_fields(dirs, exclude=fields)
  names = _column_names(fields, _RESERVED)
  rows, curve_frames = [], []
  for d, record in infos:
    records = read_metrics(d)
    curve = _epoch_curve(records)
    summary = workdir_lib.read_summary(d)
    trained_on = _trained_on(d) or {}
    row = {"run": record.get("name", os.path.basename(d)), "status": record["status"],
           "in_sweep": d in listed or os.path.dirname(d) not in sweeps,
           "data": trained_on.get("label") or trained_on.get("name") or np.nan}
    overrides = {**_flat_config(d), **(record.get("overrides") or {})}
    for f in fields:
      row[names[f]] = _hashable(overrides.get(f, np.nan))
    row.update(_run_metrics(curve, summary, records))
    wall = record.get("wall_time")
    if wall is None:
      wall = summary.get("seconds")
    if wall is None and records:
      wall = records[-1].get("time", np.nan) - records[0].get("time", np.nan)
    row["wall_time"] = float(wall) if wall is not None else np.nan
    row["cores"] = record.get("cores", np.nan)   # a sweep variant's CPU cores (its sums)
    row.update(diagnose(curve, **diagnose_kwargs))
    row["error"] = record.get("error")
    row["path"] = d
    rows.append(row)
    if curves:
      c = curve.copy()
      c.insert(0, "run", row["run"])
      for f in fields:
        c[names[f]] = row[names[f]]
      curve_frames.append(c)
  runs = pd.DataFrame(rows)
  swept = [names[f] for f in fields]
  if not rows:
    runs = pd.DataFrame(columns=["run", "status"])
  runs.attrs["swept"] = swept
  runs.attrs["fields"] = {names[f]: f for f in fields}
  if not curves:
    return runs
  curve_df = pd.concat(curve_frames, ignore_index=True) if curve_frames else pd.DataFrame(
      columns=["run", "split", "epoch", "step", "loss", "accuracy", "error"])
  curve_df.attrs["swept"] = list(swept)
  curve_df.attrs["fields"] = dict(runs.attrs["fields"])
  return runs, curve_df


def curves(path: Union[str, Sequence[str]]) -> pd.DataFrame:
  """The per-epoch curves of every run under `path` (as `load(path, curves=True)[1]`)."""
  return load(path, curves=True)[1]


def error_kind(summary: dict, records: List[dict]):
  """What a run's error and accuracy count: 'pixel' (segmentation: its evaluations
  have a mean IoU), 'top-1' (classification), NaN before any metrics."""
  lines = records + [v for v in summary.values() if isinstance(v, dict)]
  if any("mean_iou" in r for r in lines):
    return "pixel"
  return "top-1" if records or summary else np.nan


def _kinds(df: pd.DataFrame) -> List[str]:
  """The error kinds of the runs in `df` (see error_kind), in order of appearance."""
  if "error_kind" not in df:
    return []
  return list(dict.fromkeys(k for k in df["error_kind"] if isinstance(k, str)))


def _run_metrics(curve: pd.DataFrame, summary: dict, records: List[dict]) -> dict:
  row = {}
  epochs = summary.get("epoch")
  if epochs is None:
    epochs = max((r.get("epoch", 0.0) for r in records), default=np.nan)
  steps = summary.get("step")
  if steps is None:
    steps = max((r.get("step", 0) for r in records), default=np.nan)
  row["epochs"], row["steps"] = float(epochs), steps
  row["error_kind"] = error_kind(summary, records)
  train = curve[curve.split == "train"]
  last = train.iloc[-1] if len(train) else None
  for k in ("error", "accuracy", "loss"):
    row[f"final_train_{k}"] = float(last[k]) if last is not None else np.nan
  for split in EVAL_SPLITS:
    ev = curve[curve.split == split]
    final = summary.get(split) if isinstance(summary.get(split), dict) else None
    if final is None and len(ev):
      final = ev.iloc[-1].to_dict()
    final = final or {}
    acc = final.get("accuracy", np.nan)
    row[f"final_{split}_error"] = 1.0 - acc if acc == acc else np.nan
    row[f"final_{split}_accuracy"] = acc
    row[f"final_{split}_loss"] = final.get("loss", np.nan)
    row[f"final_{split}_top5"] = final.get("top5", np.nan)
    if len(ev) and ev["error"].notna().any():
      i = ev["error"].astype(float).idxmin()
      row[f"best_{split}_error"] = float(ev.loc[i, "error"])
      row[f"best_{split}_epoch"] = float(ev.loc[i, "epoch"])
    else:
      row[f"best_{split}_error"] = row[f"best_{split}_epoch"] = np.nan
  val, test = curve[curve.split == "validation"], curve[curve.split == "test"]
  row["test_error_at_best_validation"] = np.nan
  if len(val) and len(test) and val["error"].notna().any():
    step = val.loc[val["error"].astype(float).idxmin(), "step"]
    match = test[test.step == step]
    if len(match):
      row["test_error_at_best_validation"] = float(match["error"].iloc[0])
  return row


# ----------------------------------------------------------------------------- diagnostics

def diagnose(curve, window: float = 0.1, underfit_tol: float = 0.005,
             overfit_tol: float = 0.005, loss_tol: float = 0.1) -> dict:
  """The lecture's checks on one run's per-epoch curve (a `load(..., curves=True)[1]`
  slice, or a run's metrics.jsonl records).

  - train_dev_gap: final dev error - final train error (fractions);
  - dev_best_epoch: where dev performance stopped improving (its best error, first
    reached); dev_still_improving: the last evaluation is the best and improved on the
    one before by more than the dev tolerance (train longer);
  - underfit: the train error still fell by more than `underfit_tol` over the last
    `window` of training (at least one epoch): the model is still learning when
    training ends (train longer, or add capacity);
  - overfit: dev got worse while train improved: the final dev error is above its
    best by more than the dev tolerance, or the final dev loss more than `loss_tol`
    (relative) above its minimum, and the train loss fell after that best epoch.
  The dev tolerance is `overfit_tol` or, when larger, the standard error of the best
  dev error on the dev set's `count` examples (sqrt(p (1 - p) / n)): on a small dev
  set a change by one example is noise, not a trend.
  The dev split is 'validation', or 'test' when a run has no validation split.
  None where a run has too few points to tell.
  """
  if isinstance(curve, list):
    curve = _epoch_curve(curve)
  out = {"dev_split": None, "train_dev_gap": np.nan, "dev_best_epoch": np.nan,
         "dev_still_improving": None, "underfit": None, "overfit": None, "advice": ""}
  train = curve[curve.split == "train"].sort_values("epoch")
  dev_split = next((s for s in EVAL_SPLITS if (curve.split == s).any()), None)
  dev = curve[curve.split == dev_split].sort_values("epoch") if dev_split else train.iloc[:0]
  out["dev_split"] = dev_split
  t_ep, t_err, t_loss = (train[k].to_numpy(float) for k in ("epoch", "error", "loss"))
  d_ep, d_err, d_loss = (dev[k].to_numpy(float) for k in ("epoch", "error", "loss"))
  if len(train) and len(dev):
    out["train_dev_gap"] = float(d_err[-1] - t_err[-1])

  def train_at(epoch):
    """Index of the last train point at or before `epoch` (the first if none)."""
    idx = np.nonzero(t_ep <= epoch + 1e-9)[0]
    return int(idx[-1]) if len(idx) else 0

  advice = []
  if len(train) >= 2:
    start = train_at(t_ep[-1] - max(1.0, window * t_ep[-1]))
    if start == len(t_ep) - 1:
      start -= 1
    if np.isfinite(t_err[start]) and np.isfinite(t_err[-1]):
      drop = t_err[start] - t_err[-1]
      out["underfit"] = bool(drop > underfit_tol)
    else:      # no accuracy (e.g. a loss-only run): the loss, relatively
      drop = (t_loss[start] - t_loss[-1]) / max(abs(t_loss[start]), 1e-12)
      out["underfit"] = bool(drop > 10 * underfit_tol)
    if out["underfit"]:
      advice.append(f"underfit: train error still falling at the end "
                    f"({100 * t_err[start]:.2f}% at epoch {t_ep[start]:.4g} -> "
                    f"{100 * t_err[-1]:.2f}% at {t_ep[-1]:.4g}): train longer or add capacity")
  if len(dev) >= 1 and np.isfinite(d_err).any():
    best = int(np.nanargmin(d_err))
    out["dev_best_epoch"] = float(d_ep[best])
  if len(dev) >= 2 and np.isfinite(d_err).any():
    last = len(d_err) - 1
    tol = overfit_tol
    n = dev["count"].to_numpy(float)[best] if "count" in dev else np.nan
    if np.isfinite(n) and n > 0:
      p = min(max(d_err[best], 1.0 / n), 1.0 - 1.0 / n)
      tol = max(tol, math.sqrt(p * (1.0 - p) / n))
    out["dev_still_improving"] = bool(best == last and d_err[last] < d_err[last - 1] - tol)
    worse_err = d_err[last] - d_err[best] > tol
    lbest = int(np.nanargmin(d_loss)) if np.isfinite(d_loss).any() else last
    worse_loss = lbest < last and d_loss[last] > d_loss[lbest] * (1 + loss_tol)
    out["overfit"] = False
    if (worse_err or worse_loss) and len(train):
      ref_epoch = d_ep[best] if worse_err else d_ep[lbest]
      ref = train_at(ref_epoch)
      improved = t_loss[ref] - t_loss[-1] > 0.01 * abs(t_loss[ref]) or \
          t_err[ref] - t_err[-1] > underfit_tol
      out["overfit"] = bool(improved)
      if improved:
        what = (f"error {100 * d_err[best]:.2f}% -> {100 * d_err[last]:.2f}%" if worse_err
                else f"loss {d_loss[lbest]:.4f} -> {d_loss[last]:.4f}")
        advice.append(f"overfit: {dev_split} {what} after epoch {ref_epoch:.4g} while train "
                      f"kept improving (gap {100 * out['train_dev_gap']:.2f} points): "
                      f"regularize more or stop near epoch {ref_epoch:.4g}")
    if out["dev_still_improving"]:
      advice.append(f"{dev_split} error still improving at the end: train longer")
  if not advice and out["dev_best_epoch"] == out["dev_best_epoch"]:
    if len(dev) and out["dev_best_epoch"] < d_ep[-1]:
      advice.append(f"ok: {dev_split} error stopped improving at epoch "
                    f"{out['dev_best_epoch']:.4g}")
    else:
      advice.append(f"{dev_split} error best at the end (within noise of the previous "
                    f"evaluation)" if len(dev) > 1 else f"one {dev_split} evaluation only")
  out["advice"] = "; ".join(advice)
  return out


# ----------------------------------------------------------------------------- tables

def _group_fields(df: pd.DataFrame, by, exclude=("seed",)) -> List[str]:
  if by is not None:
    return [by] if isinstance(by, str) else list(by)
  swept = df.attrs.get("swept")
  if swept is None:
    swept = []
  return [c for c in swept if c in df.columns and c not in exclude]


def _groups(df: pd.DataFrame, by: List[str]):
  """[(label dict, sub-DataFrame)] in order of first appearance."""
  if not by:
    return [({}, df)]
  keys = df[by].astype(object).where(df[by].notna(), None)
  order, groups = [], {}
  for i, key in zip(df.index, map(tuple, keys.to_numpy())):
    if key not in groups:
      order.append(key)
      groups[key] = []
    groups[key].append(i)
  return [(dict(zip(by, k)), df.loc[groups[k]]) for k in order]


def _label(metric: str, percent: bool, kind: Optional[str] = None) -> str:
  """A metric's column: 'test error (%)'; of one error kind: 'test pixel error (%)'."""
  text = metric.replace("final_", "").replace("_", " ")
  if kind:
    named = text.replace("error", f"{kind} error").replace("accuracy", f"{kind} accuracy")
    text = named if named != text else f"{text} ({kind})"
  if percent and _percent(metric):
    text += " (%)"
  return text


def _metric_columns(df: pd.DataFrame, metrics) -> List[tuple]:
  """[(metric, error kind or None)]: a column per metric, or per metric and kind when
  the runs count errors of several kinds (top-1 beside a U-Net's pixels); a kind
  other than top-1 is always named."""
  kinds = _kinds(df)
  if len(kinds) > 1:
    return [(m, k) for m in metrics for k in kinds]
  kind = kinds[0] if kinds and kinds[0] != "top-1" else None
  return [(m, kind) for m in metrics]


def _fmt(value) -> str:
  if isinstance(value, (float, np.floating)) and float(value).is_integer():
    return str(int(value))
  if isinstance(value, (float, np.floating)):
    return f"{value:.4g}"
  return str(value)


def _mean_std(values: np.ndarray, scale: float, precision: int) -> str:
  values = values[np.isfinite(values)] * scale
  if not len(values):
    return "–"
  if len(values) == 1:
    return f"{values[0]:.{precision}f}"
  return f"{values.mean():.{precision}f} ± {values.std(ddof=1):.{precision}f}"


def _markdown(header: List[str], rows: List[List[str]], align: Optional[List[str]] = None):
  esc = lambda s: str(s).replace("|", "\\|")
  align = align or ["---"] * len(header)
  lines = ["| " + " | ".join(esc(h) for h in header) + " |",
           "|" + "|".join(align) + "|"]
  lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
  return "\n".join(lines) + "\n"


def _write(text: str, path: Optional[str]) -> None:
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
      f.write(text)


def table(df: pd.DataFrame, metrics: Optional[Sequence[str]] = None, by=None,
          percent: bool = True, precision: int = 2, include_unfinished: bool = False,
          path: Optional[str] = None) -> str:
  """A Markdown table in the shape of the papers' tables: one row per setting of the
  swept fields (`by`, default every swept field but the seed), each metric as
  mean ± std (sample std) over the seeds of its finished runs, and the number of runs.

  `metrics` default: final test error and final validation error (those present).
  Written to `path` when given.
  """
  by = _group_fields(df, by)
  if metrics is None:
    metrics = [m for m in ("final_test_error", "final_validation_error")
               if m in df.columns and df[m].notna().any()]
  metrics = [metrics] if isinstance(metrics, str) else list(metrics)
  columns = _metric_columns(df, metrics)
  header = list(by) + [_label(m, percent, k) for m, k in columns] + ["runs"]
  rows = []
  for key, group in _groups(df, by):
    done = group if include_unfinished else group[group.status == "finished"]
    scale = lambda m: 100.0 if percent and any(
        w in m for w in ("error", "accuracy", "top5")) else 1.0
    of_kind = lambda k: done if k is None else done[done.error_kind == k]
    cells = [_fmt(key[b]) for b in by]
    cells += [_mean_std(of_kind(k)[m].to_numpy(float), scale(m), precision) if m in done
              else "–" for m, k in columns]
    runs = str(len(done))
    failed = int((group.status == "failed").sum())
    others = len(group) - len(done) - failed
    left = int((~group["in_sweep"].astype(bool)).sum()) if "in_sweep" in group else 0
    notes = ([f"{failed} failed"] if failed else []) + \
        ([f"{others} unfinished"] if others and not include_unfinished else []) + \
        ([f"{left} not in the sweep"] if left else [])
    if notes:
      runs += f" ({', '.join(notes)})"
    rows.append(cells + [runs])
  text = _markdown(header, rows, ["---"] * len(by) + ["--:"] * (len(header) - len(by)))
  cores = sorted({int(c) for c in df.get("cores", pd.Series([], dtype=float)).dropna()})
  if len(cores) > 1:     # on a CPU the float sums, so the numbers, follow the core count
    text += (f"\nThe runs were trained on different numbers of CPU cores ({', '.join(map(str, cores))}"
             "; the cores column of results.load): their numbers differ by that too.\n")
  _write(text, path)
  return text


def diagnostics_table(df: pd.DataFrame, path: Optional[str] = None) -> str:
  """A Markdown table of each run's train/dev errors, gap, best dev epoch, flags, advice;
  one table per error kind (top-1, pixel) when the runs have several."""
  kinds = _kinds(df)
  if len(kinds) > 1:   # the runs of no kind yet (pending) go with the first
    unknown = df.error_kind.isna()
    parts = [df[(df.error_kind == k) | (unknown & (i == 0))] for i, k in enumerate(kinds)]
    text = "\n".join(_diagnostics(part, k) for part, k in zip(parts, kinds))
  else:
    text = _diagnostics(df, kinds[0] if kinds and kinds[0] != "top-1" else None)
  _write(text, path)
  return text


def _diagnostics(df: pd.DataFrame, kind: Optional[str]) -> str:
  splits = {r for r in df.get("dev_split", pd.Series([], dtype=object)) if isinstance(r, str)}
  dev_name = splits.pop() if len(splits) == 1 else "dev (validation, else test)"
  error = f"{kind} error" if kind else "error"
  header = ["run", "status", "epochs", f"train {error} (%)", f"{dev_name} {error} (%)",
            "gap (points)", f"{dev_name} best epoch", "underfit", "overfit", "advice"]
  flag = lambda v: "–" if v is None or v != v else ("yes" if v else "no")
  pct = lambda v: "–" if v != v else f"{100 * v:.2f}"
  rows = []
  for _, r in df.iterrows():
    dev = r.get("dev_split") or "validation"
    note = r.get("advice") or ""
    if r.get("status") == "failed":
      note = f"failed: {r.get('error')}"
    status = r["status"] + (" (not in the sweep)" if not r.get("in_sweep", True) else "")
    rows.append([r["run"], status, _fmt(float(r.get("epochs", np.nan))),
                 pct(r.get("final_train_error", np.nan)),
                 pct(r.get(f"final_{dev}_error", np.nan)),
                 pct(r.get("train_dev_gap", np.nan)), _fmt(r.get("dev_best_epoch", np.nan)),
                 flag(r.get("underfit")), flag(r.get("overfit")), note])
  return _markdown(header, rows)


# ----------------------------------------------------------------------------- figures

def _figure(nrows=1, ncols=1, width=4.5, height=3.2):
  from matplotlib.figure import Figure
  fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
  axes = fig.subplots(nrows, ncols, squeeze=False)
  return fig, axes


def _save(fig, path: Optional[str]):
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)


def _key_label(key: dict) -> str:
  return ", ".join(f"{k}={_fmt(v)}" for k, v in key.items()) or "all runs"


def plot_curves(curve_df, metric: str = "error", by=None, splits=("train", "validation"),
                path: Optional[str] = None):
  """Train (dashed) and dev (solid) curves against epochs, one panel per setting of
  the swept fields (`by`, default all but the seed), one color per run (seed).

  `curve_df` is `load(..., curves=True)[1]` or a directory. Returns the matplotlib
  Figure (shown inline in notebooks); written to `path` when given.
  """
  if isinstance(curve_df, (str, os.PathLike)):
    curve_df = curves(curve_df)
  by = _group_fields(curve_df, by)
  groups = _groups(curve_df, by) if len(curve_df) else [({}, curve_df)]
  ncols = min(len(groups), 3)
  nrows = int(math.ceil(len(groups) / ncols))
  fig, axes = _figure(nrows, ncols)
  scale = 100.0 if metric in ("error", "accuracy", "top5") else 1.0
  colors = [f"C{i}" for i in range(10)]
  for ax in axes.flat[len(groups):]:
    ax.set_visible(False)
  for ax, (key, group) in zip(axes.flat, groups):
    for j, run in enumerate(dict.fromkeys(group["run"])):
      rc = group[group.run == run]
      name = f"seed={_fmt(rc['seed'].iloc[0])}" if "seed" in rc and len(groups) > 1 else run
      for split in splits:
        s = rc[rc.split == split]
        if not len(s):
          continue
        ax.plot(s["epoch"], s[metric] * scale, color=colors[j % 10],
                linestyle="--" if split == "train" else "-",
                marker="" if split == "train" else ".",
                label=f"{name} {split}")
    ax.set_title(_key_label(key), fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric + (" (%)" if scale == 100.0 else ""))
    ax.grid(alpha=0.3)
    if len(group):
      ax.legend(fontsize=7)
  fig.suptitle(f"train (dashed) and {' / '.join(s for s in splits if s != 'train')} "
               f"(solid) {metric}", fontsize=11)
  _save(fig, path)
  return fig


def plot_vs_field(df: pd.DataFrame, field: str, metric: Optional[str] = None, by=None,
                  path: Optional[str] = None):
  """`metric` (default: final test error, else validation) against a swept field:
  mean ± std over the seeds as error bars, the single runs as dots; one line per
  setting of the other swept fields (`by`). Returns the Figure; written to `path`."""
  fields = df.attrs.get("fields", {})
  if field not in df.columns:
    inv = {v: k for k, v in fields.items()}
    if field in inv:
      field = inv[field]
    else:
      raise KeyError(f"results: no column {field!r}; swept: {df.attrs.get('swept')}")
  if metric is None:
    metric = next(m for m in ("final_test_error", "final_validation_error", "final_train_error")
                  if m in df.columns and df[m].notna().any())
  done = df[df.status == "finished"]
  by = _group_fields(df, by, exclude=("seed", field))
  scale = 100.0 if any(w in metric for w in ("error", "accuracy", "top5")) else 1.0
  values = list(dict.fromkeys(done[field]))
  numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                for v in values)
  if numeric:
    values = sorted(values)
  pos = {v: (float(v) if numeric else i) for i, v in enumerate(values)}
  fig, axes = _figure()
  ax = axes[0, 0]
  for j, (key, group) in enumerate(_groups(done, by)):
    xs, means, stds = [], [], []
    for v in values:
      y = group[group[field] == v][metric].to_numpy(float) * scale
      y = y[np.isfinite(y)]
      if not len(y):
        continue
      xs.append(pos[v])
      means.append(y.mean())
      stds.append(y.std(ddof=1) if len(y) > 1 else 0.0)
      ax.plot([pos[v]] * len(y), y, ".", color=f"C{j % 10}", alpha=0.35)
    ax.errorbar(xs, means, yerr=stds, color=f"C{j % 10}", marker="o", capsize=4,
                label=_key_label(key) if by else "mean ± std over seeds")
  if numeric and values and min(values) > 0 and max(values) / min(values) >= 8:
    from matplotlib.ticker import NullLocator
    ax.set_xscale("log", base=2)
    ax.xaxis.set_minor_locator(NullLocator())   # only the swept values are ticks
  ax.set_xticks([pos[v] for v in values])
  ax.set_xticklabels([_fmt(v) for v in values])
  ax.set_xlabel(field.replace("_", " "))
  ax.set_ylabel(_label(metric, scale == 100.0))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title(f"{_label(metric, False)} vs {field}", fontsize=11)
  _save(fig, path)
  return fig


def _percent(metric: str) -> bool:
  return any(w in metric for w in ("error", "accuracy", "top5", "iou"))


def plot_mean_curves(curve_df, group: str, metric: str = "error", x: str = "step",
                     splits=("train", "validation"), panels=None, labels=None,
                     paper=None, title: Optional[str] = None, paper_label: str = "paper",
                     path: Optional[str] = None):
  """Learning curves of several arms over seeds: each run thin, the mean over the
  seeds of an arm thick (at the x values the seeds share); train dashed, the other
  splits solid; one colour per arm.

  `curve_df`: long form with columns `group`, seed, split, `x` and `metric` (as
  `curves()` returns, or a results file of them). `panels`: lists of group values, one
  panel each (default: one panel). `labels`: {group value: legend text}. `paper`:
  {group value: number} drawn as a dotted line in the arm's colour (a paper's
  figure; `paper_label` names it, e.g. a baseline). Errors, accuracies and IoU are shown
  in %. Returns the Figure."""
  if isinstance(curve_df, (str, os.PathLike)):
    curve_df = curves(curve_df)
  values = list(dict.fromkeys(curve_df[group]))
  panels = panels or [values]
  labels, paper = labels or {}, paper or {}
  colors = {v: f"C{i % 10}" for i, v in enumerate(values)}
  scale = 100.0 if _percent(metric) else 1.0
  fig, axes = _figure(1, len(panels), width=6.5 if len(panels) == 1 else 4.5, height=3.6)
  for ax, members in zip(axes.flat, panels):
    for v in members:
      arm = curve_df[curve_df[group] == v]
      for split in splits:
        s = arm[arm.split == split]
        if not len(s):
          continue
        style = "--" if split == "train" else "-"
        for _, run in s.groupby("seed"):
          run = run.sort_values(x)
          ax.plot(run[x], run[metric] * scale, style, color=colors[v], lw=0.7, alpha=0.45)
        mean = s.groupby(x)[metric].agg(["mean", "count"])
        mean = mean[mean["count"] == s["seed"].nunique()]
        ax.plot(mean.index, mean["mean"] * scale, style, color=colors[v], lw=2.2,
                label=f"{labels.get(v, v)} {split} (mean of {s['seed'].nunique()})")
      if v in paper:
        ax.axhline(paper[v] * scale, color=colors[v], ls=":", lw=1.2,
                   label=f"{labels.get(v, v)}: {paper_label}")
    ax.set_xlabel({"step": "training step", "epoch": "epoch"}.get(x, x))
    ax.set_ylabel(_label(metric, scale == 100.0))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  if title:
    fig.suptitle(title, fontsize=11)
  _save(fig, path)
  return fig


def plot_arms(runs, group: str, metrics: Sequence[str], labels=None, paper=None,
              title: Optional[str] = None, path: Optional[str] = None):
  """Final figures per arm: each seed a dot, the mean over the seeds with a ± one
  standard deviation bar; one panel per metric. `runs`: one row per run with columns
  `group`, seed and the metrics; `paper`: {metric: {group value: number}}.
  Returns the Figure."""
  values = list(dict.fromkeys(runs[group]))
  labels, paper = labels or {}, paper or {}
  fig, axes = _figure(1, len(metrics), width=1.2 + 1.1 * len(values))
  for ax, metric in zip(axes.flat, metrics):
    scale = 100.0 if _percent(metric) else 1.0
    for i, v in enumerate(values):
      y = runs[runs[group] == v][metric].to_numpy(float) * scale
      y = y[np.isfinite(y)]
      if not len(y):
        continue
      ax.plot(np.full(len(y), i), y, ".", color=f"C{i % 10}", alpha=0.5)
      ax.errorbar([i], [y.mean()], yerr=[y.std(ddof=1) if len(y) > 1 else 0.0], fmt="o",
                  color=f"C{i % 10}", capsize=5, ms=7)
      if v in paper.get(metric, {}):
        ax.plot([i - 0.3, i + 0.3], [paper[metric][v] * scale] * 2, ":", color="k")
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels([labels.get(v, str(v)) for v in values], fontsize=8, rotation=15)
    ax.set_ylabel(_label(metric, scale == 100.0))
    ax.grid(alpha=0.3, axis="y")
  if title:
    fig.suptitle(title, fontsize=11)
  _save(fig, path)
  return fig


# ----------------------------------------------------------------------------- paper

def _paper_source(path, source):
  """(config module, its arg) of the sweep in `path` (sweep.json) or of `source`
  ('experiments/x.py[:arg]')."""
  arg = ""
  if source is None and isinstance(path, (str, os.PathLike)):
    info = workdir_lib.read_sweep(path)
    source, arg = info.get("config"), info.get("arg") or ""
  if not source:
    raise ValueError(f"results.compare: {path} has no sweep.json naming its config file; "
                     "pass source='experiments/FILE.py[:ARG]' (--paper FILE.py[:ARG])")
  source, file_arg = config_lib.split_source(config_lib.find_config_file(os.fspath(source)))
  arg = file_arg or arg
  in_project = os.path.join(_PROJECT, source)
  if not os.path.exists(source) and os.path.exists(in_project):
    source = in_project   # an older sweep.json: relative to the project root
  if not os.path.exists(source):
    raise ValueError(f"results.compare: config file {source} not found (relative to "
                     f"{os.getcwd()}); pass source='experiments/FILE.py[:ARG]'")
  return config_lib.load_config_module(source), arg


def _settings(base, run_path, overrides) -> dict:
  """The run's config fields: its config.json, else the base config + its overrides."""
  saved = workdir_lib.read_config_json(run_path)
  if saved:
    return papers.flatten(saved)
  return papers.flatten(config_lib.apply_overrides(base, overrides or {}))


def _with_evaluations(runs: pd.DataFrame, settings: dict):
  """`runs` plus a row for each other test an eval job recorded on a finished run's
  final checkpoint (WORKDIR/evaluations.jsonl: a 10-crop, multi-scale or 320-pixel
  test of a run trained with centre evaluations), its `settings` those of the run
  with that test's fields, its final metrics the recorded ones; and {row path: the
  run's folder}."""
  real = {d: d for d in runs.get("path", [])}
  extra = []
  for _, run in (runs[runs.status == "finished"].iterrows() if len(runs) else ()):
    d, own = run["path"], settings[run["path"]]
    tests = {}
    for ev in read_jsonl(d, workdir_lib.EVALUATIONS):
      if ev.get("step") != run["steps"]:
        continue                                  # an earlier checkpoint
      fields = {"eval_mode": ev.get("eval_mode"), "data.eval_image_size": ev.get("eval_image_size")}
      if ev.get("eval_scales"):
        fields["eval_scales"] = ev["eval_scales"]
      if all(papers.norm(own.get(k)) == papers.norm(v) for k, v in fields.items()):
        continue                                  # the training's own final evaluation
      tests[tuple(sorted(fields.items(), key=str))] = (fields, ev)   # the latest of each
    for fields, ev in tests.values():
      key = f"{d}::eval {','.join(str(v) for v in fields.values() if v is not None)}"
      new = run.copy()
      new["path"] = key
      for col in [c for c in new.index if c.startswith(("final_validation_", "final_test_",
                                                          "best_"))] + [
          "test_error_at_best_validation"]:
        new[col] = np.nan
      for split in EVAL_SPLITS:
        acc = (ev.get(split) or {}).get("accuracy", np.nan)
        new[f"final_{split}_accuracy"] = acc
        new[f"final_{split}_error"] = 1.0 - acc if acc == acc else np.nan
        new[f"final_{split}_loss"] = (ev.get(split) or {}).get("loss", np.nan)
        new[f"final_{split}_top5"] = (ev.get(split) or {}).get("top5", np.nan)
      extra.append(new)
      settings[key], real[key] = {**own, **fields}, d
  if extra:
    runs = pd.concat([runs, pd.DataFrame(extra)], ignore_index=True)
  return runs, real


def _trained_on(run_path):
  """The run's data.json (what it trained on: name, classes, image shape), or None."""
  return workdir_lib.read_json(os.path.join(run_path, workdir_lib.DATA_STATS))


def compare(path, source=None, verbose: bool = True) -> pd.DataFrame:
  """The paper's reported values beside ours, one row per paper row (in the paper's
  order) that the runs under `path` reproduce (runs on `data.source='synthetic'`,
  random images, are never compared, nor runs whose data.json says they trained on
  other data than the table's dataset: a digits run keeps the label 'cifar10').

  The paper rows are the PAPER list of the sweep's config file (its sweep.json, or
  `source`, 'experiments/FILE.py[:ARG]'). Columns: table, row, metric, data (what
  our runs trained on, as labelled), paper, ours
  (mean over the finished runs, in %), std, n (seeds), epochs (trained), budget
  ('full' or 'shortened (E of B epochs)'), diff (ours - paper, points; only for runs
  at the paper's full budget), validation (the same metric on the validation split,
  shown in its own column when the runs have no test split). A test an eval job
  recorded on a run's final checkpoint (WORKDIR/evaluations.jsonl: 10-crop, multi-scale,
  a larger crop) counts for the rows of that test. `attrs["ordering"]`
  says per table whether the
  paper's ordering of its rows holds in ours; `attrs["text"]` is the printed
  Markdown (printed when `verbose`).
  """
  module, arg = _paper_source(path, source)
  rows = papers.rows_of(module)
  base = module.get_config(arg) if arg else module.get_config()
  budget = float(base.num_steps if base.num_steps else base.num_epochs)
  unit = "steps" if base.num_steps else "epochs"
  runs = load(path)
  overrides = {d: workdir_lib.read_variant(d).get("overrides")
               for d in runs.get("path", [])}
  settings = {d: _settings(base, d, ov) for d, ov in overrides.items()}
  runs, real = _with_evaluations(runs, settings)
  out, left_out = [], {}
  for row in rows:
    mine = runs[[row.matches(settings[d]) for d in runs["path"]]] if len(runs) else runs
    synthetic = [settings[d].get("data.source") == "synthetic" for d in mine["path"]] \
        if len(mine) else []
    mine = mine[[not x for x in synthetic]] if len(mine) else mine   # random images
    other = {d: papers.data_mismatch(row.table.data, _trained_on(real[d]))
             for d in mine["path"]} if len(mine) else {}
    left_out.update({real[d]: f"{w}, not {row.table.data}" for d, w in other.items() if w})
    mine = mine[[other[d] is None for d in mine["path"]]] if len(mine) else mine
    done = mine[mine.status == "finished"]
    col = row.table.column
    vals = 100 * done[col].to_numpy(float) if len(done) and col in done else np.array([])
    vals = vals[np.isfinite(vals)]
    dev = _validation_column(col)
    dev_vals = 100 * done[dev].to_numpy(float) if dev and len(done) and dev in done \
        else np.array([])
    dev_vals = dev_vals[np.isfinite(dev_vals)]
    trained = done[unit].to_numpy(float) if len(done) else np.array([])
    full = len(trained) and bool(np.all(trained >= budget * (1 - 1e-6)))
    if not len(vals):
      why = next((w for w in other.values() if w), None)
      label = ("no test split (validation beside)" if len(dev_vals) else
               "no finished run" if len(mine) else
               "no run on real data (synthetic data is not compared)" if any(synthetic)
               else f"no run on the paper's data ({why})" if why else "no run")
    elif full:
      label = "full"
    else:
      label = f"shortened ({_fmt(float(np.min(trained)))} of {_fmt(budget)} {unit})"
    label += _not_yet_in(mine)
    ours = float(vals.mean()) if len(vals) else np.nan
    paper = row.value
    labels = sorted({x for x in done["data"] if isinstance(x, str)}) \
        if len(done) and "data" in done else []
    out.append({"table": row.table.key, "row": row.label, "metric": row.table.metric,
                "data": ", ".join(labels),
                "paper": paper, "ours": ours,
                "std": float(vals.std(ddof=1)) if len(vals) > 1 else np.nan,
                "n": len(vals), "epochs": float(np.mean(trained)) if len(trained) else np.nan,
                "validation": float(dev_vals.mean()) if len(dev_vals) else np.nan,
                "budget": label,
                "diff": ours - paper if full and paper != papers.FAIL else np.nan})
  df = pd.DataFrame(out, columns=["table", "row", "metric", "data", "paper", "ours", "std", "n",
                                  "epochs", "validation", "budget", "diff"])
  if len(df):    # only the tables that some run reproduces (on test, else on validation)
    seen = df["n"] + df["validation"].notna()
    df = df[seen.groupby(df["table"]).transform("sum") > 0].reset_index(drop=True)
  tables = {r.table.key: r.table for r in rows}
  df.attrs["ordering"] = {key: _ordering(tables[key], df[df.table == key])
                          for key in dict.fromkeys(df["table"])}
  df.attrs["text"] = comparison_table(df, module, arg)
  if left_out:
    df.attrs["text"] += "\n\nNot compared (trained on other data than the paper's): " + \
        "; ".join(f"{os.path.basename(os.path.normpath(d))} ({w})"
                  for d, w in sorted(left_out.items())) + "\n"
  if verbose:
    print(df.attrs["text"])
  return df


def _not_yet_in(runs) -> str:
  """'; not yet in: 2 running, 1 queued' for the runs of a row a sweep has not finished
  (a comparison made while it runs); '' when none."""
  if not len(runs):
    return ""
  counts = runs[runs.status != "finished"].status.value_counts()
  counts = counts.drop(labels=["failed"], errors="ignore")
  return ("; not yet in: " + ", ".join(f"{n} {s}" for s, n in counts.items())) \
      if len(counts) else ""


def _validation_column(column: str):
  """The validation counterpart of a test metric column (None if it is one)."""
  if column == "test_error_at_best_validation":
    return "best_validation_error"
  return column.replace("_test_", "_validation_") if "_test_" in column else None


def _ordering(table, rows: pd.DataFrame) -> dict:
  """Does every pair of rows the paper orders come out in the same order in ours?"""
  have = rows[rows.n > 0]
  pairs, violated = 0, []
  for _, a in have.iterrows():
    for _, b in have.iterrows():
      if papers.better(table, a.paper, b.paper):
        pairs += 1
        if not papers.better(table, a.ours, b.ours):
          violated.append((a.row, b.row))
  shortened = bool((have.budget != "full").any())
  return {"holds": pairs > 0 and not violated, "pairs": pairs, "violated": violated,
          "shortened": shortened}


def comparison_table(df: pd.DataFrame, module=None, arg: str = "") -> str:
  """The Markdown of `compare`: a table per paper table, its citation and ordering."""
  name = os.path.basename(getattr(module, "__file__", "") or "") + (f":{arg}" if arg else "")
  if not len(df):
    reason = getattr(module, "PAPER_UNREPORTED", "") if module is not None else ""
    why = f": {reason}" if reason else ""
    return f"No paper rows match these runs ({name or 'no config'}){why}.\n"
  num = lambda v, p=2: "–" if v != v else f"{v:.{p}f}"
  lines = []
  for key in dict.fromkeys(df["table"]):
    part = df[df.table == key]
    table = next(r.table for r in papers.rows_of(module) if r.table.key == key) if module \
        else None
    lines.append(f"### {key}\n")
    if table is not None:
      lines.append(f"{table.citation}" + (f" ({table.note})" if table.note else "") + "\n")
    ours_on = sorted({x for x in part.get("data", []) if x})
    if ours_on:
      lines.append(f"Ours trained on {', '.join(ours_on)}.\n")
    dev = bool((part["validation"].notna() & (part["n"] == 0)).any()) \
        if "validation" in part else False
    body = [[r.row, r.paper if r.paper == papers.FAIL else num(r.paper),
             num(r.ours) + ("" if r.std != r.std else f" ± {num(r.std)}"), str(r.n),
             num(r.epochs, 0), num(r.diff) if r.diff == r.diff else "–", r.budget]
            + ([num(r.validation)] if dev else []) for r in part.itertuples()]
    head = ["row", "paper", "ours", "seeds", "epochs", "diff", "budget"]
    align = ["---"] + ["--:"] * 5 + ["---"]
    if dev:   # not the paper's split: its own column, never in "ours"
      head, align = head + ["ours on validation (not the paper's split)"], align + ["--:"]
    lines.append(_markdown(head, body, align))
    o = df.attrs.get("ordering", {}).get(key) or _ordering(table, part)
    where = " (on shortened runs: not the paper's budget)" if o["shortened"] else ""
    if not o["pairs"]:
      lines.append("Ordering: fewer than two rows to compare.\n")
    elif o["holds"]:
      lines.append(f"Ordering: the paper's ordering holds in ours ({o['pairs']} of "
                   f"{o['pairs']} pairs){where}.\n")
    else:
      bad = "; ".join(f"{a} better than {b}" for a, b in o["violated"])
      lines.append(f"Ordering: does not hold in {len(o['violated'])} of {o['pairs']} pairs"
                   f"{where}: the paper has {bad}.\n")
  return "\n".join(lines)


# ----------------------------------------------------------------------------- report

def report(path: str, out_dir: Optional[str] = None, metric: Optional[str] = None) -> dict:
  """Writes OUT_DIR (default: the sweep directory) /results.md (the table and the
  diagnostics), results.csv (one row per run), curves.png and, for every swept field
  but the seed, <metric>_vs_<field>.png. Returns {name: file path}."""
  out_dir = out_dir or (path if isinstance(path, (str, os.PathLike)) else ".")
  os.makedirs(out_dir, exist_ok=True)
  runs, curve_df = load(path, curves=True)
  files = {}
  md = [f"# Results: {path}\n", table(runs, metrics=[metric] if metric else None),
        "\n## Diagnostics\n", diagnostics_table(runs)]
  files["results.md"] = os.path.join(out_dir, "results.md")
  _write("\n".join(md), files["results.md"])
  files["results.csv"] = os.path.join(out_dir, "results.csv")
  runs.to_csv(files["results.csv"], index=False)
  if len(curve_df):
    files["curves.png"] = os.path.join(out_dir, "curves.png")
    plot_curves(curve_df, path=files["curves.png"])
  done = runs[runs.status == "finished"] if len(runs) else runs
  for field in _group_fields(runs, None):
    if len(done) and done[field].nunique() > 1:
      m = metric or next((c for c in ("final_test_error", "final_validation_error")
                          if c in done.columns and done[c].notna().any()), None)
      if m is None:
        continue
      name = f"{m.replace('final_', '')}_vs_{field}.png".replace("/", "_")
      files[name] = os.path.join(out_dir, name)
      plot_vs_field(runs, field, metric=m, path=files[name])
  return files


def main(argv=None):
  import matplotlib
  matplotlib.use("Agg")
  p = argparse.ArgumentParser(description="Tables, figures and diagnostics of a sweep.")
  p.add_argument("path", help="a sweep directory (or one run)")
  p.add_argument("--out", default=None, help="where to write (default: the directory)")
  p.add_argument("--metric", default=None, help="e.g. final_validation_error")
  p.add_argument("--paper", nargs="?", const="", default=None, metavar="FILE.py[:ARG]",
                 help="print the paper's values beside ours (the sweep's config file, or this)")
  args = p.parse_args(argv)
  if not os.path.isdir(args.path):
    raise SystemExit(f"error: {args.path} is not a directory of runs (a sweep's --workdir "
                     "or one run's)")
  try:
    if args.paper is not None:
      compare(args.path, args.paper or None)
      return
    runs = load(args.path)
    if not len(runs):
      raise SystemExit(f"error: no runs in {args.path} (no metrics.jsonl, summary.json or "
                       "variant.json below it)")
    if args.metric and args.metric not in runs.columns:
      metrics = [c for c in runs.columns if c.startswith(("final_", "best_"))]
      raise SystemExit(f"error: --metric={args.metric} is not a column; use one of "
                       f"{', '.join(metrics)}")
    files = report(args.path, args.out, args.metric)
  except (ValueError, FileNotFoundError, ImportError) as e:   # --paper's config file
    raise SystemExit(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
  with open(files["results.md"]) as f:
    print(f.read())
  print("wrote " + ", ".join(files.values()))


if __name__ == "__main__":
  main()
