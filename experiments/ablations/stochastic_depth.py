"""Ablation: stochastic depth survival probabilities (Huang et al. 2016, "Deep
Networks with Stochastic Depth", Section 5 "Analytic experiments", Figure 8 left:
CIFAR-10 test error of the 110-layer ResNet against p_L, for the linear decay rule
and for a constant ("uniform") survival probability).

Grid: model.kwargs.stochastic_depth_decay in {linear, constant} x
model.kwargs.stochastic_depth (p_L, the last block's survival probability for
linear decay, every block's for constant) in {0.1, ..., 0.9}, plus p_L = 1
(constant depth, the plain ResNet-110 baseline; the same for both rules, run once).
The paper: linear decay beats constant for every p_L, and p_L = 0.5 is a good
choice (adopted in all its other experiments); with constant decay a p_L that is
too small fails.

Recipe: experiments/stochastic_depth_resnet110.py (500 epochs, lr 0.1 /10 at 250
and 375, Nesterov, weight decay 1e-4, 45k/5k split, inference-time scaling by p_l,
blocks dropped per mini-batch and skipped: model.kwargs.stochastic_depth_per=batch).
`cifar100` switches the dataset; `seeds=N` repeats every variant.

  python launch.py --config=experiments/ablations/stochastic_depth.py --workdir=runs/stochastic_depth --sweep
  python launch.py --config=experiments/ablations/stochastic_depth.py --workdir=runs/stochastic_depth --list_variants
  python launch.py --config=experiments/ablations/stochastic_depth.py --workdir=runs/stochastic_depth --sweep_index=0
"""
import os

from flaxcnn import sweep
from flaxcnn.config import parse_arg

_EXP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DECAYS = ("linear", "constant")
P_L = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _options(arg):
  return parse_arg(arg, "stochastic_depth.py", seeds=1, dataset=("cifar10", "cifar100"))


def get_config(arg: str = ""):
  opts = _options(arg)
  return sweep.load_module(os.path.join(_EXP, "stochastic_depth_resnet110.py")).get_config(
      opts["dataset"])


def get_sweep(arg: str = ""):
  grid = sweep.product(sweep.axis("model.kwargs.stochastic_depth_decay", list(DECAYS)),
                       sweep.axis("model.kwargs.stochastic_depth", list(P_L)))
  baseline = sweep.axis("model.kwargs.stochastic_depth", [1.0])
  return sweep.product(sweep.chain(baseline, grid), sweep.seeds(_options(arg)["seeds"]))


# ----------------------------------------------------------------------------- paper rows
# The published results this sweep reproduces (flaxcnn.papers; compared by
# `python -m flaxcnn.results DIR --paper`): Huang et al. 2016, Table 1.
from flaxcnn import papers  # noqa: E402

PAPER = [row for table, arg in ((papers.SD_T1_C10, ""), (papers.SD_T1_C100, "cifar100"))
         for row in papers.rows(table, {
             "ResNet-110 constant depth": {"model.kwargs.stochastic_depth": 1.0},
             "ResNet-110 stochastic depth": {"model.kwargs.stochastic_depth_decay": "linear",
                                             "model.kwargs.stochastic_depth": 0.5}}, arg=arg)]
PAPER_UNREPORTED = "Figure 8 plots the other survival probabilities (curves, no numbers)"
