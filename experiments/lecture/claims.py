"""The lecture's claims: for each, its stages (experiment files or benchmarks), what is
collected from its runs, how its direction is judged, its figure and its page section.
`run.py` runs and collects them; the numbers are never typed here, only the rules."""
import dataclasses
import json
import os
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from flaxcnn import results
from flaxcnn import workdir as workdir_lib


@dataclasses.dataclass
class Stage:
  name: str                      # its folder under WORKDIR/<claim> ('' = the claim's own)
  file: str = ""                 # experiments/lecture/<file>
  arg: str = ""                  # the file's argument ({workdir}: WORKDIR/<claim>)
  sweep: bool = True
  benchmark: str = ""            # or benchmarks/<benchmark>, with these arguments
  benchmark_args: Tuple[str, ...] = ()
  smoke_args: Tuple[str, ...] = ()

  def args_for(self, budget):
    return list(self.smoke_args if budget == "smoke" else self.benchmark_args)


@dataclasses.dataclass
class Claim:
  key: str
  title: str
  lecture: str
  paper: str
  claim: str
  budget: str
  stages: Sequence[Stage]
  collect: Callable            # claim directory -> (result dict, curves DataFrame or None)
  figure: Callable             # (result, curves, path or None) -> Figure
  images: Optional[Callable] = None   # (claim directory, out) -> more figures' file names


# ----------------------------------------------------------------------------- helpers

def _stats(values) -> dict:
  v = np.asarray([x for x in values if x == x], float)
  return {"values": v.tolist(), "mean": float(v.mean()) if len(v) else None,
          "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": int(len(v))}


def _pct(s: dict) -> str:
  if s["mean"] is None:
    return "n/a"
  return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}%" if s["n"] > 1 else \
      f"{100 * s['mean']:.2f}%"


def _status(runs) -> dict:
  counts = runs["status"].value_counts().to_dict() if len(runs) else {}
  wall = runs["wall_time"].astype(float) if "wall_time" in runs else pd.Series([], dtype=float)
  return {"runs": int(len(runs)), "finished": int(counts.get("finished", 0)),
          "status": {str(k): int(v) for k, v in counts.items()},
          "wall_time_s": float(np.nansum(wall)),
          "complete": bool(len(runs)) and counts.get("finished", 0) == len(runs)}


def _per_run(runs, arm_of, columns) -> list:
  out = []
  for _, r in runs.iterrows():
    row = {"arm": arm_of(r), "seed": int(r["seed"]), "status": r["status"],
           "wall_time_s": float(r["wall_time"]) if r["wall_time"] == r["wall_time"] else None}
    for c in columns:
      v = r.get(c, np.nan)
      row[c] = float(v) if isinstance(v, (int, float, np.floating)) and v == v else (
          v if isinstance(v, str) else None)
    out.append(row)
  return out


def _arm_stats(per_run, arms, metric) -> dict:
  return {a: _stats([r[metric] for r in per_run if r["arm"] == a and r[metric] is not None
                     and r["status"] == "finished"]) for a in arms}


def _curves(curves, arm_of_row, keep=("split", "step", "epoch", "error", "loss")):
  c = curves.copy()
  c.insert(0, "arm", [arm_of_row(r) for _, r in c.iterrows()])
  return c[["arm", "seed", *keep]]


def _verdict(complete: bool, shown: bool) -> str:
  if not complete:
    return "incomplete (not every run has finished)"
  return "shown" if shown else "not shown at this budget"


# ----------------------------------------------------------------------------- depth

DEPTH_ARMS = {"plain20_cifar": "plain-20", "plain56_cifar": "plain-56",
              "resnet20_cifar": "ResNet-20", "resnet56_cifar": "ResNet-56"}


def collect_depth(path):
  runs, curves = results.load(path, curves=True)
  arm = lambda r: DEPTH_ARMS.get(r["name"], r["name"])   # noqa: E731
  per_run = _per_run(runs, arm, ["final_train_error", "final_validation_error"])
  arms = list(DEPTH_ARMS.values())
  train = _arm_stats(per_run, arms, "final_train_error")
  val = _arm_stats(per_run, arms, "final_validation_error")
  st = _status(runs)
  ok = all(train[a]["mean"] is not None for a in arms)
  plain_worse = ok and train["plain-56"]["mean"] > train["plain-20"]["mean"]
  resnet_not_worse = ok and train["ResNet-56"]["mean"] <= train["ResNet-20"]["mean"]
  saw = (f"final training error (mean ± std over seeds): plain-20 {_pct(train['plain-20'])}, "
         f"plain-56 {_pct(train['plain-56'])}; ResNet-20 {_pct(train['ResNet-20'])}, "
         f"ResNet-56 {_pct(train['ResNet-56'])}. Validation error: plain-20 "
         f"{_pct(val['plain-20'])}, plain-56 {_pct(val['plain-56'])}, ResNet-20 "
         f"{_pct(val['ResNet-20'])}, ResNet-56 {_pct(val['ResNet-56'])}.")
  if ok:   # how much the 36 extra layers cost each family, in training error
    penalty = {f: 100 * (train[f"{f}-56"]["mean"] - train[f"{f}-20"]["mean"])
               for f in ("plain", "ResNet")}
    saw += (f" Going from 20 to 56 layers changes the training error by "
            f"{penalty['plain']:+.2f} points for the plain nets and {penalty['ResNet']:+.2f} "
            f"for the ResNets.")
  return dict(st, runs_detail=per_run, final_train_error=train, final_validation_error=val,
              checks={"plain-56 trains worse than plain-20": plain_worse,
                      "ResNet-56 trains no worse than ResNet-20": resnet_not_worse},
              verdict=_verdict(st["complete"], plain_worse and resnet_not_worse),
              saw=saw), _curves(curves, arm)


def figure_depth(result, curves, path):
  return results.plot_mean_curves(curves, "arm", splits=("train",),
                           panels=[["plain-20", "plain-56"], ["ResNet-20", "ResNet-56"]],
                           title="CIFAR-10 (JPEG q75) training error: plain nets (left), "
                                 "ResNets (right)", path=path)


# ----------------------------------------------------------------------------- overfitting

def _overfit_arm(r) -> str:
  if float(r.get("cutout", 0) or 0):
    return f"Cutout {int(r['cutout'])}"
  if float(r.get("weight_decay", 0) or 0):
    return f"weight decay {float(r['weight_decay']):g}"
  return "baseline"


def _plateau_step(train, tol=0.01):
  """The first step from which the training error stays within `tol` of its final."""
  err, steps = train["error"].to_numpy(float), train["step"].to_numpy()
  within = np.abs(err - err[-1]) <= tol
  i = len(err) - 1
  while i > 0 and within[i - 1]:
    i -= 1
  return int(steps[i])


def collect_overfitting(path):
  runs, curves = results.load(path, curves=True)
  per_run = _per_run(runs, _overfit_arm, ["final_train_error", "final_validation_error",
                                          "best_validation_error", "train_dev_gap", "advice"])
  for row, (_, r) in zip(per_run, runs.iterrows()):
    c = curves[curves.run == r["run"]]
    train, val = c[c.split == "train"], c[c.split == "validation"]
    row["train_plateau_step"] = _plateau_step(train) if len(train) else None
    row["validation_best_step"] = int(val.loc[val["error"].astype(float).idxmin(), "step"]) \
        if len(val) else None
  arms = list(dict.fromkeys(r["arm"] for r in per_run))
  val = _arm_stats(per_run, arms, "final_validation_error")
  gap = _arm_stats(per_run, arms, "train_dev_gap")
  train = _arm_stats(per_run, arms, "final_train_error")
  st = _status(runs)
  regs = [a for a in arms if a != "baseline"]
  ok = "baseline" in arms and all(val[a]["mean"] is not None for a in arms)
  better = {a: ok and val[a]["mean"] < val["baseline"]["mean"] for a in regs}
  large_gap = ok and gap["baseline"]["mean"] > 0.10
  done = [r for r in per_run if r["status"] == "finished" and r["train_plateau_step"]]
  later = sum(r["validation_best_step"] >= r["train_plateau_step"] for r in done)
  saw = ("final validation error: " + "; ".join(f"{a} {_pct(val[a])} (train {_pct(train[a])}, "
                                                f"gap {_pct(gap[a])})" for a in arms)
         + f". Validation stopped improving at or after the training error plateaued "
           f"(within 1 point of its final value) in {later} of {len(done)} runs.")
  checks = {f"{a} lowers the validation error": better[a] for a in regs}
  checks["the baseline's train/validation gap is large (> 10 points)"] = large_gap
  checks["validation stops improving no earlier than training plateaus (most runs)"] = \
      bool(done) and later * 2 > len(done)
  return dict(st, runs_detail=per_run, final_validation_error=val, train_dev_gap=gap,
              final_train_error=train, checks=checks,
              verdict=_verdict(st["complete"], all(checks.values())), saw=saw), \
      _curves(curves, _overfit_arm)


def figure_overfitting(result, curves, path):
  return results.plot_mean_curves(curves, "arm", x="step",
                           title="ResNet-20, 1,000 CIFAR-10 (JPEG q75) images: train "
                                 "(dashed), validation (solid)", path=path)


# ----------------------------------------------------------------------------- transfer

TRANSFER_ARMS = ("scratch", "features + linear head", "fine-tuned", "fine-tuned, BN frozen")


def _transfer_arm(r) -> str:
  if r.get("job") == "features":
    return TRANSFER_ARMS[1]
  if not isinstance(r.get("init_from"), str) or r.get("init_from") in ("None", ""):
    return TRANSFER_ARMS[0]
  return TRANSFER_ARMS[3] if r.get("freeze_bn") in (True, "True") else TRANSFER_ARMS[2]


def collect_transfer(path):
  runs, curves = results.load(os.path.join(path, "target"), curves=True)
  source = results.load(os.path.join(path, "pretrain"))
  per_run = _per_run(runs, _transfer_arm, ["final_train_error", "final_validation_error"])
  val = _arm_stats(per_run, TRANSFER_ARMS, "final_validation_error")
  st = _status(runs)
  st["wall_time_s"] += float(np.nansum(source["wall_time"])) if len(source) else 0.0
  m = {a: val[a]["mean"] for a in TRANSFER_ARMS}
  ok = all(v is not None for v in m.values())
  checks = {"features beat scratch": ok and m[TRANSFER_ARMS[1]] < m[TRANSFER_ARMS[0]],
            "fine-tuning beats features": ok and m[TRANSFER_ARMS[2]] < m[TRANSFER_ARMS[1]]}
  src = float(source["final_validation_error"].iloc[0]) if len(source) else None
  saw = ("validation error on the 5 target classes: " + "; ".join(
      f"{a} {_pct(val[a])}" for a in TRANSFER_ARMS)
      + (f". The backbone's own validation error on its 5 source classes: {100 * src:.2f}%."
         if src is not None else "")
      + " The features arm is deterministic given the backbone (its seeds agree); one "
        "backbone, trained once, serves every arm.")
  complete = st["complete"] and len(source) == 1 and source["status"].iloc[0] == "finished"
  trained = curves[curves.split.isin(["train", "validation"])]
  return dict(st, complete=complete, runs_detail=per_run, final_validation_error=val,
              source_validation_error=src, checks=checks,
              verdict=_verdict(complete, all(checks.values())), saw=saw), \
      _curves(trained, _transfer_arm)


def figure_transfer(result, curves, path):
  runs = pd.DataFrame(result["runs_detail"])
  runs = runs[runs.status == "finished"]
  return results.plot_arms(runs, "arm", ["final_validation_error"],
                    title="5 CIFAR-10 (JPEG q75) classes, 100 images each: validation "
                          "error", path=path)


# ----------------------------------------------------------------------------- segmentation

def _background_share(run_dir) -> Optional[float]:
  """The all-background prediction's pixel accuracy on the run's test images."""
  from flaxcnn.tasks import segmentation
  if workdir_lib.read_config_json(run_dir) is None:
    return None                   # not started yet: no baseline
  config = workdir_lib.read_config(run_dir)
  masks = segmentation.load_dataset(config).splits["test"].labels
  return float(np.mean(np.asarray(masks) == 0))


def collect_segmentation(path):
  runs = results.load(path)
  per_run, rows = [], []
  for _, r in runs.iterrows():
    test = workdir_lib.read_summary(r["path"]).get("test") or {}
    per_run.append({"arm": "U-Net", "seed": int(r["seed"]), "status": r["status"],
                    "wall_time_s": float(r["wall_time"]) if r["wall_time"] == r["wall_time"]
                    else None, "test_mean_iou": test.get("mean_iou"),
                    "test_pixel_accuracy": test.get("accuracy")})
    for rec in results.read_metrics(r["path"]):
      if rec.get("split") in ("validation", "train"):
        rows.append({"arm": "U-Net", "seed": int(r["seed"]), "split": rec["split"],
                     "step": rec["step"], "epoch": rec.get("epoch"), "loss": rec.get("loss"),
                     "mean_iou": rec.get("mean_iou"), "error": 1 - rec.get("accuracy", np.nan)})
  st = _status(runs)
  done = [r for r in per_run if r["status"] == "finished"]
  miou = _stats([r["test_mean_iou"] for r in done if r["test_mean_iou"] is not None])
  acc = _stats([r["test_pixel_accuracy"] for r in done if r["test_pixel_accuracy"] is not None])
  share = _background_share(runs["path"].iloc[0]) if len(runs) else None
  base = {"pixel_accuracy": share, "mean_iou": share / 2 if share is not None else None}
  shown = miou["mean"] is not None and share is not None and miou["mean"] > base["mean_iou"] + 0.3
  saw = (f"test mean IoU {_pct(miou)}, pixel accuracy {_pct(acc)}; predicting background "
         f"everywhere scores {100 * share:.2f}% pixel accuracy and {50 * share:.2f}% mean IoU."
         if share is not None and miou["mean"] is not None else "no finished run yet.")
  saw += (" Below the curves: four validation images of seed 0 after training, each as "
          "image | true mask | predicted mask.")
  result = dict(st, runs_detail=per_run, test_mean_iou=miou, test_pixel_accuracy=acc,
                all_background=base,
                checks={"mean IoU far above all-background (by > 30 points)": shown},
                verdict=_verdict(st["complete"], shown), saw=saw, images=[])
  return result, pd.DataFrame(rows)


def copy_masks(claim_dir, out) -> list:
  """The first seed's last validation panels (image | true mask | predicted mask),
  enlarged 4x for the page."""
  from PIL import Image
  src = os.path.join(claim_dir, "seed=0", "images", "validation_predictions.png")
  if not os.path.exists(src):
    return []
  image = Image.open(src)
  image.resize((image.width * 4, image.height * 4), Image.NEAREST).save(
      os.path.join(out, "segmentation_masks.png"))
  return ["segmentation_masks.png"]


def figure_segmentation(result, curves, path):
  val = curves[curves.split == "validation"]
  return results.plot_mean_curves(val, "arm", metric="mean_iou", splits=("validation",),
                           paper={"U-Net": result["all_background"]["mean_iou"]}
                           if result["all_background"]["mean_iou"] is not None else None,
                           labels={"U-Net": "U-Net"}, paper_label="all-background",
                           title="Craters: validation mean IoU (dotted: all-background)",
                           path=path)


# ----------------------------------------------------------------------------- compute

def collect_compute(path):
  def read(name):
    try:
      with open(os.path.join(path, name + ".json")) as f:
        return json.load(f)
    except (OSError, ValueError):
      return None
  sd, dense = read("stochastic_depth"), read("densenet_memory")
  checks, saw = {}, []
  if sd:
    r = dict(zip(sd["p_L"], sd["ratio"]))
    checks["per-batch stochastic depth at p_L=0.5 saves time (step <= 0.85x)"] = \
        r.get(0.5, 1.0) <= 0.85
    saw.append(f"{sd['model']} step time with per-batch stochastic depth vs without, batch "
               f"{sd['batch']}: " + ", ".join(f"p_L={p:g} {t:.2f}x (expected compute "
                                              f"{e:.2f}x)" for p, t, e in
                                              zip(sd["p_L"], sd["ratio"], sd["expected"])))
  if dense:
    v = dense["variants"]
    ratio = v["memory_efficient"]["temp_bytes"] / v["plain"]["temp_bytes"]
    checks["memory-efficient DenseNet needs less memory"] = ratio < 1
    saw.append(f"{dense['model']} batch {dense['batch']}: compiled step's temporary memory "
               f"{v['memory_efficient']['temp_bytes'] / 2**20:.0f} MiB memory-efficient vs "
               f"{v['plain']['temp_bytes'] / 2**20:.0f} MiB plain ({ratio:.2f}x), step time "
               f"{v['memory_efficient']['step_s'] / v['plain']['step_s']:.2f}x")
  complete = sd is not None and dense is not None
  return dict(runs=2, finished=int(sd is not None) + int(dense is not None), complete=complete,
              wall_time_s=float((sd or {}).get("seconds", 0) + (dense or {}).get("seconds", 0)),
              stochastic_depth=sd, densenet_memory=dense, checks=checks,
              verdict=_verdict(complete, all(checks.values())), saw=". ".join(saw) + "."), None


def figure_compute(result, curves, path):
  from matplotlib.figure import Figure
  fig = Figure(figsize=(9, 3.2), layout="constrained")
  a, b = fig.subplots(1, 2)
  sd, dense = result.get("stochastic_depth"), result.get("densenet_memory")
  if sd:
    a.plot(sd["p_L"], sd["ratio"], "o-", label="measured step time")
    a.plot(sd["p_L"], sd["expected"], "k:", label="expected compute (blocks kept)")
    a.set_xlabel("p_L (survival of the last block)")
    a.set_ylabel("step time / step without SD")
    a.invert_xaxis()
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    a.set_title(f"{sd['model']}, per-batch stochastic depth", fontsize=9)
  if dense:
    names = list(dense["variants"])
    mem = [dense["variants"][n]["temp_bytes"] / 2**20 for n in names]
    b.bar(range(len(names)), mem, color=[f"C{i}" for i in range(len(names))])
    b.set_xticks(range(len(names)))
    b.set_xticklabels([n.replace("_", " ") for n in names], fontsize=8)
    b.set_ylabel("step temporary memory (MiB)")
    b.set_title(f"{dense['model']}, batch {dense['batch']}", fontsize=9)
    b.grid(alpha=0.3, axis="y")
  if path:
    fig.savefig(path, dpi=100)
  return fig


# ----------------------------------------------------------------------------- the claims

_SD_ARGS = ("--p_L=1.0,0.75,0.5", "--steps=8", "--model=resnet56_cifar")
CLAIMS = [
    Claim("overfitting", "Under- and overfitting",
          "Designing and Training Neural Networks (underfitting, overfitting, when to stop); "
          "the regularization slides (Cutout, weight decay)",
          "DeVries & Taylor 2017, Table 1 (Cutout on CIFAR-10)",
          "on little data the train/validation gap is large; stronger regularization lowers "
          "the validation error; validation stops improving later than training plateaus",
          "ResNet-20, 1,000 training images, 500 steps of the recipe; 3 seeds",
          [Stage("", "overfitting.py")], collect_overfitting, figure_overfitting),
    Claim("depth", "Depth and residual connections", "ResNet (the degradation problem)",
          "He et al. 2015, Figures 1 and 6",
          "plain-56 trains to a higher training error than plain-20; ResNet-56 does not "
          "train worse than ResNet-20",
          "the paper's recipe over 800 steps (2.3 epochs) instead of 64,000; 3 seeds for "
          "the 20-layer nets, 2 for the 56-layer ones",
          [Stage("", "depth.py")], collect_depth, figure_depth),
    Claim("compute", "Compute the papers saved",
          "Deep Networks with Stochastic Depth; DenseNet (memory-efficient implementation)",
          "Huang et al. 2016 (Sec. 4: training time); Pleiss et al. 2017",
          "per-batch stochastic depth skips dropped blocks and shortens the step; the "
          "memory-efficient DenseNet recomputes and keeps less memory",
          "benchmarks/compute.py (ResNet-56, batch 32, 8 steps) and "
          "benchmarks/densenet_memory.py (DenseNet-BC-100-12, batch 64, 2 steps)",
          [Stage("stochastic_depth", sweep=False, benchmark="compute.py",
                 benchmark_args=("--sd_curve", *_SD_ARGS),
                 smoke_args=("--sd_curve", "--p_L=1.0,0.5", "--steps=2", "--batch=2",
                             "--model=resnet20_cifar")),
           Stage("densenet_memory", sweep=False, benchmark="densenet_memory.py",
                 benchmark_args=("--steps=2", "--variants=plain,memory_efficient"),
                 smoke_args=("--steps=1", "--batch=2", "--model=densenet_40_12"))],
          collect_compute, figure_compute),
    Claim("transfer", "Transfer learning and fine-tuning",
          "Transfer Learning; Transfer Learning - Finetuning", "(the lecture's recipe)",
          "features of a pretrained backbone beat training from scratch on little data; "
          "fine-tuning (head first, then all at 0.1x the lr) improves further",
          "backbone: ResNet-20, 1,000 steps on classes 0-4; target: classes 5-9, 100 images "
          "each, 300 steps per arm; 3 seeds",
          [Stage("pretrain", "transfer.py", "stage=pretrain", sweep=False),
           Stage("target", "transfer.py", "backbone={workdir}/pretrain")],
          collect_transfer, figure_transfer),
    Claim("segmentation", "Segmentation with transposed convolutions",
          "Transposed Convolution (U-Net)", "Ronneberger et al. 2015, Figure 1",
          "the U-Net's predicted masks match the true ones",
          "unet_small on 2,048 generated 32x32 crater images, 512 steps; 3 seeds",
          [Stage("", "segmentation.py")], collect_segmentation, figure_segmentation,
          images=copy_masks),
]


# ----------------------------------------------------------------------------- the page

def page_header() -> str:
  return """# The lecture on a laptop

Each claim of the lecture (NPFL114, "Convolutional Neural Networks II") that a 2-core
CPU can show in about an hour, as a declared experiment (`experiments/lecture/`), run
with several seeds. Every run of every seed is counted; a claim that does not show at
this budget is reported as not shown. The figures and this page are drawn from the
results files beside them (`docs/lecture/*.json`, `*_curves.csv`) by

    python experiments/lecture/run.py            # run (or resume) every claim, redraw
    python experiments/lecture/run.py --page_only  # redraw from the results files

and `--budget=paper` runs the same experiments at the papers' budgets (a GPU).
Thin lines are single seeds, thick lines their mean; errors are in %. A claim's wall
time is the sum of its runs' own; runs at times shared the cores with another sweep,
so these are upper bounds for the command alone.
Accuracies on "CIFAR-10 (JPEG q75)": the 50,000 training images as JPEG at quality
75, with a fixed 5,000 held out for validation.

"""


def _wall(seconds) -> str:
  return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _runs_table(result) -> str:
  rows = result.get("runs_detail") or []
  if not rows:
    return ""
  cols = [c for c in rows[0] if c not in ("arm", "seed", "status", "advice")]
  head = "| arm | seed | status | " + " | ".join(c.replace("_", " ") for c in cols) + " |\n"
  head += "|---|---:|---|" + "---:|" * len(cols) + "\n"

  def fmt(c, v):
    if v is None:
      return "-"
    if c.endswith("_s"):
      return _wall(v)
    if isinstance(v, float) and ("error" in c or "gap" in c or "iou" in c or "accuracy" in c):
      return f"{100 * v:.2f}"
    return f"{v:g}" if isinstance(v, float) else str(v)
  body = "".join(f"| {r['arm']} | {r['seed']} | {r['status']} | "
                 + " | ".join(fmt(c, r.get(c)) for c in cols) + " |\n" for r in rows)
  advice = "".join(f"- {r['arm']}, seed {r['seed']}: {r['advice']}\n" for r in rows
                   if r.get("advice"))
  return head + body + ("\nThe diagnosis line of `flaxcnn.results` for each run:\n\n"
                        + advice if advice else "")


def section(result, figure: str) -> str:
  checks = "".join(f"- {k}: {'yes' if v else 'no'}\n" for k, v in result["checks"].items())
  images = "".join(f"\n![{i}]({os.path.join(os.path.dirname(figure), i)})\n"
                   for i in result.get("images", []))
  return f"""## {result['title']}

Lecture: {result['lecture']}. Paper: {result['paper']}.

**Claim.** {result['claim'][0].upper() + result['claim'][1:]}.

**What we saw.** {result['saw']}

**Verdict: {result['verdict']}.** Checks:
{checks}
![{result['key']}]({figure})
{images}
{_runs_table(result)}
Budget: {result['budget']}. Machine: {result['machine']}. Runs: {result['finished']} of
{result['runs']} finished, {_wall(result['wall_time_s'])} of training in all (collected
{result['collected']}). Reproduce: `{result['command']}`; its stages:
{"".join(f"`{s}`; " for s in result['stages'])[:-2]}.

"""

