"""Ablation: single-dimension vs compound scaling of EfficientNet-B0 (Tan & Le 2019,
"EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
Section 3.2 "Scaling Dimensions", Figure 3 (B0 scaled in width, depth or resolution
alone) and Section 3.3 / Figure 8 (compound vs single-dimension scaling); ImageNet
top-1 accuracy against FLOPS).

Variants of EfficientNet-B0 (model.kwargs.width_mult / .depth_mult, data.image_size):
  width       w in {1.4, 1.8, 2.6, 3.8, 5.0}
  depth       d in {2, 3, 4, 6, 8}
  resolution  r = 224 x {1.3, 1.5, 1.7, 2.0, 2.5}
  compound    phi in {1, 2, 3}: d = 1.2^phi, w = 1.1^phi, r = 224 x 1.15^phi (the
              paper's alpha, beta, gamma from the grid search at phi = 1, so that
              FLOPS grow about 2^phi: 1.2 x 1.1^2 x 1.15^2 ~ 1.92)
and the B0 baseline (w = d = 1, r = 224). The w and d values are the labels of
Figure 3; the r values are the labels as read off the figure (approximately). The
paper: each single dimension saturates near 80% top-1, compound scaling reaches
higher accuracy at the same FLOPS.

Recipe: experiments/efficientnet_b0.py (RMSProp-TF, lr 0.256 at batch 4096 decayed
0.97 every 2.4 epochs, 350 epochs, weight decay 1e-5, dropout 0.2, survival 0.8,
label smoothing 0.1, EMA). The training crop's scale range follows the image size.
`seeds=N` repeats every variant.

  python launch.py --config=experiments/ablations/efficientnet_scaling.py --workdir=runs/efficientnet_scaling --sweep
  python launch.py --config=experiments/ablations/efficientnet_scaling.py --workdir=runs/efficientnet_scaling --list_variants
  python launch.py --config=experiments/ablations/efficientnet_scaling.py --workdir=runs/efficientnet_scaling --sweep_index=0
"""
import math
import os

from flaxcnn import papers, sweep
from flaxcnn.config import parse_arg

_EXP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BASE_SIZE = 224
WIDTHS = (1.4, 1.8, 2.6, 3.8, 5.0)
DEPTHS = (2.0, 3.0, 4.0, 6.0, 8.0)
RESOLUTIONS = (1.3, 1.5, 1.7, 2.0, 2.5)
PHIS = (1, 2, 3)
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15     # depth, width, resolution
PAPER = papers.rows(papers.EFFICIENTNET_T2, {"EfficientNet-B0": {
    "model.name": "efficientnet_b0", "model.kwargs.width_mult": 1.0,
    "model.kwargs.depth_mult": 1.0, "data.image_size": BASE_SIZE}})
PAPER_UNREPORTED = "the scaled models are plotted in Figures 3 and 8 (no table values)"


def _size(r):
  return int(round(BASE_SIZE * r))


def _scale_range(size):
  return (size, int(round(size / math.sqrt(0.08))))


def _seeds(arg):
  return parse_arg(arg, "efficientnet_scaling.py", seeds=1)["seeds"]


def get_config(arg: str = ""):
  _seeds(arg)
  config = sweep.load_module(os.path.join(_EXP, "efficientnet_b0.py")).get_config("b0")
  config.model.kwargs.width_mult = 1.0
  config.model.kwargs.depth_mult = 1.0
  return config


def _resolution(rs):
  sizes = [_size(r) for r in rs]
  return sweep.zip(sweep.axis("data.image_size", sizes),
                   sweep.axis("augment.scale_range", [_scale_range(s) for s in sizes]))


def get_sweep(arg: str = ""):
  baseline = [{}]
  width = sweep.axis("model.kwargs.width_mult", list(WIDTHS))
  depth = sweep.axis("model.kwargs.depth_mult", list(DEPTHS))
  resolution = _resolution(RESOLUTIONS)
  compound = sweep.zip(
      sweep.axis("model.kwargs.width_mult", [round(BETA ** p, 4) for p in PHIS]),
      sweep.axis("model.kwargs.depth_mult", [round(ALPHA ** p, 4) for p in PHIS]),
      _resolution([GAMMA ** p for p in PHIS]))
  return sweep.product(sweep.chain(baseline, width, depth, resolution, compound),
                       sweep.seeds(_seeds(arg)))
