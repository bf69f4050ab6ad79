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
  final_{validation,test}_top5, final_{validation,test}_METRIC where the task's metric
  is not accuracy (segmentation: final_test_mean_iou; `runs.attrs["metric"]`),
  best_{validation,test}_{error,epoch},
  test_error_at_best_validation,
  and the diagnostics (see `diagnose`): dev_split, train_dev_gap, dev_best_epoch,
  dev_still_improving, underfit, overfit, advice; then error and path.

The diagnostics follow the lecture's advice (NPFL114, Lecture 5): check that a model
neither underfits (the training performance still increases at the end: train longer
or add capacity) nor overfits (the train/dev gap; dev performance getting worse while
training performance improves: regularize more), and train for as many epochs as it
takes for the dev performance to stop improving. The dev performance is the task's
own metric (`Task.metric`: accuracy, segmentation's mean IoU), and so are the default
columns of the tables and figures.

One module per job: curve.py (a run's metrics.jsonl and per-epoch curve), runs.py
(`load`), diagnosis.py (`diagnose`), tables.py, figures.py, paper.py (`compare`),
reporting.py (`report`), cli.py (the command line).
"""

from flaxcnn.results.curve import EVAL_SPLITS, epoch_curve, read_metrics  # noqa: F401
from flaxcnn.results.diagnosis import diagnose  # noqa: F401
from flaxcnn.results.figures import (plot_arms, plot_curves, plot_mean_curves,  # noqa: F401
                                     plot_vs_field)
from flaxcnn.results.paper import compare, comparison_table  # noqa: F401
from flaxcnn.results.reporting import report  # noqa: F401
from flaxcnn.results.runs import curves, load, run_dirs, task_metric  # noqa: F401
from flaxcnn.results.tables import diagnostics_table, table  # noqa: F401
from flaxcnn.results.cli import main  # noqa: F401
