"""Ablation: WRN block types B(k_1, ..., k_m) at k = 2 (Zagoruyko & Komodakis 2016,
"Wide Residual Networks", Section 3 "Type of convolutions in residual block",
Table 2: CIFAR-10 test error, median of 5 runs).

Rows of Table 2 (all about 1.1M-1.5M parameters, named as in the paper):
  WRN-40-2 B(1,3,1), WRN-40-2 B(3,1), WRN-40-2 B(1,3), WRN-28-2 B(3,3),
  WRN-40-2 B(3,1,1), WRN-22-2 B(3,1,3)
(presets wrn40_2_b131, wrn40_2_b31, wrn40_2_b13, wrn28_2, wrn40_2_b311,
wrn22_2_b313; see flaxcnn/models/wide_resnet.py for the depth convention).
The paper found B(3,3) best by a small margin and used it afterwards.

Recipe: experiments/wrn_28_10.py (batch 128, 200 epochs, Nesterov SGD, lr 0.1
x0.2 at 60/120/160, weight decay 5e-4, crop + flip). `seeds=5` repeats each
variant as the paper's median of 5 runs; `cifar100` switches the dataset.

  python launch.py --config=experiments/ablations/wrn_block_types.py --workdir=runs/wrn_block_types --sweep
  python launch.py --config=experiments/ablations/wrn_block_types.py --workdir=runs/wrn_block_types --list_variants
  python launch.py --config=experiments/ablations/wrn_block_types.py --workdir=runs/wrn_block_types --sweep_index=0
"""
import os

from flaxcnn import papers, sweep
from flaxcnn.config import parse_arg

_EXP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODELS = {"wrn40_2_b131": "WRN-40-2 B(1,3,1)", "wrn40_2_b31": "WRN-40-2 B(3,1)",
          "wrn40_2_b13": "WRN-40-2 B(1,3)", "wrn28_2": "WRN-28-2 B(3,3)",
          "wrn40_2_b311": "WRN-40-2 B(3,1,1)", "wrn22_2_b313": "WRN-22-2 B(3,1,3)"}
PAPER = papers.rows(papers.WRN_T2, {label: {"model.name": m} for m, label in MODELS.items()})
PAPER_UNREPORTED = "Table 2 is CIFAR-10 only (no CIFAR-100 values)"


def _options(arg):
  return parse_arg(arg, "wrn_block_types.py", dataset=("cifar10", "cifar100"), seeds=1)


def get_config(arg: str = ""):
  opts = _options(arg)
  config = sweep.load_module(os.path.join(_EXP, "wrn_28_10.py")).get_config(opts["dataset"])
  config.model.name = "wrn28_2"
  config.model.kwargs = {}
  return config


def get_sweep(arg: str = ""):
  return sweep.product(sweep.axis("model.name", list(MODELS)),
                       sweep.seeds(_options(arg)["seeds"]))
