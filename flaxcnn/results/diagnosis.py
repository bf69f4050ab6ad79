"""The lecture's tuning diagnosis of one run's curve: is it underfit, overfit, or
stopped where its dev performance stopped improving?"""
import dataclasses
import math

import numpy as np

from flaxcnn.results.curve import EVAL_SPLITS, epoch_curve, metric_column


@dataclasses.dataclass
class _Series:
  """One split of a curve, in epoch order; `error` is 1 - the task's metric."""
  epoch: np.ndarray
  error: np.ndarray
  loss: np.ndarray
  count: np.ndarray

  def __len__(self):
    return len(self.epoch)

  def index_at(self, epoch) -> int:
    """Index of the last point at or before `epoch` (the first if none)."""
    idx = np.nonzero(self.epoch <= epoch + 1e-9)[0]
    return int(idx[-1]) if len(idx) else 0


def _series(curve, split, metric: str) -> _Series:
  part = curve[curve.split == split].sort_values("epoch")
  if metric == "accuracy":
    error = part["error"].to_numpy(float)
  elif metric in part:
    error = 1.0 - part[metric].to_numpy(float)
  else:
    error = np.full(len(part), np.nan)
  count = part["count"].to_numpy(float) if "count" in part else np.full(len(part), np.nan)
  return _Series(part["epoch"].to_numpy(float), error, part["loss"].to_numpy(float), count)


def _shown(metric: str, error: float) -> str:
  """An error in %, shown as the task's metric where that is not accuracy."""
  return f"{100 * error:.2f}%" if metric == "accuracy" else f"{100 * (1 - error):.2f}%"


def _underfit(train: _Series, window: float, tol: float, metric: str):
  """(flag, advice): did the train error still fall over the last `window` of
  training (the loss, relatively, where the split has no error)?"""
  if len(train) < 2:
    return None, None
  start = train.index_at(train.epoch[-1] - max(1.0, window * train.epoch[-1]))
  if start == len(train) - 1:
    start -= 1
  if np.isfinite(train.error[start]) and np.isfinite(train.error[-1]):
    flag = bool(train.error[start] - train.error[-1] > tol)
    trend = "error still falling" if metric == "accuracy" else f"{metric} still rising"
    before, after = _shown(metric, train.error[start]), _shown(metric, train.error[-1])
  else:      # no accuracy (e.g. a loss-only run, or no train mean IoU): the loss
    drop = (train.loss[start] - train.loss[-1]) / max(abs(train.loss[start]), 1e-12)
    flag = bool(drop > 10 * tol)
    trend, before, after = "loss still falling", f"{train.loss[start]:.4f}", \
        f"{train.loss[-1]:.4f}"
  if not flag:
    return flag, None
  return flag, (f"underfit: train {trend} at the end ({before} at epoch "
                f"{train.epoch[start]:.4g} -> {after} at {train.epoch[-1]:.4g}): "
                "train longer or add capacity")


def _tolerance(dev: _Series, best: int, tol: float) -> float:
  """`tol`, or the standard error of the best dev error on `count` examples."""
  n = dev.count[best]
  if np.isfinite(n) and n > 0:
    p = min(max(dev.error[best], 1.0 / n), 1.0 - 1.0 / n)
    tol = max(tol, math.sqrt(p * (1.0 - p) / n))
  return tol


def _overfit(train: _Series, dev: _Series, best: int, tol: float, loss_tol: float,
             underfit_tol: float):
  """(flag, reference epoch, index of the dev loss minimum or None): dev got worse
  (its error beyond `tol` above its best, else its loss beyond `loss_tol` above its
  minimum) while train kept improving after that point."""
  last = len(dev) - 1
  worse_err = dev.error[last] - dev.error[best] > tol
  lbest = int(np.nanargmin(dev.loss)) if np.isfinite(dev.loss).any() else last
  worse_loss = lbest < last and dev.loss[last] > dev.loss[lbest] * (1 + loss_tol)
  if not (worse_err or worse_loss) or not len(train):
    return False, None, None
  ref_epoch = dev.epoch[best] if worse_err else dev.epoch[lbest]
  ref = train.index_at(ref_epoch)
  improved = train.loss[ref] - train.loss[-1] > 0.01 * abs(train.loss[ref]) or \
      train.error[ref] - train.error[-1] > underfit_tol
  return bool(improved), ref_epoch, None if worse_err else lbest


def _overfit_advice(out: dict, dev: _Series, best: int, ref_epoch, lbest, metric) -> str:
  last = len(dev) - 1
  if lbest is None:
    what = f"{metric_column(metric)} {_shown(metric, dev.error[best])} -> " \
        f"{_shown(metric, dev.error[last])}"
  else:
    what = f"loss {dev.loss[lbest]:.4f} -> {dev.loss[last]:.4f}"
  gap = out["train_dev_gap"]
  gap_text = f" (gap {100 * gap:.2f} points)" if gap == gap else ""
  return (f"overfit: {out['dev_split']} {what} after epoch {ref_epoch:.4g} while train "
          f"kept improving{gap_text}: regularize more or stop near epoch {ref_epoch:.4g}")


def _dev_checks(out: dict, train: _Series, dev: _Series, overfit_tol: float,
                loss_tol: float, underfit_tol: float, metric: str) -> list:
  """Sets dev_best_epoch, dev_still_improving and overfit in `out`; their advice."""
  if not len(dev) or not np.isfinite(dev.error).any():
    return []
  best = int(np.nanargmin(dev.error))
  out["dev_best_epoch"] = float(dev.epoch[best])
  if len(dev) < 2:
    return []
  last, split = len(dev) - 1, out["dev_split"]
  tol = _tolerance(dev, best, overfit_tol)
  out["dev_still_improving"] = bool(best == last and dev.error[last] < dev.error[last - 1] - tol)
  out["overfit"], ref_epoch, lbest = _overfit(train, dev, best, tol, loss_tol, underfit_tol)
  advice = []
  if out["overfit"]:
    advice.append(_overfit_advice(out, dev, best, ref_epoch, lbest, metric))
  if out["dev_still_improving"]:
    advice.append(f"{split} {metric_column(metric)} still improving at the end: train longer")
  return advice


def _closing_advice(out: dict, dev: _Series, metric: str) -> str:
  """What to say when nothing is wrong: where the dev performance stopped improving."""
  split, name = out["dev_split"], metric_column(metric)
  if len(dev) and out["dev_best_epoch"] < dev.epoch[-1]:
    return f"ok: {split} {name} stopped improving at epoch {out['dev_best_epoch']:.4g}"
  return (f"{split} {name} best at the end (within noise of the previous evaluation)"
          if len(dev) > 1 else f"one {split} evaluation only")


def diagnose(curve, window: float = 0.1, underfit_tol: float = 0.005,
             overfit_tol: float = 0.005, loss_tol: float = 0.1,
             metric: str = "accuracy") -> dict:
  """The lecture's checks on one run's per-epoch curve (a `load(..., curves=True)[1]`
  slice, or a run's metrics.jsonl records). Errors are 1 - the task's `metric`
  (accuracy; segmentation's mean_iou), as fractions.

  - train_dev_gap: final dev error - final train error (NaN where the train lines
    lack the metric);
  - dev_best_epoch: where dev performance stopped improving (its best error, first
    reached); dev_still_improving: the last evaluation is the best and improved on the
    one before by more than the dev tolerance (train longer);
  - underfit: the train error (else the loss, relatively) still fell by more than
    `underfit_tol` over the last `window` of training (at least one epoch): the model
    is still learning when training ends (train longer, or add capacity);
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
    curve = epoch_curve(curve, metric)
  dev_split = next((s for s in EVAL_SPLITS if (curve.split == s).any()), None)
  train, dev = _series(curve, "train", metric), _series(curve, dev_split, metric)
  out = {"dev_split": dev_split, "train_dev_gap": np.nan, "dev_best_epoch": np.nan,
         "dev_still_improving": None, "underfit": None, "overfit": None, "advice": ""}
  if len(train) and len(dev):
    out["train_dev_gap"] = float(dev.error[-1] - train.error[-1])
  out["underfit"], advice = _underfit(train, window, underfit_tol, metric)
  advice = [advice] if advice else []
  advice += _dev_checks(out, train, dev, overfit_tol, loss_tol, underfit_tol, metric)
  if not advice and out["dev_best_epoch"] == out["dev_best_epoch"]:
    advice.append(_closing_advice(out, dev, metric))
  out["advice"] = "; ".join(advice)
  return out
