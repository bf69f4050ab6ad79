"""The report of a sweep, written to files: results.md (the table and the
diagnostics), results.csv, the curves and a figure per swept field."""
import os
from typing import Optional

from flaxcnn.results.figures import plot_curves, plot_vs_field
from flaxcnn.results.runs import load
from flaxcnn.results.tables import diagnostics_table, group_fields, headline, table, write


def report(path: str, out_dir: Optional[str] = None, metric: Optional[str] = None) -> dict:
  """Writes OUT_DIR (default: the sweep directory) /results.md (the table and the
  diagnostics), results.csv (one row per run), curves.png and, for every swept field
  but the seed, <metric>_vs_<field>.png. `metric` default: final test error, else
  validation (the task's metric where it is not accuracy). Returns {name: file path}."""
  out_dir = out_dir or (path if isinstance(path, (str, os.PathLike)) else ".")
  os.makedirs(out_dir, exist_ok=True)
  runs, curve_df = load(path, curves=True)
  files = {}
  md = [f"# Results: {path}\n", table(runs, metrics=[metric] if metric else None),
        "\n## Diagnostics\n", diagnostics_table(runs)]
  files["results.md"] = os.path.join(out_dir, "results.md")
  write("\n".join(md), files["results.md"])
  files["results.csv"] = os.path.join(out_dir, "results.csv")
  runs.to_csv(files["results.csv"], index=False)
  if len(curve_df):
    files["curves.png"] = os.path.join(out_dir, "curves.png")
    plot_curves(curve_df, path=files["curves.png"])
  done = runs[runs.status == "finished"] if len(runs) else runs
  m = metric or next(iter(headline(done)), None)
  for field in group_fields(runs, None):
    if m is not None and len(done) and done[field].nunique() > 1:
      name = f"{m.replace('final_', '')}_vs_{field}.png".replace("/", "_")
      files[name] = os.path.join(out_dir, name)
      plot_vs_field(runs, field, metric=m, path=files[name])
  return files
