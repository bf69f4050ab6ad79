"""Ablation: cardinality vs bottleneck width at equal complexity (Xie et al. 2017,
"Aggregated Residual Transformations for Deep Neural Networks", Section 5.1
"Cardinality vs. Width", Table 3: ImageNet-1K top-1 error, single 224x224 crop).

ResNeXt-50 settings (C x d) of Table 3, all about 4.1 GFLOPs / 25M parameters:
  1 x 64d (ResNet-50), 2 x 40d, 4 x 24d, 8 x 14d, 32 x 4d
(presets resnext50_1x64d ... resnext50_32x4d: model.kwargs.groups = C and
.width_per_group = d). `101` runs the ResNeXt-101 half of the table instead. The
paper: error falls as cardinality grows (23.9% -> 22.2% for 50 layers).

Recipe: experiments/imagenet.py's `resnext` (Sec. 4, the authors' fb.resnet.torch-based
code): batch 256, SGD with Nesterov momentum 0.9, weight decay 1e-4 (all parameters),
learning rate 0.1 divided by 10 three times, at epochs 30, 60 and 90 of 100, 224x224
random-resized crops (the scale and aspect ratio augmentation of Inception),
single centre crop evaluation. `seeds=N` repeats every variant.

  python launch.py --config=experiments/ablations/resnext_cardinality.py --workdir=runs/resnext_cardinality --sweep
  python launch.py --config=experiments/ablations/resnext_cardinality.py --workdir=runs/resnext_cardinality --list_variants
  python launch.py --config=experiments/ablations/resnext_cardinality.py --workdir=runs/resnext_cardinality --sweep_index=0
"""
import os

from flaxcnn import papers, sweep
from flaxcnn.config import parse_arg

_EXP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SETTINGS = papers.RESNEXT_SETTINGS     # (C, d): 1x64d, 2x40d, 4x24d, 8x14d, 32x4d
PAPER = [row for depth in (50, 101) for row in papers.rows(papers.RESNEXT_T3, {
    f"{'ResNet' if c == 1 else 'ResNeXt'}-{depth} ({c} x {d}d)": {
        "model.name": f"resnext{depth}_{c}x{d}d"} for c, d in SETTINGS},
    arg="" if depth == 50 else "101")]


def _options(arg):
  return parse_arg(arg, "resnext_cardinality.py", depth=(50, 101), seeds=1)


def get_config(arg: str = ""):
  opts = _options(arg)
  return sweep.load_module(os.path.join(_EXP, "imagenet.py")).get_config(
      f"resnext{opts['depth']}_1x64d")


def get_sweep(arg: str = ""):
  opts = _options(arg)
  names = [f"resnext{opts['depth']}_{c}x{d}d" for c, d in SETTINGS]
  return sweep.product(sweep.axis("model.name", names), sweep.seeds(opts["seeds"]))
