"""Ablation: WRN depth and widening factor k (Zagoruyko & Komodakis 2016, "Wide
Residual Networks", Section 3 "Width of residual blocks", Table 4: CIFAR-10 and
CIFAR-100 test error of B(3,3) networks).

Rows of Table 4 as (depth, k):
  WRN-40-1, 40-2, 40-4, 40-8, 28-10, 28-12, 22-8, 22-10, 16-8, 16-10
so k takes the values 1, 2, 4, 8, 10, 12 (model.kwargs.widen_factor, with
model.kwargs.depth). The paper: widening helps up to WRN-28-10; WRN-40-4 matches
the 1001-layer pre-activation ResNet while training 8x faster.

Recipe: experiments/wrn_28_10.py. `cifar100` switches the dataset; `seeds=N`
repeats every variant.

  python launch.py --config=experiments/ablations/wrn_width.py --workdir=runs/wrn_width --sweep
  python launch.py --config=experiments/ablations/wrn_width.py --workdir=runs/wrn_width --list_variants
  python launch.py --config=experiments/ablations/wrn_width.py --workdir=runs/wrn_width --sweep_index=0
"""
import os

from flaxcnn import papers, sweep
from flaxcnn.config import parse_arg

_EXP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ROWS = ((40, 1), (40, 2), (40, 4), (40, 8), (28, 10), (28, 12), (22, 8), (22, 10),
        (16, 8), (16, 10))
PAPER = [row for table, arg in ((papers.WRN_T4_C10, ""), (papers.WRN_T4_C100, "cifar100"))
         for row in papers.rows(table, {
             f"WRN-{d}-{k}": {"model.kwargs.depth": d, "model.kwargs.widen_factor": k,
                              "model.kwargs.dropout": 0.0}
             for d, k in ROWS if f"WRN-{d}-{k}" in table.values}, arg=arg)]
PAPER_UNREPORTED = "Table 4 has no CIFAR-100 value for WRN-40-8"


def _options(arg):
  return parse_arg(arg, "wrn_width.py", dataset=("cifar10", "cifar100"), seeds=1)


def get_config(arg: str = ""):
  opts = _options(arg)
  config = sweep.load_module(os.path.join(_EXP, "wrn_28_10.py")).get_config(opts["dataset"])
  config.model.name = "wrn28_10"
  config.model.kwargs = {"depth": 28, "widen_factor": 10, "dropout": 0.0}
  return config


def get_sweep(arg: str = ""):
  return sweep.product(
      sweep.zip(sweep.axis("model.kwargs.depth", [d for d, _ in ROWS]),
                sweep.axis("model.kwargs.widen_factor", [k for _, k in ROWS])),
      sweep.seeds(_options(arg)["seeds"]))
