"""Ablation: additive vs multiplicative widening in PyramidNet (Han, Kim, Kim 2017,
"Deep Pyramidal Residual Networks", Section 3 and Section 4.1, Figure 6: CIFAR test
error of additive and multiplicative PyramidNet-110 at matched parameter budgets).

  additive        D_k = D_{k-1} + alpha / N          (model.kwargs.widening='additive')
  multiplicative  D_k = D_{k-1} * alpha^(1/N)         ('multiplicative')
PyramidNet-110 pairs at about the same number of parameters (official README):
  1.7M: additive alpha 48  / multiplicative alpha 4.75
  3.8M: additive alpha 84  / multiplicative alpha 8
  28.3M: additive alpha 270 / multiplicative alpha 27
(presets pyramidnet110_a48, _mul_a4_75, _a84, _mul_a8, _a270, _mul_a27). The paper:
additive widening is better, increasingly so for larger networks.

Recipe: experiments/pyramidnet.py (batch 128, 300 epochs, lr 0.1 (C10) / 0.5 (C100)
/10 at 150 and 225, Nesterov, weight decay 1e-4). `cifar100` switches the dataset
(and the learning rate); `seeds=N` repeats every variant.

  python launch.py --config=experiments/ablations/pyramidnet_widening.py --workdir=runs/pyramidnet_widening --sweep
  python launch.py --config=experiments/ablations/pyramidnet_widening.py --workdir=runs/pyramidnet_widening --list_variants
  python launch.py --config=experiments/ablations/pyramidnet_widening.py --workdir=runs/pyramidnet_widening --sweep_index=0
"""
import os

from flaxcnn import papers, sweep
from flaxcnn.config import parse_arg

_EXP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PAIRS = (("pyramidnet110_a48", "pyramidnet110_mul_a4_75"),
         ("pyramidnet110_a84", "pyramidnet110_mul_a8"),
         ("pyramidnet110_a270", "pyramidnet110_mul_a27"))
PAPER = [row for table, arg in ((papers.PYRAMIDNET_T4_C10, ""),
                                (papers.PYRAMIDNET_T4_C100, "cifar100"))
         for row in papers.rows(table, {
             f"PyramidNet-110 alpha={add.split('_a')[1]}": {"model.name": add}
             for add, _ in PAIRS}, arg=arg)]
PAPER_UNREPORTED = "multiplicative widening appears only in Figure 6 (curves, no numbers)"


def _options(arg):
  return parse_arg(arg, "pyramidnet_widening.py", dataset=("cifar10", "cifar100"), seeds=1)


def get_config(arg: str = ""):
  opts = _options(arg)
  return sweep.load_module(os.path.join(_EXP, "pyramidnet.py")).get_config(opts["dataset"])


def get_sweep(arg: str = ""):
  return sweep.product(sweep.axis("model.name", [m for pair in PAIRS for m in pair]),
                       sweep.seeds(_options(arg)["seeds"]))
