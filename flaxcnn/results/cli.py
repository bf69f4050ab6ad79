"""The command line: `python -m flaxcnn.results DIR` writes the report of a sweep,
`--paper` prints the paper comparison instead."""
import argparse
import os

from flaxcnn.results.paper import compare
from flaxcnn.results.reporting import report
from flaxcnn.results.runs import load


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m flaxcnn.results",
                              description="Tables, figures and diagnostics of a sweep.")
  p.add_argument("path", help="a sweep directory (or one run)")
  p.add_argument("--out", default=None, help="where to write (default: the directory)")
  p.add_argument("--metric", default=None, help="e.g. final_validation_error")
  p.add_argument("--paper", nargs="?", const="", default=None, metavar="FILE.py[:ARG]",
                 help="print the paper's values beside ours (the sweep's config file, or this)")
  return p


def _report(args) -> dict:
  """The report's files, after checking that there are runs and the metric is a column."""
  runs = load(args.path)
  if not len(runs):
    raise SystemExit(f"error: no runs in {args.path} (no metrics.jsonl, summary.json or "
                     "variant.json below it)")
  if args.metric and args.metric not in runs.columns:
    metrics = [c for c in runs.columns if c.startswith(("final_", "best_"))]
    raise SystemExit(f"error: --metric={args.metric} is not a column; use one of "
                     f"{', '.join(metrics)}")
  return report(args.path, args.out, args.metric)


def main(argv=None):
  import matplotlib
  matplotlib.use("Agg")
  args = _parser().parse_args(argv)
  if not os.path.isdir(args.path):
    raise SystemExit(f"error: {args.path} is not a directory of runs (a sweep's --workdir "
                     "or one run's)")
  try:
    if args.paper is not None:
      compare(args.path, args.paper or None)
      return
    files = _report(args)
  except (ValueError, FileNotFoundError, ImportError) as e:   # --paper's config file
    raise SystemExit(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
  with open(files["results.md"]) as f:
    print(f.read())
  print("wrote " + ", ".join(files.values()))
