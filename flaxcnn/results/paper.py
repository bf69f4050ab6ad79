"""The paper comparison: the values a config file's PAPER rows report beside ours,
and whether the paper's ordering of its rows holds in our runs."""
import dataclasses
import os

import numpy as np
import pandas as pd

from flaxcnn import config as config_lib
from flaxcnn import papers
from flaxcnn import workdir as workdir_lib
from flaxcnn.metrics import read_jsonl
from flaxcnn.results.curve import EVAL_SPLITS
from flaxcnn.results.runs import final_metrics, load, trained_on
from flaxcnn.results.tables import fmt, markdown

_PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_COLUMNS = ["table", "row", "metric", "data", "paper", "ours", "std", "n", "epochs",
            "validation", "budget", "diff"]


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


def _other_tests(run, own: dict) -> list:
  """[(fields, evaluation)]: the latest recorded test of each other kind on the run's
  final checkpoint (not the training's own final evaluation)."""
  tests = {}
  for ev in read_jsonl(run["path"], workdir_lib.EVALUATIONS):
    if ev.get("step") != run["steps"]:
      continue                                  # an earlier checkpoint
    fields = {"eval_mode": ev.get("eval_mode"), "data.eval_image_size": ev.get("eval_image_size")}
    if ev.get("eval_scales"):
      fields["eval_scales"] = ev["eval_scales"]
    if all(papers.norm(own.get(k)) == papers.norm(v) for k, v in fields.items()):
      continue                                  # the training's own final evaluation
    tests[tuple(sorted(fields.items(), key=str))] = (fields, ev)   # the latest of each
  return list(tests.values())


def _evaluation_row(run, key: str, ev: dict, metric: str):
  """The run's row with the final metrics of a recorded test, and no best ones."""
  new = run.copy()
  new["path"] = key
  cleared = [c for c in new.index if c.startswith(("final_validation_", "final_test_", "best_"))]
  for col in cleared + ["test_error_at_best_validation"]:
    new[col] = np.nan
  for split in EVAL_SPLITS:
    for col, value in final_metrics(split, ev.get(split) or {}, metric).items():
      new[col] = value
  return new


def _with_evaluations(runs: pd.DataFrame, settings: dict):
  """`runs` plus a row for each other test an eval job recorded on a finished run's
  final checkpoint (WORKDIR/evaluations.jsonl: a 10-crop, multi-scale or 320-pixel
  test of a run trained with centre evaluations), its `settings` those of the run
  with that test's fields, its final metrics the recorded ones; and {row path: the
  run's folder}."""
  real = {d: d for d in runs.get("path", [])}
  metric = runs.attrs.get("metric", "accuracy")
  extra = []
  for _, run in (runs[runs.status == "finished"].iterrows() if len(runs) else ()):
    d, own = run["path"], settings[run["path"]]
    for fields, ev in _other_tests(run, own):
      key = f"{d}::eval {','.join(str(v) for v in fields.values() if v is not None)}"
      extra.append(_evaluation_row(run, key, ev, metric))
      settings[key], real[key] = {**own, **fields}, d
  if extra:
    runs = pd.concat([runs, pd.DataFrame(extra)], ignore_index=True)
  return runs, real


@dataclasses.dataclass
class _Budget:
  """The paper's training budget: the base config's steps, else its epochs."""
  length: float
  unit: str

  @classmethod
  def of(cls, base):
    if base.num_steps:
      return cls(float(base.num_steps), "steps")
    return cls(float(base.num_epochs), "epochs")


@dataclasses.dataclass
class _Match:
  """The runs of one paper row: those compared, and why the others are not."""
  runs: pd.DataFrame           # on the paper's data (synthetic and other data left out)
  synthetic: bool              # some matching runs trained on random images
  other: dict                  # {row path: other data it trained on, or None}


def _match(row, runs: pd.DataFrame, settings: dict, real: dict) -> _Match:
  """The runs whose settings match the paper row, on real data of the table's dataset."""
  if not len(runs):
    return _Match(runs, False, {})
  where = lambda df, test: df[np.array([test(d) for d in df["path"]], dtype=bool)]
  mine = where(runs, lambda d: row.matches(settings[d]))
  synthetic = [settings[d].get("data.source") == "synthetic" for d in mine["path"]]
  mine = where(mine, lambda d: settings[d].get("data.source") != "synthetic")  # random images
  other = {d: papers.data_mismatch(row.table.data, trained_on(real[d])) for d in mine["path"]}
  mine = where(mine, lambda d: other[d] is None)
  return _Match(mine, any(synthetic), other)


def _percents(done: pd.DataFrame, column) -> np.ndarray:
  """The finite values of a column of the finished runs, in %."""
  if not column or not len(done) or column not in done:
    return np.array([])
  vals = 100 * done[column].to_numpy(float)
  return vals[np.isfinite(vals)]


def _budget_label(match: _Match, vals, dev_vals, trained, full: bool, budget: _Budget) -> str:
  """'full', 'shortened (E of B epochs)', or why there is no value; and what a running
  sweep has not yet finished."""
  if len(vals):
    label = "full" if full else \
        f"shortened ({fmt(float(np.min(trained)))} of {fmt(budget.length)} {budget.unit})"
  else:
    why = next((w for w in match.other.values() if w), None)
    label = ("no test split (validation beside)" if len(dev_vals) else
             "no finished run" if len(match.runs) else
             "no run on real data (synthetic data is not compared)" if match.synthetic
             else f"no run on the paper's data ({why})" if why else "no run")
  return label + _not_yet_in(match.runs)


def _compare_row(row, match: _Match, budget: _Budget) -> dict:
  """One line of the comparison: the paper's value, ours (mean ± std over seeds)."""
  mine = match.runs
  done = mine[mine.status == "finished"]
  vals = _percents(done, row.table.column)
  dev_vals = _percents(done, _validation_column(row.table.column))
  trained = done[budget.unit].to_numpy(float) if len(done) else np.array([])
  full = len(trained) and bool(np.all(trained >= budget.length * (1 - 1e-6)))
  ours = float(vals.mean()) if len(vals) else np.nan
  labels = sorted({x for x in done["data"] if isinstance(x, str)}) \
      if len(done) and "data" in done else []
  return {"table": row.table.key, "row": row.label, "metric": row.table.metric,
          "data": ", ".join(labels), "paper": row.value, "ours": ours,
          "std": float(vals.std(ddof=1)) if len(vals) > 1 else np.nan,
          "n": len(vals), "epochs": float(np.mean(trained)) if len(trained) else np.nan,
          "validation": float(dev_vals.mean()) if len(dev_vals) else np.nan,
          "budget": _budget_label(match, vals, dev_vals, trained, full, budget),
          "diff": ours - row.value if full and row.value != papers.FAIL else np.nan}


def _runs_and_settings(path, base):
  """The runs under `path` with the tests recorded on them, each row's config fields,
  and {row path: the run's folder}."""
  runs = load(path)
  overrides = {d: workdir_lib.read_variant(d).get("overrides")
               for d in runs.get("path", [])}
  settings = {d: _settings(base, d, ov) for d, ov in overrides.items()}
  runs, real = _with_evaluations(runs, settings)
  return runs, settings, real


def _comparison_frame(out: list, rows) -> pd.DataFrame:
  """The lines of the tables some run reproduces (on test, else on validation), and
  attrs["ordering"] per table."""
  df = pd.DataFrame(out, columns=_COLUMNS)
  if len(df):
    seen = df["n"] + df["validation"].notna()
    df = df[seen.groupby(df["table"]).transform("sum") > 0].reset_index(drop=True)
  tables = {r.table.key: r.table for r in rows}
  df.attrs["ordering"] = {key: _ordering(tables[key], df[df.table == key])
                          for key in dict.fromkeys(df["table"])}
  return df


def _left_out_note(left_out: dict) -> str:
  if not left_out:
    return ""
  return "\n\nNot compared (trained on other data than the paper's): " + \
      "; ".join(f"{os.path.basename(os.path.normpath(d))} ({w})"
                for d, w in sorted(left_out.items())) + "\n"


def compare(path, source=None, verbose: bool = True) -> pd.DataFrame:
  """The paper's reported values beside ours, one row per paper row (in the paper's
  order) that the runs under `path` reproduce (runs on `data.source='synthetic'`,
  random images, are never compared, nor runs whose data.json says they trained on
  other data than the table's dataset: a digits run keeps the label 'cifar10').

  The paper rows are the PAPER list of the sweep's config file (its sweep.json, or
  `source`, 'experiments/FILE.py[:ARG]'). Columns: table, row, metric, data (what
  our runs trained on, as labelled), paper, ours (mean over the finished runs, in %),
  std, n (seeds), epochs (trained), budget ('full' or 'shortened (E of B epochs)'),
  diff (ours - paper, points; only for runs at the paper's full budget), validation
  (the same metric on the validation split, shown in its own column when the runs
  have no test split). A test an eval job recorded on a run's final checkpoint
  (WORKDIR/evaluations.jsonl: 10-crop, multi-scale, a larger crop) counts for the rows
  of that test. `attrs["ordering"]` says per table whether the paper's ordering of
  its rows holds in ours; `attrs["text"]` is the printed Markdown (printed when
  `verbose`).
  """
  module, arg = _paper_source(path, source)
  rows = papers.rows_of(module)
  base = module.get_config(arg) if arg else module.get_config()
  budget = _Budget.of(base)
  runs, settings, real = _runs_and_settings(path, base)
  out, left_out = [], {}
  for row in rows:
    match = _match(row, runs, settings, real)
    left_out.update({real[d]: f"{w}, not {row.table.data}"
                     for d, w in match.other.items() if w})
    out.append(_compare_row(row, match, budget))
  df = _comparison_frame(out, rows)
  df.attrs["text"] = comparison_table(df, module, arg) + _left_out_note(left_out)
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


def _ordering_line(o: dict) -> str:
  where = " (on shortened runs: not the paper's budget)" if o["shortened"] else ""
  if not o["pairs"]:
    return "Ordering: fewer than two rows to compare.\n"
  if o["holds"]:
    return (f"Ordering: the paper's ordering holds in ours ({o['pairs']} of "
            f"{o['pairs']} pairs){where}.\n")
  bad = "; ".join(f"{a} better than {b}" for a, b in o["violated"])
  return (f"Ordering: does not hold in {len(o['violated'])} of {o['pairs']} pairs"
          f"{where}: the paper has {bad}.\n")


def _section_table(part: pd.DataFrame) -> str:
  """The Markdown rows of one paper table (a validation column where no test split)."""
  num = lambda v, p=2: "–" if v != v else f"{v:.{p}f}"
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
  return markdown(head, body, align)


def _section(df: pd.DataFrame, key: str, module) -> list:
  """The lines of one paper table: its citation, what ours trained on, the rows, and
  whether the ordering holds."""
  part = df[df.table == key]
  table = next(r.table for r in papers.rows_of(module) if r.table.key == key) if module \
      else None
  lines = [f"### {key}\n"]
  if table is not None:
    lines.append(f"{table.citation}" + (f" ({table.note})" if table.note else "") + "\n")
  ours_on = sorted({x for x in part.get("data", []) if x})
  if ours_on:
    lines.append(f"Ours trained on {', '.join(ours_on)}.\n")
  lines.append(_section_table(part))
  lines.append(_ordering_line(df.attrs.get("ordering", {}).get(key) or _ordering(table, part)))
  return lines


def comparison_table(df: pd.DataFrame, module=None, arg: str = "") -> str:
  """The Markdown of `compare`: a table per paper table, its citation and ordering."""
  name = os.path.basename(getattr(module, "__file__", "") or "") + (f":{arg}" if arg else "")
  if not len(df):
    reason = getattr(module, "PAPER_UNREPORTED", "") if module is not None else ""
    why = f": {reason}" if reason else ""
    return f"No paper rows match these runs ({name or 'no config'}){why}.\n"
  return "\n".join(line for key in dict.fromkeys(df["table"])
                   for line in _section(df, key, module))
