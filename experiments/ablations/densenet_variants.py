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

from flaxcnn import sweep

_EXP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VARIANTS = (("DenseNet", False, 1.0), ("DenseNet-B", True, 1.0),
            ("DenseNet-C", False, 0.5), ("DenseNet-BC", True, 0.5))
DEPTHS = (40, 100)
GROWTH_RATE = 12


def _options(arg):
  opts = {"seeds": 1, "dataset": ""}
  for p in (p.strip() for p in arg.split(",") if p.strip()):
    if p.startswith("seeds="):
      opts["seeds"] = int(p.split("=", 1)[1])
    elif p == "cifar100":
      opts["dataset"] = "cifar100"
    else:
      raise ValueError(f"densenet_variants.py: unknown argument {p!r}; use seeds=N, cifar100")
  return opts


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
