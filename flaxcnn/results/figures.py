"""Figures of runs (matplotlib, imported when drawing): learning curves per setting,
a final metric against a swept field, mean curves and final values per arm."""
import math
import os
from typing import Optional, Sequence

import numpy as np

from flaxcnn.results.curve import metric_column
from flaxcnn.results.runs import curves
from flaxcnn.results.tables import fmt, group_fields, groups, headline, is_fraction, label


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
  return ", ".join(f"{k}={fmt(v)}" for k, v in key.items()) or "all runs"


def _curve_panel(ax, key, group, metric, splits, scale, several: bool):
  """One setting's runs: train dashed, the other splits solid, a colour per run."""
  for j, run in enumerate(dict.fromkeys(group["run"])):
    rc = group[group.run == run]
    name = f"seed={fmt(rc['seed'].iloc[0])}" if "seed" in rc and several else run
    for split in splits:
      s = rc[rc.split == split]
      if not len(s):
        continue
      ax.plot(s["epoch"], s[metric] * scale, color=f"C{j % 10}",
              linestyle="--" if split == "train" else "-",
              marker="" if split == "train" else ".",
              label=f"{name} {split}")
  ax.set_title(_key_label(key), fontsize=10)
  ax.set_xlabel("epoch")
  ax.set_ylabel(metric + (" (%)" if scale == 100.0 else ""))
  ax.grid(alpha=0.3)
  if len(group):
    ax.legend(fontsize=7)


def plot_curves(curve_df, metric: Optional[str] = None, by=None,
                splits=("train", "validation"), path: Optional[str] = None):
  """Train (dashed) and dev (solid) curves against epochs, one panel per setting of
  the swept fields (`by`, default all but the seed), one color per run (seed).
  `metric` default: error, or the task's metric where it is not accuracy (e.g.
  mean_iou, which only the evaluations have).

  `curve_df` is `load(..., curves=True)[1]` or a directory. Returns the matplotlib
  Figure (shown inline in notebooks); written to `path` when given.
  """
  if isinstance(curve_df, (str, os.PathLike)):
    curve_df = curves(curve_df)
  if metric is None:
    metric = curve_df.attrs.get("metric", "accuracy")
    metric = metric_column(metric)
  by = group_fields(curve_df, by)
  panels = groups(curve_df, by) if len(curve_df) else [({}, curve_df)]
  ncols = min(len(panels), 3)
  fig, axes = _figure(int(math.ceil(len(panels) / ncols)), ncols)
  scale = 100.0 if is_fraction(metric) else 1.0
  for ax in axes.flat[len(panels):]:
    ax.set_visible(False)
  for ax, (key, group) in zip(axes.flat, panels):
    _curve_panel(ax, key, group, metric, splits, scale, len(panels) > 1)
  fig.suptitle(f"train (dashed) and {' / '.join(s for s in splits if s != 'train')} "
               f"(solid) {metric}", fontsize=11)
  _save(fig, path)
  return fig


def _column(df, field: str) -> str:
  """The column of a swept field, given as its column or its dotted name."""
  if field in df.columns:
    return field
  inv = {v: k for k, v in df.attrs.get("fields", {}).items()}
  if field in inv:
    return inv[field]
  raise KeyError(f"results: no column {field!r}; swept: {df.attrs.get('swept')}")


def _x_positions(values):
  """(the values, sorted when numeric; {value: x}; numeric?)."""
  numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                for v in values)
  if numeric:
    values = sorted(values)
  return values, {v: (float(v) if numeric else i) for i, v in enumerate(values)}, numeric


def _field_line(ax, j, key, group, field, metric, values, pos, scale, labelled: bool):
  """One setting of the other fields: each run a dot, mean ± std over the seeds."""
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
              label=_key_label(key) if labelled else "mean ± std over seeds")


def plot_vs_field(df, field: str, metric: Optional[str] = None, by=None,
                  path: Optional[str] = None):
  """`metric` (default: final test error, else validation; the task's metric where
  it is not accuracy) against a swept field: mean ± std over the seeds as error bars,
  the single runs as dots; one line per setting of the other swept fields (`by`).
  Returns the Figure; written to `path`."""
  field = _column(df, field)
  if metric is None:
    metric = (headline(df) + headline(df, ("train",)))[0]
  done = df[df.status == "finished"]
  by = group_fields(df, by, exclude=("seed", field))
  scale = 100.0 if is_fraction(metric) else 1.0
  values, pos, numeric = _x_positions(list(dict.fromkeys(done[field])))
  fig, axes = _figure()
  ax = axes[0, 0]
  for j, (key, group) in enumerate(groups(done, by)):
    _field_line(ax, j, key, group, field, metric, values, pos, scale, bool(by))
  if numeric and values and min(values) > 0 and max(values) / min(values) >= 8:
    from matplotlib.ticker import NullLocator
    ax.set_xscale("log", base=2)
    ax.xaxis.set_minor_locator(NullLocator())   # only the swept values are ticks
  ax.set_xticks([pos[v] for v in values])
  ax.set_xticklabels([fmt(v) for v in values])
  ax.set_xlabel(field.replace("_", " "))
  ax.set_ylabel(label(metric, scale == 100.0))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title(f"{label(metric, False)} vs {field}", fontsize=11)
  _save(fig, path)
  return fig


def _arm_curves(ax, arm, color, name, metric, x, splits, scale):
  """One arm: each seed thin, the mean over the seeds thick (where all have a point)."""
  for split in splits:
    s = arm[arm.split == split]
    if not len(s):
      continue
    style = "--" if split == "train" else "-"
    for _, run in s.groupby("seed"):
      run = run.sort_values(x)
      ax.plot(run[x], run[metric] * scale, style, color=color, lw=0.7, alpha=0.45)
    mean = s.groupby(x)[metric].agg(["mean", "count"])
    mean = mean[mean["count"] == s["seed"].nunique()]
    ax.plot(mean.index, mean["mean"] * scale, style, color=color, lw=2.2,
            label=f"{name} {split} (mean of {s['seed'].nunique()})")


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
  scale = 100.0 if is_fraction(metric) else 1.0
  fig, axes = _figure(1, len(panels), width=6.5 if len(panels) == 1 else 4.5, height=3.6)
  for ax, members in zip(axes.flat, panels):
    for v in members:
      _arm_curves(ax, curve_df[curve_df[group] == v], colors[v], labels.get(v, v), metric,
                  x, splits, scale)
      if v in paper:
        ax.axhline(paper[v] * scale, color=colors[v], ls=":", lw=1.2,
                   label=f"{labels.get(v, v)}: {paper_label}")
    ax.set_xlabel({"step": "training step", "epoch": "epoch"}.get(x, x))
    ax.set_ylabel(label(metric, scale == 100.0))
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
    scale = 100.0 if is_fraction(metric) else 1.0
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
    ax.set_ylabel(label(metric, scale == 100.0))
    ax.grid(alpha=0.3, axis="y")
  if title:
    fig.suptitle(title, fontsize=11)
  _save(fig, path)
  return fig
