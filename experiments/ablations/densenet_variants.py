"""Ablation: DenseNet, DenseNet-B, DenseNet-C and DenseNet-BC (Huang et al. 2017,
"Densely Connected Convolutional Networks", Section 3 "Bottleneck layers" /
"Compression" and Section 5 "Discussion", Figure 4 left: C10+ test error against
the number of parameters of the four variants).

  DenseNet     bottleneck=False, compression=1.0
  DenseNet-B   bottleneck=True  (BN-ReLU-conv1x1 to 4k channels before each 3x3)
  DenseNet-C   compression=0.5  (transitions halve the channels)
  DenseNet-BC  both
each at depth L in {40, 100} with growth rate k = 12 (model.kwargs.bottleneck,
.compression, .depth, .growth_rate of the CIFAR DenseNet). The paper: DenseNet-BC
is the most parameter-efficient (about 3x fewer parameters than DenseNet for the
same error).

Recipe: experiments/densenet_bc_100_12.py (batch 64, 300 epochs, lr 0.1 /10 at 50%
and 75%, Nesterov 0.9, weight decay 1e-4, crop + flip). `cifar100` switches the
dataset; `seeds=N` repeats every variant.

  python launch.py --config=experiments/ablations/densenet_variants.py --workdir=runs/densenet_variants --sweep
  python launch.py --config=experiments/ablations/densenet_variants.py --workdir=runs/densenet_variants --list_variants
  python launch.py --config=experiments/ablations/densenet_variants.py --workdir=runs/densenet_variants --sweep_index=0
"""
import os

from flaxcnn import papers, sweep
from flaxcnn.config import parse_arg

_EXP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VARIANTS = (("DenseNet", False, 1.0), ("DenseNet-B", True, 1.0),
            ("DenseNet-C", False, 0.5), ("DenseNet-BC", True, 0.5))
DEPTHS = (40, 100)
GROWTH_RATE = 12
PAPER = [row for table, arg in ((papers.DENSENET_T2_C10, ""),
                                (papers.DENSENET_T2_C100, "cifar100"))
         for row in papers.rows(table, {
             f"{name} L={depth} k={GROWTH_RATE}": {
                 "model.kwargs.bottleneck": b, "model.kwargs.compression": c,
                 "model.kwargs.depth": depth, "model.kwargs.growth_rate": GROWTH_RATE}
             for name, b, c in VARIANTS for depth in DEPTHS
             if f"{name} L={depth} k={GROWTH_RATE}" in table.values}, arg=arg)]
PAPER_UNREPORTED = ("DenseNet-B, DenseNet-C and DenseNet-BC L=40 appear only in Figure 4 "
                    "(curves, no numbers)")


def _options(arg):
  return parse_arg(arg, "densenet_variants.py", dataset=("cifar10", "cifar100"), seeds=1)


def get_config(arg: str = ""):
  opts = _options(arg)
  config = sweep.load_module(os.path.join(_EXP, "densenet_bc_100_12.py")).get_config(
      opts["dataset"])
  config.model.kwargs.growth_rate = GROWTH_RATE
  return config


def get_sweep(arg: str = ""):
  variants = sweep.zip(sweep.axis("model.kwargs.bottleneck", [b for _, b, _ in VARIANTS]),
                       sweep.axis("model.kwargs.compression", [c for _, _, c in VARIANTS]))
  return sweep.product(variants, sweep.axis("model.kwargs.depth", list(DEPTHS)),
                       sweep.seeds(_options(arg)["seeds"]))
