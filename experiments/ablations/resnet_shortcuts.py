"""Ablation: ResNet shortcut options A / B / C (He et al. 2015, "Deep Residual
Learning for Image Recognition", Section 3.3 / 4.1 "Identity vs. Projection
Shortcuts", Table 3: ResNet-34 on ImageNet, 10-crop validation error).

  A: identity shortcuts, zero-padding where the channels increase (no parameters);
  B: projection (1x1 conv + BN) shortcuts where the shape changes, identity elsewhere;
  C: projection shortcuts everywhere.
plus the plain-34 row of the same table (no shortcuts). The paper found
A < B < C by small margins and chose B for the deeper nets.

Recipe: experiments/resnet50_imagenet.py at depth 34, evaluated with 10 crops.
`cifar` runs the same comparison on the CIFAR-10 ResNet-32 recipe
(experiments/resnet_cifar.py) instead -- not in the paper, a cheap check of the
same question. `seeds=N` repeats every variant N times (the paper ran one).

  python launch.py --config=experiments/ablations/resnet_shortcuts.py --workdir=runs/resnet_shortcuts --sweep
  python launch.py --config=experiments/ablations/resnet_shortcuts.py --workdir=runs/resnet_shortcuts --list_variants
  python launch.py --config=experiments/ablations/resnet_shortcuts.py --workdir=runs/resnet_shortcuts --sweep_index=0
"""
import os

from flaxcnn import papers, sweep
from flaxcnn.config import parse_arg

SHORTCUTS = ("none", "A", "B", "C")
_EXP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PAPER = papers.rows(papers.HE2015_T3, {
    "plain-34" if s == "none" else f"ResNet-34 {s}": {
        "model.name": "resnet34", "eval_mode": "ten_crop", "model.kwargs.shortcut": s}
    for s in SHORTCUTS})
PAPER_UNREPORTED = "the `cifar` comparison (ResNet-32 on CIFAR-10) is not in the paper"


def _options(arg):
  return parse_arg(arg, "resnet_shortcuts.py", cifar=False, seeds=1)


def get_config(arg: str = ""):
  if _options(arg)["cifar"]:
    config = sweep.load_module(os.path.join(_EXP, "resnet_cifar.py")).get_config("32")
  else:
    config = sweep.load_module(os.path.join(_EXP, "resnet50_imagenet.py")).get_config(
        "34,ten_crop")
  config.model.kwargs.shortcut = "B"
  return config


def get_sweep(arg: str = ""):
  return sweep.product(sweep.axis("model.kwargs.shortcut", list(SHORTCUTS)),
                       sweep.seeds(_options(arg)["seeds"]))
