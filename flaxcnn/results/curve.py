"""One run's curve: its metrics.jsonl read (the repeated lines of a resume dropped)
and averaged into one point per epoch."""
import json
import math
import os
from typing import Dict, List

import numpy as np
import pandas as pd

from flaxcnn import workdir as workdir_lib

EVAL_SPLITS = ("validation", "test")
_COLUMNS = ["split", "epoch", "step", "loss", "accuracy", "top5", "count", "lr"]


def metric_column(metric: str) -> str:
  """The curve column that ranks a run by the task's `metric`, lowest best where it
  is the error: 'error' (1 - accuracy) for accuracy, else the metric itself (higher
  is better, e.g. mean_iou)."""
  return "error" if metric == "accuracy" else metric


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


def _bounds(train: List[dict], evals) -> np.ndarray:
  """The steps that end a train average: the evaluations, the epochs, the last step."""
  bounds = set(evals)
  if train:
    last = train[-1]
    per_epoch = last["step"] / last["epoch"] if last.get("epoch") else None
    if per_epoch:
      bounds |= {int(round(k * per_epoch))
                 for k in range(1, int(math.ceil(last["epoch"] - 1e-9)) + 1)}
    bounds.add(last["step"])
  return np.array(sorted(bounds))


def _train_points(train: List[dict], bounds: np.ndarray, keys) -> List[dict]:
  """The train lines averaged (weighted by their steps) between consecutive bounds."""
  buckets: Dict[int, list] = {}
  prev = 0
  for r in train:
    weight = max(r["step"] - prev, 1)
    prev = r["step"]
    key = int(bounds[np.searchsorted(bounds, r["step"])]) if r["step"] <= bounds[-1] \
        else r["step"]
    buckets.setdefault(key, []).append((weight, r))
  rows = []
  for _, items in sorted(buckets.items()):
    w = np.array([x[0] for x in items], float)
    row = {"split": "train", "epoch": max(x[1]["epoch"] for x in items),
           "step": max(x[1]["step"] for x in items)}
    for k in keys:
      vals = np.array([x[1].get(k, np.nan) for x in items], float)
      row[k] = float(np.sum(w * vals) / np.sum(w))
    row["lr"] = items[-1][1].get("lr", np.nan)
    rows.append(row)
  return rows


def epoch_curve(records: List[dict], metric: str = "accuracy") -> pd.DataFrame:
  """The curve of one run: train lines averaged (step-weighted) over each epoch, or
  over each interval between evaluations where these are shorter (runs of a fraction
  of an epoch); evaluation lines as they are. Columns split, epoch, step, loss,
  accuracy, top5, count, lr, the task's `metric` when it is not accuracy (e.g.
  mean_iou, on the evaluation lines), and error (1 - accuracy)."""
  columns = _COLUMNS + ([metric] if metric not in _COLUMNS else [])
  train = [r for r in records if r.get("split") == "train"]
  evals = sorted({r["step"] for r in records if r.get("split") != "train"})
  keys = dict.fromkeys(("loss", "accuracy", metric))
  rows = _train_points(train, _bounds(train, evals), keys)
  evaluated = [c for c in columns if c != "lr"]
  rows += [{k: r.get(k, np.nan) for k in evaluated}
           for r in records if r.get("split") != "train"]
  frame = pd.DataFrame(rows, columns=columns)
  frame["error"] = 1.0 - frame["accuracy"]
  return frame.sort_values(["split", "step"], kind="stable").reset_index(drop=True)
