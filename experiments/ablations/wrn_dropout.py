"""Ablation: dropout inside the wide residual block (Zagoruyko & Komodakis 2016,
"Wide Residual Networks", Section 3 "Dropout in residual blocks", Table 6:
CIFAR-10 and CIFAR-100 test error with and without dropout).

Networks of Table 6: WRN-16-4, WRN-28-10, WRN-52-1, each with dropout 0 and 0.3
between the convolutions of every block (after BN-ReLU, never on the shortcut;
model.kwargs.dropout). The paper: dropout helps consistently, most for the wide
networks on CIFAR-100 and in the thin deep WRN-52-1.

Recipe: experiments/wrn_28_10.py. `cifar100` switches the dataset; `seeds=N`
repeats every variant.

  python launch.py --config=experiments/ablations/wrn_dropout.py --workdir=runs/wrn_dropout --sweep
  python launch.py --config=experiments/ablations/wrn_dropout.py --workdir=runs/wrn_dropout --list_variants
  python launch.py --config=experiments/ablations/wrn_dropout.py --workdir=runs/wrn_dropout --sweep_index=0
"""
import os

from flaxcnn import papers, sweep
from flaxcnn.config import parse_arg

_EXP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
NETS = ((16, 4), (28, 10), (52, 1))
DROPOUT = (0.0, 0.3)
PAPER = [row for table, arg in ((papers.WRN_T6_C10, ""), (papers.WRN_T6_C100, "cifar100"))
         for row in papers.rows(table, {
             f"WRN-{d}-{k}{' dropout' if p else ''}": {
                 "model.kwargs.depth": d, "model.kwargs.widen_factor": k,
                 "model.kwargs.dropout": p}
             for d, k in NETS for p in DROPOUT}, arg=arg)]


def _options(arg):
  return parse_arg(arg, "wrn_dropout.py", dataset=("cifar10", "cifar100"), seeds=1)


def get_config(arg: str = ""):
  opts = _options(arg)
  config = sweep.load_module(os.path.join(_EXP, "wrn_28_10.py")).get_config(opts["dataset"])
  config.model.name = "wrn28_10"
  config.model.kwargs = {"depth": 28, "widen_factor": 10, "dropout": 0.0}
  return config


def get_sweep(arg: str = ""):
  return sweep.product(
      sweep.zip(sweep.axis("model.kwargs.depth", [d for d, _ in NETS]),
                sweep.axis("model.kwargs.widen_factor", [k for _, k in NETS])),
      sweep.axis("model.kwargs.dropout", list(DROPOUT)),
      sweep.seeds(_options(arg)["seeds"]))
