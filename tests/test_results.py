"""Results: the DataFrame of a sweep, its tables, figures and diagnostics, on runs
whose metrics.jsonl is written by hand (no training)."""
import json
import os
import socket

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from flaxcnn import metrics, results

STEPS_PER_EPOCH = 10


def write_run(run_dir, train_error, dev_error, test_error=None, dev_loss=None,
              train_loss=None, overrides=None, status="finished", count=5000,
              finished=True, wall_time=12.5, error=None, duplicate_from=None):
  """A run directory as train/sweep write it: per epoch e (1-based), two train lines
  (at mid-epoch and end) and one line per evaluated split; summary.json if finished."""
  os.makedirs(run_dir, exist_ok=True)
  n = len(train_error)
  train_loss = train_loss if train_loss is not None else [2 * e for e in train_error]
  dev_loss = dev_loss if dev_loss is not None else [2 * e for e in dev_error]
  lines = []
  t = 1000.0
  for e in range(1, n + 1):
    for frac in (0.5, 1.0):
      step = int((e - 1 + frac) * STEPS_PER_EPOCH)
      lines.append({"step": step, "split": "train", "epoch": step / STEPS_PER_EPOCH,
                    "loss": train_loss[e - 1], "accuracy": 1 - train_error[e - 1],
                    "lr": 0.1, "img_per_sec": 100.0, "time": t})
      t += 1
    step = e * STEPS_PER_EPOCH
    lines.append({"step": step, "split": "validation", "epoch": float(e),
                  "loss": dev_loss[e - 1], "accuracy": 1 - dev_error[e - 1], "top5": 1.0,
                  "count": count, "time": t})
    if test_error is not None:
      lines.append({"step": step, "split": "test", "epoch": float(e),
                    "loss": 2 * test_error[e - 1], "accuracy": 1 - test_error[e - 1],
                    "top5": 0.99, "count": 10000, "time": t})
  if duplicate_from:     # a resumed run logs the steps after its checkpoint again
    lines += [dict(l, loss=l["loss"]) for l in lines if l["step"] > duplicate_from]
  with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(l) + "\n" for l in lines)
  if finished:
    summary = {"step": n * STEPS_PER_EPOCH, "epoch": float(n), "seconds": 3.0,
               "interrupted": False,
               "validation": {"loss": dev_loss[-1], "accuracy": 1 - dev_error[-1],
                              "top5": 1.0, "count": count}}
    if test_error is not None:
      summary["test"] = {"loss": 2 * test_error[-1], "accuracy": 1 - test_error[-1],
                         "top5": 0.99, "count": 10000}
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
      json.dump(summary, f)
  if overrides is not None:
    with open(os.path.join(run_dir, "variant.json"), "w") as f:
      json.dump({"name": os.path.basename(run_dir), "overrides": overrides, "status": status,
                 "error": error, "wall_time": wall_time}, f)


def decay(start, end, n, rate=0.5):
  """n values falling geometrically from start to exactly end."""
  last = rate ** (n - 1)
  return [end + (start - end) * (rate ** i - last) / (1 - last) for i in range(n)]


@pytest.fixture
def sweep_dir(tmp_path):
  """depth in {8, 14} x 2 seeds, finished, plus a failed variant."""
  d = tmp_path / "sweep"
  finals = {(8, 0): 0.10, (8, 1): 0.12, (14, 0): 0.07, (14, 1): 0.08}
  names = []
  for (depth, seed), final in finals.items():
    name = f"depth={depth},seed={seed}"
    names.append(name)
    write_run(str(d / name), train_error=decay(0.5, 0.01, 6),
              dev_error=decay(0.5, final, 6), test_error=decay(0.5, final + 0.01, 6),
              overrides={"model.kwargs.depth": depth, "seed": seed},
              duplicate_from=25 if (depth, seed) == (8, 1) else None)
  os.makedirs(d / "depth=9,seed=0")
  with open(d / "depth=9,seed=0" / "variant.json", "w") as f:
    json.dump({"name": "depth=9,seed=0", "overrides": {"model.kwargs.depth": 9, "seed": 0},
               "status": "failed", "error": "ValueError: depth: must be 6n+2",
               "wall_time": 0.5}, f)
  names.append("depth=9,seed=0")
  with open(d / "sweep.json", "w") as f:
    json.dump({"variants": [{"index": i, "name": n} for i, n in enumerate(names)]}, f)
  return d


def test_load_one_row_per_run_with_metrics_from_the_jsonl(sweep_dir):
  runs, curves = results.load(str(sweep_dir), curves=True)
  assert list(runs["run"]) == ["depth=8,seed=0", "depth=8,seed=1", "depth=14,seed=0",
                               "depth=14,seed=1", "depth=9,seed=0"]
  assert runs.attrs["swept"] == ["depth", "seed"]
  assert runs.attrs["fields"]["depth"] == "model.kwargs.depth"
  for col in ("status", "depth", "seed", "epochs", "steps", "wall_time", "final_train_error",
              "final_validation_error", "final_validation_loss", "final_test_error",
              "best_validation_error", "best_validation_epoch", "best_test_error",
              "test_error_at_best_validation", "train_dev_gap", "dev_best_epoch", "underfit",
              "overfit", "advice", "error", "path"):
    assert col in runs.columns, col
  assert list(runs["status"]) == ["finished"] * 4 + ["failed"]
  failed = runs.iloc[-1]
  assert failed["error"].startswith("ValueError") and np.isnan(failed["final_test_error"])

  for _, row in runs.iloc[:4].iterrows():
    lines = metrics.read_jsonl(row["path"])
    val = [l for l in lines if l["split"] == "validation"]
    test = [l for l in lines if l["split"] == "test"]
    assert row["final_validation_error"] == pytest.approx(1 - val[-1]["accuracy"])
    assert row["final_test_error"] == pytest.approx(1 - test[-1]["accuracy"])
    assert row["final_test_loss"] == pytest.approx(test[-1]["loss"])
    best = min(val, key=lambda l: 1 - l["accuracy"])
    assert row["best_validation_error"] == pytest.approx(1 - best["accuracy"])
    assert row["best_validation_epoch"] == best["epoch"]
    assert row["epochs"] == 6 and row["steps"] == 60 and row["wall_time"] == 12.5
    last_epoch = [l for l in lines if l["split"] == "train" and l["epoch"] > 5]
    assert row["final_train_error"] == pytest.approx(1 - last_epoch[-1]["accuracy"])
    assert row["train_dev_gap"] == pytest.approx(row["final_validation_error"]
                                                 - row["final_train_error"])

  # Per-epoch curves: one train point per epoch, duplicates of a resumed run dropped.
  c = curves[curves.run == "depth=8,seed=1"]
  assert list(c[c.split == "train"]["epoch"]) == [1, 2, 3, 4, 5, 6]
  assert list(c[c.split == "validation"]["epoch"]) == [1, 2, 3, 4, 5, 6]
  assert set(curves["depth"].dropna()) == {8, 14}
  one = results.load(str(sweep_dir / "depth=14,seed=0"))     # a single run directory
  assert len(one) == 1 and one.iloc[0]["final_test_error"] == pytest.approx(
      runs.iloc[2]["final_test_error"])


def test_markdown_table_is_mean_and_std_over_seeds(sweep_dir):
  runs = results.load(str(sweep_dir))
  text = results.table(runs, path=str(sweep_dir / "table.md"))
  lines = text.strip().splitlines()
  assert lines[0] == "| depth | test error (%) | validation error (%) | runs |"
  assert lines[1].startswith("|---|--:")
  d8 = runs[runs.depth == 8]["final_test_error"].to_numpy() * 100
  expected = f"{d8.mean():.2f} ± {d8.std(ddof=1):.2f}"
  assert lines[2].startswith(f"| 8 | {expected} |") and lines[2].endswith("| 2 |")
  assert lines[3] == "| 14 | 8.50 ± 0.71 | 7.50 ± 0.71 | 2 |"
  assert lines[4] == "| 9 | – | – | 0 (1 failed) |"
  assert (sweep_dir / "table.md").read_text() == text
  by_seed = results.table(runs, metrics=["final_validation_error"], by=["depth", "seed"])
  assert "| 8 | 0 | 10.00 | 1 |" in by_seed


def test_plain_runs_of_different_configs_are_not_pooled(tmp_path):
  """Runs launched one by one (no variant.json) into one folder: the config fields
  that differ (model, budget) become columns, so no row averages unlike runs; the
  seed and bookkeeping fields (logging, checkpoint intervals) do not split rows."""
  def run(name, model, steps, seed, log_every, test):
    write_run(str(tmp_path / name), [0.3, 0.2], [0.3, 0.25], test_error=[0.3, test])
    config = {"seed": seed, "model": {"name": model, "kwargs": {}}, "num_steps": steps,
              "log_every_steps": log_every}
    (tmp_path / name / "config.json").write_text(json.dumps(config))
  run("a", "resnet20_cifar", 1500, 0, 100, 0.10)
  run("b", "resnet20_cifar", 1500, 1, 10, 0.12)
  run("c", "resnet20_cifar", 40, 0, 100, 0.50)
  run("d", "wrn28_10", 1500, 0, 100, 0.90)
  runs = results.load(str(tmp_path))
  assert runs.attrs["swept"] == ["name", "num_steps", "seed"]
  lines = results.table(runs, metrics=["final_test_error"]).strip().splitlines()
  assert lines[0] == "| name | num_steps | test error (%) | runs |"
  assert lines[2:] == ["| resnet20_cifar | 1500 | 11.00 ± 1.41 | 2 |",
                       "| resnet20_cifar | 40 | 50.00 | 1 |", "| wrn28_10 | 1500 | 90.00 | 1 |"]


def test_figures_and_report_are_written(sweep_dir, tmp_path):
  runs, curves = results.load(str(sweep_dir), curves=True)
  fig = results.plot_curves(curves, path=str(tmp_path / "c.png"))
  assert [ax.get_title() for ax in fig.axes] == ["depth=8", "depth=14"]   # 9 failed: no curve
  fig = results.plot_vs_field(runs, "depth", path=str(tmp_path / "v.png"))
  assert fig.axes[0].get_xlabel() == "depth"        # the field's name, not its dotted path
  assert results.plot_curves(curves).axes[0].get_yscale() == "linear"   # errors in % ticks
  diagnostics = results.diagnostics_table(runs).splitlines()[0]
  assert "validation error (%)" in diagnostics and "dev" not in diagnostics
  files = results.report(str(sweep_dir), out_dir=str(tmp_path / "report"))
  assert set(files) == {"results.md", "results.csv", "curves.png", "test_error_vs_depth.png"}
  for path in list(files.values()) + [str(tmp_path / "c.png"), str(tmp_path / "v.png")]:
    assert os.path.getsize(path) > 1000, path
  with open(files["curves.png"], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  md = open(files["results.md"]).read()
  assert "± " in md and "## Diagnostics" in md and "depth=9,seed=0 | failed" in md


def _diagnosis(tmp_path, name, **kw):
  write_run(str(tmp_path / name), **kw)
  return results.load(str(tmp_path / name)).iloc[0]


def test_underfit_run_is_flagged(tmp_path):
  # Train and dev error still falling steadily when training stops.
  r = _diagnosis(tmp_path, "under", train_error=[0.6, 0.5, 0.4, 0.3, 0.25, 0.2],
                 dev_error=[0.62, 0.52, 0.43, 0.34, 0.3, 0.26])
  assert r["underfit"] and not r["overfit"]
  assert r["dev_still_improving"] and r["dev_best_epoch"] == 6
  assert r["train_dev_gap"] == pytest.approx(0.06)
  assert "underfit" in r["advice"] and "train longer" in r["advice"]


def test_overfit_run_is_flagged(tmp_path):
  # Train keeps improving (loss falls, error ~0); dev error is best at epoch 4, then rises.
  r = _diagnosis(tmp_path, "over", train_error=[0.3, 0.1, 0.03, 0.01, 0.01, 0.01, 0.01, 0.01],
                 train_loss=[0.9, 0.3, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005],
                 dev_error=[0.32, 0.15, 0.1, 0.08, 0.09, 0.1, 0.11, 0.12])
  assert r["overfit"] and not r["underfit"]
  assert r["dev_best_epoch"] == 4 and not r["dev_still_improving"]
  assert r["train_dev_gap"] == pytest.approx(0.11)
  assert "overfit" in r["advice"] and "epoch 4" in r["advice"]
  # Rising dev loss at a flat dev error is overfitting too.
  r = _diagnosis(tmp_path, "over_loss", train_error=[0.3, 0.1, 0.02, 0.01, 0.01, 0.01],
                 train_loss=[0.9, 0.3, 0.1, 0.05, 0.02, 0.01],
                 dev_error=[0.3, 0.12, 0.08, 0.08, 0.08, 0.08],
                 dev_loss=[0.8, 0.4, 0.3, 0.35, 0.4, 0.5])
  assert r["overfit"] and "loss" in r["advice"]


def test_converged_and_noisy_runs_are_not_flagged(tmp_path):
  # Both curves flat at the end: neither flag, the best dev epoch reported.
  r = _diagnosis(tmp_path, "ok", train_error=[0.3, 0.1, 0.05, 0.04, 0.04, 0.04],
                 train_loss=[0.9, 0.3, 0.15, 0.12, 0.12, 0.12],
                 dev_error=[0.32, 0.12, 0.07, 0.06, 0.06, 0.06])
  assert (r["underfit"], r["overfit"]) == (False, False)
  assert r["dev_best_epoch"] == 4 and r["advice"].startswith("ok")
  # One example of 180 worse: within the dev set's noise, not overfitting.
  r = _diagnosis(tmp_path, "noisy", train_error=[0.3, 0.1, 0.05, 0.04, 0.04, 0.04],
                 train_loss=[0.9, 0.3, 0.15, 0.1, 0.08, 0.07],
                 dev_error=[0.3, 0.1, 0.05, 0.0333, 0.0389, 0.0389],
                 dev_loss=[0.9, 0.3, 0.15, 0.11, 0.115, 0.118], count=180)
  assert r["overfit"] == False  # noqa: E712 (a numpy bool)
  # The same rise on 5,000 dev examples is a trend.
  r = _diagnosis(tmp_path, "big", train_error=[0.3, 0.1, 0.05, 0.04, 0.04, 0.04],
                 train_loss=[0.9, 0.3, 0.15, 0.1, 0.08, 0.07],
                 dev_error=[0.3, 0.1, 0.05, 0.0333, 0.0389, 0.0489],
                 dev_loss=[0.9, 0.3, 0.15, 0.11, 0.115, 0.118], count=5000)
  assert r["overfit"] == True  # noqa: E712
  d = results.diagnose(metrics.read_jsonl(str(tmp_path / "big")))
  assert d["overfit"] is True and d["dev_split"] == "validation"


def write_segmentation_run(run_dir, seed, mean_iou, pixel_accuracy):
  """A segmentation run: its config.json names the task, its evaluations have the
  pixel accuracy and the mean IoU (its train lines the pixel accuracy only)."""
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, "config.json"), "w") as f:
    json.dump({"task": "segmentation", "seed": seed}, f)
  lines, evals = [], {}
  for e, (miou, acc) in enumerate(zip(mean_iou, pixel_accuracy), 1):
    step = e * STEPS_PER_EPOCH
    lines.append({"step": step, "split": "train", "epoch": float(e), "loss": 1.0 / e,
                  "accuracy": acc, "lr": 0.1})
    evals = {"loss": 0.5, "accuracy": acc, "mean_iou": miou, "count": 100}
    lines += [dict(evals, step=step, split=split, epoch=float(e))
              for split in ("validation", "test")]
  with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(l) + "\n" for l in lines)
  with open(os.path.join(run_dir, "summary.json"), "w") as f:
    json.dump({"step": len(mean_iou) * STEPS_PER_EPOCH, "epoch": float(len(mean_iou)),
               "validation": evals, "test": evals}, f)


def test_a_segmentation_runs_table_and_diagnosis_use_mean_iou(tmp_path):
  """The task's metric, not the pixel accuracy: the mean IoU heads a segmentation
  sweep's table, and the diagnosis follows it (the pixel accuracy keeps rising while
  the mean IoU falls after epoch 2)."""
  for seed, last in ((0, 0.60), (1, 0.64)):
    write_segmentation_run(str(tmp_path / f"seed={seed}"), seed, mean_iou=[0.5, 0.7, last],
                           pixel_accuracy=[0.90, 0.93, 0.95])
  runs, curves = results.load(str(tmp_path), curves=True)
  assert runs.attrs["metric"] == curves.attrs["metric"] == "mean_iou"
  assert list(runs["final_test_mean_iou"]) == [0.60, 0.64]
  assert list(runs["final_test_error"]) == pytest.approx([0.05, 0.05])   # pixel error
  lines = results.table(runs).strip().splitlines()
  assert lines[0] == "| test mean iou (%) | validation mean iou (%) | runs |"
  assert lines[2] == "| 62.00 ± 2.83 | 62.00 ± 2.83 | 2 |"
  assert list(runs["dev_best_epoch"]) == [2.0, 2.0] and runs["overfit"].all()
  # the best evaluation is the best mean IoU (epoch 2), not the lowest pixel error (3)
  assert list(runs["best_validation_epoch"]) == [2.0, 2.0]
  assert list(runs["best_validation_mean_iou"]) == [0.7, 0.7]
  assert list(runs["test_error_at_best_validation"]) == pytest.approx([0.07, 0.07])
  assert "validation mean_iou 70.00% -> 60.00% after epoch 2" in runs["advice"].iloc[0]
  assert "| validation mean_iou (%) |" in results.diagnostics_table(runs).splitlines()[0]
  assert results.plot_curves(curves).axes[0].get_ylabel() == "mean_iou (%)"
  assert results.task_metric(str(tmp_path / "seed=0")) == "mean_iou"


def test_train_curve_follows_evaluations_within_an_epoch(tmp_path):
  """A run shorter than an epoch (evaluated every 25 of its 100 steps per epoch): the
  train curve has a point per evaluation interval, averaged over its lines."""
  run = tmp_path / "short"
  run.mkdir()
  lines = []
  for step in range(5, 51, 5):
    lines.append({"step": step, "split": "train", "epoch": step / 100, "loss": 1.0 - step / 100,
                  "accuracy": step / 100, "lr": 0.1})
    if step % 25 == 0:
      lines.append({"step": step, "split": "validation", "epoch": step / 100, "loss": 1.0,
                    "accuracy": step / 200, "top5": 1.0, "count": 1000})
  (run / "metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
  runs, curves = results.load(str(run), curves=True)
  train = curves[curves.split == "train"]
  assert list(train["step"]) == [25, 50]
  assert train["accuracy"].tolist() == pytest.approx([0.15, 0.40])   # means of 5..25, 30..50
  assert runs.iloc[0]["status"] == "incomplete" and runs.iloc[0]["underfit"]


# ----------------------------------------------------------------------------- paper comparison

PAPER_CONFIG = '''
from flaxcnn import papers
from flaxcnn.config import default_config

PAPER = papers.rows(papers.HE2016_T2_110, {
    label: {"model.kwargs.placement": p} for label, p in (
        ("(a) original", "original"), ("(b) BN after addition", "bn_after_addition"),
        ("(e) full pre-activation", "full_preact"))})


def get_config():
  config = default_config()
  config.model.name = "resnet110_cifar"
  config.num_epochs = BUDGET
  return config
'''


def paper_sweep(tmp_path, finals, budget=6.0, with_test=True):
  """A sweep over model.kwargs.placement x 2 seeds, 6 epochs, with the config file
  (sweep.json's "config") binding three rows of He et al. 2016, Table 2."""
  cfg = tmp_path / "paper_config.py"
  cfg.write_text(PAPER_CONFIG.replace("BUDGET", str(budget)))
  d = tmp_path / "sweep"
  variants = []
  for (placement, seed), final in finals.items():
    ov = {"model.kwargs.placement": placement, "seed": seed}
    name = f"placement={placement},seed={seed}"
    variants.append({"name": name, "overrides": ov})
    write_run(str(d / name), train_error=decay(0.5, 0.01, 6), dev_error=decay(0.5, final, 6),
              test_error=decay(0.5, final, 6) if with_test else None, overrides=ov)
  with open(d / "sweep.json", "w") as f:
    json.dump({"config": str(cfg), "arg": "", "variants": variants}, f)
  return str(d)


FINALS = {("original", 0): 0.066, ("original", 1): 0.068,
          ("bn_after_addition", 0): 0.080, ("bn_after_addition", 1): 0.084,
          ("full_preact", 0): 0.062, ("full_preact", 1): 0.064}


def test_compare_puts_the_paper_beside_ours(tmp_path, capsys):
  df = results.compare(paper_sweep(tmp_path, FINALS))
  assert list(df["row"]) == ["(a) original", "(b) BN after addition", "(e) full pre-activation"]
  assert list(df["paper"]) == [6.61, 8.17, 6.37]
  np.testing.assert_allclose(df["ours"], [6.7, 8.2, 6.3], atol=1e-6)
  np.testing.assert_allclose(df["std"], [np.std([6.6, 6.8], ddof=1)] + [
      np.std([8.0, 8.4], ddof=1), np.std([6.2, 6.4], ddof=1)], atol=1e-6)
  np.testing.assert_allclose(df["diff"], [0.09, 0.03, -0.07], atol=1e-6)
  assert list(df["n"]) == [2, 2, 2] and list(df["epochs"]) == [6.0, 6.0, 6.0]
  assert set(df["budget"]) == {"full"}
  order = df.attrs["ordering"]["he2016 Table 2, ResNet-110: CIFAR-10 test error (%)"]
  assert order["holds"] and order["pairs"] == 3 and not order["violated"]
  printed = capsys.readouterr().out
  assert "Identity Mappings" in printed and "holds in ours (3 of 3 pairs)" in printed
  assert "| (a) original | 6.61 | 6.70 ± 0.14 | 2 | 6 | 0.09 | full |" in printed


def test_compare_reports_a_broken_ordering_and_a_shortened_budget(tmp_path, capsys):
  finals = dict(FINALS)
  finals[("full_preact", 0)] = finals[("full_preact", 1)] = 0.090   # (e) now worst
  df = results.compare(paper_sweep(tmp_path, finals, budget=164.0), verbose=False)
  assert list(df["budget"]) == ["shortened (6 of 164 epochs)"] * 3
  assert df["diff"].isna().all()              # never compared as if at the paper's budget
  order = next(iter(df.attrs["ordering"].values()))
  assert not order["holds"] and order["shortened"]
  assert sorted(order["violated"]) == [("(e) full pre-activation", "(a) original"),
                                       ("(e) full pre-activation", "(b) BN after addition")]
  assert "does not hold in 2 of 3 pairs (on shortened runs" in df.attrs["text"]
  results.main([str(tmp_path / "sweep"), "--paper"])
  assert "shortened (6 of 164 epochs)" in capsys.readouterr().out


def test_compare_while_the_sweep_runs_marks_the_runs_not_yet_in(tmp_path):
  """Two runs of row (a) still going (one training, one queued by a live launcher):
  the row shows the finished seed and says what is not in yet."""
  d = paper_sweep(tmp_path, FINALS)
  for seed, status in ((0, "running"), (1, "queued")):
    run = os.path.join(d, f"placement=original,seed={seed}")
    os.remove(os.path.join(run, "summary.json"))
    with open(os.path.join(run, "variant.json")) as f:
      record = json.load(f)
    record.update(status=status, host=socket.gethostname(), pid=os.getpid())
    with open(os.path.join(run, "variant.json"), "w") as f:
      json.dump(record, f)
  df = results.compare(d, verbose=False)
  assert list(df["n"]) == [0, 2, 2]
  assert df["budget"][0] == "no finished run; not yet in: 1 running, 1 queued"
  assert df["budget"][1] == "full"
  assert list(results.load(d)["status"])[:2] == ["running", "queued"]


def test_compare_works_from_another_directory_and_after_a_notebook_rerun(tmp_path,
                                                                         monkeypatch):
  """sweep.json names the config file by an absolute path; a notebook's sweep.run
  (a ConfigDict base) keeps the file a command-line run recorded; an older
  sweep.json's relative 'experiments/...' path resolves against the project root."""
  from flaxcnn import config as config_lib, sweep
  cfg = tmp_path / "paper_config.py"
  cfg.write_text(PAPER_CONFIG.replace("BUDGET", "6.0"))
  monkeypatch.chdir(tmp_path)
  axis = sweep.axis("model.kwargs.placement", ["original", "full_preact"])
  done = lambda config, workdir, data_cache: None  # noqa: E731
  sweep.run("paper_config.py", str(tmp_path / "s"), sweep=axis, train_fn=done,
            compilation_cache=False)
  recorded = json.loads((tmp_path / "s" / "sweep.json").read_text())["config"]
  assert recorded == str(cfg)
  sweep.run(config_lib.default_config(), str(tmp_path / "s"), sweep=axis, train_fn=done,
            compilation_cache=False)
  assert json.loads((tmp_path / "s" / "sweep.json").read_text())["config"] == str(cfg)
  # An older sweep.json, relative to the project root, read from elsewhere.
  monkeypatch.chdir(os.path.dirname(tmp_path))
  old = tmp_path / "old"
  old.mkdir()
  (old / "sweep.json").write_text(json.dumps(
      {"config": "experiments/ablations/preact_activations.py", "arg": "", "variants": []}))
  assert results.compare(str(old), verbose=False).empty


def test_compare_without_a_test_split_says_so_and_shows_validation(tmp_path):
  d = paper_sweep(tmp_path, FINALS, with_test=False)
  for name in os.listdir(d):      # trained on the JPEG folder, labelled as its README asks
    if os.path.isdir(os.path.join(d, name)):
      with open(os.path.join(d, name, "data.json"), "w") as f:
        json.dump({"name": "cifar10-jpeg", "label": "CIFAR-10 (JPEG q75)", "num_classes": 10,
                   "image_shape": [32, 32, 3]}, f)
  df = results.compare(d, verbose=False)
  assert set(df["data"]) == {"CIFAR-10 (JPEG q75)"}
  assert "Ours trained on CIFAR-10 (JPEG q75)." in df.attrs["text"]
  assert list(df["n"]) == [0, 0, 0] and df["ours"].isna().all()
  np.testing.assert_allclose(df["validation"], [6.7, 8.2, 6.3], atol=1e-6)
  assert set(df["budget"]) == {"no test split (validation beside)"}
  text = df.attrs["text"]
  assert "No paper rows match" not in text
  assert "ours on validation (not the paper's split)" in text
  assert "| (a) original | 6.61 | – | 0 | 6 | – | no test split (validation beside) | 6.70 |" \
      in text


def test_compare_needs_a_config_file(tmp_path, sweep_dir):
  with pytest.raises(ValueError, match="no sweep.json"):
    results.compare(sweep_dir)


def test_runs_on_synthetic_data_are_never_put_beside_the_paper(tmp_path):
  """data.name stays 'cifar10' when only data.source is overridden: the random images'
  error was printed beside the paper's CIFAR-10 figure."""
  sweep = paper_sweep(tmp_path, FINALS)
  run = os.path.join(sweep, "placement=original,seed=0")
  config = {"data": {"name": "cifar10", "source": "synthetic"}, "seed": 0,
            "model": {"name": "resnet110_cifar", "kwargs": {"placement": "original"}}}
  with open(os.path.join(run, "config.json"), "w") as f:
    json.dump(config, f)
  df = results.compare(sweep, verbose=False)
  assert list(df["n"]) == [1, 2, 2]
  np.testing.assert_allclose(df["ours"], [6.8, 8.2, 6.3], atol=1e-6)


def test_runs_on_other_data_under_the_papers_label_are_left_out_and_named(tmp_path):
  """resnet_cifar.py with --config.data.source=digits kept data.name 'cifar10' and was
  printed beside the CIFAR-10 paper; what the run trained on (data.json) decides."""
  sweep = paper_sweep(tmp_path, FINALS)
  digits = {"name": "digits", "num_classes": 10, "image_shape": [8, 8, 1]}
  cifar = {"name": "cifar10", "num_classes": 10, "image_shape": [32, 32, 3]}
  for name, data in (("placement=original,seed=0", digits),
                     ("placement=original,seed=1", cifar)):
    with open(os.path.join(sweep, name, "data.json"), "w") as f:
      json.dump(data, f)
  df = results.compare(sweep, verbose=False)
  assert list(df["n"]) == [1, 2, 2]
  np.testing.assert_allclose(df["ours"], [6.8, 8.2, 6.3], atol=1e-6)
  assert ("Not compared (trained on other data than the paper's): placement=original,"
          "seed=0 (digits: 10 classes, 8x8x1 images, not cifar10)") in df.attrs["text"]


def test_the_command_line_refuses_a_missing_folder_and_an_unknown_metric(tmp_path, sweep_dir):
  """A mistyped path used to be created and given an empty results.md (exit 0)."""
  with pytest.raises(SystemExit, match="is not a directory of runs"):
    results.main([str(tmp_path / "typo")])
  assert not (tmp_path / "typo").exists()
  with pytest.raises(SystemExit, match="--metric=bogus is not a column; use one of final_"):
    results.main([str(sweep_dir), "--metric", "bogus"])
  with pytest.raises(SystemExit, match="config file .*nonexist.py not found"):
    results.main([str(sweep_dir), "--paper", "experiments/nonexist.py"])


def test_a_unets_pixel_error_is_never_in_a_column_of_top1_errors(tmp_path):
  """A classifier and a U-Net (its evaluations have a mean IoU) loaded together: each
  error and accuracy column is of one kind, named by it; a U-Net alone says 'pixel'."""
  classifier, unet = tmp_path / "classifier", tmp_path / "unet"
  write_run(str(classifier), [0.2, 0.1], [0.3, 0.2], test_error=[0.3, 0.25])
  write_run(str(unet), [0.1, 0.05], [0.2, 0.1], test_error=[0.2, 0.04])
  summary = json.loads((unet / "summary.json").read_text())
  summary["test"]["mean_iou"] = summary["validation"]["mean_iou"] = 0.8
  (unet / "summary.json").write_text(json.dumps(summary))
  runs = results.load([str(classifier), str(unet)])
  assert list(runs.error_kind) == ["top-1", "pixel"]
  lines = results.table(runs, metrics=["final_test_error"], by=[]).splitlines()
  assert lines[0] == "| test top-1 error (%) | test pixel error (%) | runs |"
  assert lines[2] == "| 25.00 | 4.00 | 2 |"
  diagnostics = results.diagnostics_table(runs)
  assert "validation top-1 error (%)" in diagnostics.split("\n\n")[0]
  assert "validation pixel error (%)" in diagnostics.split("\n\n")[1]
  alone = results.load(str(unet))
  assert "| test pixel error (%) |" in results.table(alone, metrics=["final_test_error"])


def test_variants_that_never_started_are_rows_marked_pending(sweep_dir):
  """A sweep stopped before its last variants: sweep.json lists them, their folders do
  not exist; the table says so instead of leaving them out."""
  listing = json.loads((sweep_dir / "sweep.json").read_text())
  listing["variants"].append({"index": 5, "name": "depth=20,seed=0",
                              "overrides": {"model.kwargs.depth": 20, "seed": 0}})
  (sweep_dir / "sweep.json").write_text(json.dumps(listing))
  runs = results.load(str(sweep_dir))
  row = runs[runs.run == "depth=20,seed=0"]
  assert list(row.status) == ["pending"] and list(row.depth) == [20]
  assert "| 20 | – | – | 0 (1 unfinished) |" in results.table(runs)



def test_variants_queued_by_a_launcher_are_grouped_by_their_swept_values(sweep_dir):
  """A parallel launcher's queued variants have a record without their overrides: the
  table grouped them under "depth None"; they take their values from sweep.json."""
  listing = json.loads((sweep_dir / "sweep.json").read_text())
  listing["variants"].append({"index": 5, "name": "depth=20,seed=0",
                              "overrides": {"model.kwargs.depth": 20, "seed": 0}})
  (sweep_dir / "sweep.json").write_text(json.dumps(listing))
  os.makedirs(sweep_dir / "depth=20,seed=0")
  (sweep_dir / "depth=20,seed=0" / "variant.json").write_text(json.dumps(
      {"status": "queued", "launcher": "local", "index": 5, "host": socket.gethostname(),
       "pid": os.getpid()}))
  runs = results.load(str(sweep_dir))
  row = runs[runs.run == "depth=20,seed=0"]
  assert list(row.status) == ["queued"] and list(row.depth) == [20]
  text = results.table(runs)
  assert "| 20 | – | – | 0 (1 unfinished) |" in text and "None" not in text

TEN_CROP_CONFIG = '''
from flaxcnn import papers
from flaxcnn.config import default_config

PAPER = [row for table, mode in ((papers.DENSENET_T3, "center"),
                                 (papers.DENSENET_T3_10CROP, "ten_crop"))
         for row in papers.rows(table, {"DenseNet-121": {"model.name": "densenet121",
                                                          "eval_mode": mode}})]


def get_config():
  config = default_config()
  config.model.name = "densenet121"
  config.data.name = "imagenet2012"
  config.num_epochs = 6.0
  return config
'''


def test_compare_uses_the_tests_an_eval_job_recorded_on_the_final_checkpoint(tmp_path):
  """A run trained with centre evaluations, then `--config.job=eval
  --config.eval_mode=ten_crop` on its checkpoint: the 10-crop row of DenseNet's
  Table 3 takes that recorded evaluation; an earlier checkpoint's is not used."""
  cfg = tmp_path / "ten_crop_config.py"
  cfg.write_text(TEN_CROP_CONFIG)
  d = tmp_path / "sweep"
  variants = []
  for seed, final, ten in ((0, 0.26, 0.241), (1, 0.25, 0.239)):
    name, ov = f"seed={seed}", {"seed": seed}
    variants.append({"name": name, "overrides": ov})
    write_run(str(d / name), train_error=decay(0.5, 0.1, 6), dev_error=decay(0.6, final, 6),
              overrides=ov)
    with open(d / name / "evaluations.jsonl", "w") as f:
      for step, mode, acc in ((30, "ten_crop", 0.5), (60, "center", 1 - final),
                              (60, "ten_crop", 1 - ten)):
        f.write(json.dumps({"step": step, "eval_mode": mode, "eval_image_size": None,
                            "validation": {"accuracy": acc, "loss": 1.0}}) + "\n")
  with open(d / "sweep.json", "w") as f:
    json.dump({"config": str(cfg), "arg": "", "variants": variants}, f)
  df = results.compare(str(d), verbose=False)
  assert list(df["metric"]) == ["ImageNet top-1 error (%), single crop",
                                "ImageNet top-1 error (%), 10-crop"]
  np.testing.assert_allclose(df["ours"], [25.5, 24.0], atol=1e-6)
  assert list(df["n"]) == [2, 2] and set(df["budget"]) == {"full"}
  np.testing.assert_allclose(df["diff"], [25.5 - 25.02, 24.0 - 23.61], atol=1e-6)


def test_variants_trained_on_different_core_counts_are_said_to_differ(sweep_dir):
  """On a CPU a variant's float sums follow its core count: the runner records it and
  the table says when the runs differ in it."""
  runs = results.load(str(sweep_dir))
  assert "cores" in runs.columns and "different numbers of CPU cores" not in results.table(runs)
  for name, cores in (("depth=8,seed=0", 2), ("depth=8,seed=1", 1)):
    path = sweep_dir / name / "variant.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "cores": cores}))
  runs = results.load(str(sweep_dir))
  assert sorted(runs["cores"].dropna().astype(int)) == [1, 2]
  assert "different numbers of CPU cores (1, 2" in results.table(runs)


def test_the_sweep_runner_records_the_cores_of_each_variant(tmp_path):
  from flaxcnn import sweep
  from conftest import tiny_config
  records = sweep.run(tiny_config(), str(tmp_path), sweep=[{"seed": 0}],
                      train_fn=lambda cfg, vdir, cache: {}, compilation_cache=False)
  assert records[0]["cores"] == len(os.sched_getaffinity(0)) and records[0]["devices"]
