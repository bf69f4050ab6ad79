"""Markdown tables of runs: the papers' mean ± std over seeds per setting, and the
diagnostics of each run; with the formatting the figures share."""
import os
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from flaxcnn.results.curve import metric_column


def group_fields(df: pd.DataFrame, by, exclude=("seed",)) -> List[str]:
  """`by` as a list, by default the swept fields but `exclude`."""
  if by is not None:
    return [by] if isinstance(by, str) else list(by)
  swept = df.attrs.get("swept")
  if swept is None:
    swept = []
  return [c for c in swept if c in df.columns and c not in exclude]


def groups(df: pd.DataFrame, by: List[str]):
  """[(label dict, sub-DataFrame)] in order of first appearance."""
  if not by:
    return [({}, df)]
  keys = df[by].astype(object).where(df[by].notna(), None)
  order, members = [], {}
  for i, key in zip(df.index, map(tuple, keys.to_numpy())):
    if key not in members:
      order.append(key)
      members[key] = []
    members[key].append(i)
  return [(dict(zip(by, k)), df.loc[members[k]]) for k in order]


def headline(df: pd.DataFrame, splits=("test", "validation")) -> List[str]:
  """The final columns of the runs' task metric on `splits` that have values: the
  error where the metric is accuracy, else the metric (e.g. final_test_mean_iou)."""
  metric = df.attrs.get("metric", "accuracy")
  columns = [f"final_{split}_{metric_column(metric)}" for split in splits]
  return [m for m in columns if m in df.columns and df[m].notna().any()]


def is_fraction(metric: str) -> bool:
  """Whether a metric is a fraction shown in % (errors, accuracies, IoU)."""
  return any(w in metric for w in ("error", "accuracy", "top5", "iou"))


def kinds(df: pd.DataFrame) -> List[str]:
  """The error kinds of the runs in `df` (their error_kind: 'top-1', 'pixel'), in
  order of appearance."""
  if "error_kind" not in df:
    return []
  return list(dict.fromkeys(k for k in df["error_kind"] if isinstance(k, str)))


def of_a_kind(metric: str) -> bool:
  """Whether a metric counts what the run's error kind says (its errors and
  accuracies); the task's other metrics (e.g. mean_iou) are of no kind."""
  return "error" in metric or "accuracy" in metric


def label(metric: str, percent: bool, kind: Optional[str] = None) -> str:
  """A metric's column: 'test error (%)'; of one error kind: 'test pixel error (%)'."""
  text = metric.replace("final_", "").replace("_", " ")
  if kind:
    text = text.replace("error", f"{kind} error").replace("accuracy", f"{kind} accuracy")
  if percent and is_fraction(metric):
    text += " (%)"
  return text


def metric_columns(df: pd.DataFrame, metrics: Sequence[str]) -> List[tuple]:
  """[(metric, error kind or None)]: a column per metric, and per kind for the errors
  and accuracies when the runs count several (top-1 beside a U-Net's pixels), so no
  column mixes them; a kind other than top-1 is always named."""
  found = kinds(df)
  named = found[0] if len(found) == 1 and found[0] != "top-1" else None
  columns = []
  for m in metrics:
    if not of_a_kind(m):
      columns.append((m, None))
    else:
      columns += [(m, k) for k in found] if len(found) > 1 else [(m, named)]
  return columns


def fmt(value) -> str:
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


def markdown(header: List[str], rows: List[List[str]], align: Optional[List[str]] = None):
  esc = lambda s: str(s).replace("|", "\\|")
  align = align or ["---"] * len(header)
  lines = ["| " + " | ".join(esc(h) for h in header) + " |",
           "|" + "|".join(align) + "|"]
  lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
  return "\n".join(lines) + "\n"


def write(text: str, path: Optional[str]) -> None:
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
      f.write(text)


def _runs_cell(group: pd.DataFrame, done: pd.DataFrame, include_unfinished: bool) -> str:
  """The number of runs averaged, with the failed and unfinished ones left out, and
  the runs left over from a changed sweep axis noted."""
  text = str(len(done))
  failed = int((group.status == "failed").sum())
  others = len(group) - len(done) - failed
  left = int((~group["in_sweep"].astype(bool)).sum()) if "in_sweep" in group else 0
  notes = ([f"{failed} failed"] if failed else []) + \
      ([f"{others} unfinished"] if others and not include_unfinished else []) + \
      ([f"{left} not in the sweep"] if left else [])
  return text + (f" ({', '.join(notes)})" if notes else "")


def _cell(done: pd.DataFrame, metric: str, kind: Optional[str], scale: float,
          precision: int) -> str:
  """A column's mean ± std over the runs `done` (of its error `kind` when given)."""
  if metric not in done:
    return "–"
  if kind is not None:
    done = done[done.error_kind == kind]
  return _mean_std(done[metric].to_numpy(float), scale, precision)


def _cores_note(df: pd.DataFrame) -> str:
  cores = sorted({int(c) for c in df.get("cores", pd.Series([], dtype=float)).dropna()})
  if len(cores) < 2:
    return ""
  # on a CPU the float sums, so the numbers, follow the core count
  return (f"\nThe runs were trained on different numbers of CPU cores ({', '.join(map(str, cores))}"
          "; the cores column of results.load): their numbers differ by that too.\n")


def table(df: pd.DataFrame, metrics: Optional[Sequence[str]] = None, by=None,
          percent: bool = True, precision: int = 2, include_unfinished: bool = False,
          path: Optional[str] = None) -> str:
  """A Markdown table in the shape of the papers' tables: one row per setting of the
  swept fields (`by`, default every swept field but the seed), each metric as
  mean ± std (sample std) over the seeds of its finished runs, and the number of runs.

  `metrics` default: final test and final validation error (those present), or the
  task's metric where it is not accuracy (segmentation: final_test_mean_iou, ...).
  Errors and accuracies get a column per error kind when the runs count several
  (top-1, a U-Net's pixels), headed by the kind.
  Written to `path` when given.
  """
  by = group_fields(df, by)
  metrics = headline(df) if metrics is None else metrics
  metrics = [metrics] if isinstance(metrics, str) else list(metrics)
  columns = metric_columns(df, metrics)
  header = list(by) + [label(m, percent, k) for m, k in columns] + ["runs"]
  scale = {m: 100.0 if percent and is_fraction(m) else 1.0 for m in metrics}
  rows = []
  for key, group in groups(df, by):
    done = group if include_unfinished else group[group.status == "finished"]
    cells = [fmt(key[b]) for b in by]
    cells += [_cell(done, m, k, scale[m], precision) for m, k in columns]
    rows.append(cells + [_runs_cell(group, done, include_unfinished)])
  text = markdown(header, rows, ["---"] * len(by) + ["--:"] * (len(header) - len(by)))
  text += _cores_note(df)
  write(text, path)
  return text


def diagnostics_table(df: pd.DataFrame, path: Optional[str] = None) -> str:
  """A Markdown table of each run's train/dev errors, gap, best dev epoch, flags, advice
  (the dev column in the task's metric where that is not accuracy); one table per
  error kind (top-1, pixel) when the runs have several."""
  metric = df.attrs.get("metric", "accuracy")
  found = kinds(df)
  if len(found) > 1:   # the runs of no kind yet (pending) go with the first
    unknown = df.error_kind.isna()
    parts = [df[(df.error_kind == k) | (unknown & (i == 0))] for i, k in enumerate(found)]
    text = "\n".join(_diagnostics(part, k, metric) for part, k in zip(parts, found))
  else:
    text = _diagnostics(df, found[0] if found and found[0] != "top-1" else None, metric)
  write(text, path)
  return text


def _diagnostics(df: pd.DataFrame, kind: Optional[str], metric: str) -> str:
  """The diagnostics table of runs of one error `kind` (named when given)."""
  splits = {r for r in df.get("dev_split", pd.Series([], dtype=object)) if isinstance(r, str)}
  dev_name = splits.pop() if len(splits) == 1 else "dev (validation, else test)"
  error = f"{kind} error" if kind else "error"
  dev_column = metric_column(metric)
  dev_label = error if metric == "accuracy" else metric
  header = ["run", "status", "epochs", f"train {error} (%)", f"{dev_name} {dev_label} (%)",
            "gap (points)", f"{dev_name} best epoch", "underfit", "overfit", "advice"]
  return markdown(header, [_diagnostics_row(r, dev_column) for _, r in df.iterrows()])


def _diagnostics_row(r: pd.Series, dev_column: str) -> List[str]:
  """A run's diagnostics; `dev_column`: its final dev column's last part ('error')."""
  flag = lambda v: "–" if v is None or v != v else ("yes" if v else "no")
  pct = lambda v: "–" if v != v else f"{100 * v:.2f}"
  dev = r.get("dev_split") or "validation"
  note = r.get("advice") or ""
  if r.get("status") == "failed":
    note = f"failed: {r.get('error')}"
  status = r["status"] + (" (not in the sweep)" if not r.get("in_sweep", True) else "")
  return [r["run"], status, fmt(float(r.get("epochs", np.nan))),
          pct(r.get("final_train_error", np.nan)),
          pct(r.get(f"final_{dev}_{dev_column}", np.nan)),
          pct(r.get("train_dev_gap", np.nan)), fmt(r.get("dev_best_epoch", np.nan)),
          flag(r.get("underfit")), flag(r.get("overfit")), note]
