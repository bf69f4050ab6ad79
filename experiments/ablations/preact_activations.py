"""Ablation: where BN and ReLU go in the residual unit (He et al. 2016, "Identity
Mappings in Deep Residual Networks", Section 4, Figure 4 (a)-(e) and Table 2:
ResNet-110 and ResNet-164 on CIFAR-10, test error).

model.kwargs.placement:
  (a) original              conv-BN-ReLU-conv-BN, add, ReLU
  (b) bn_after_addition     ... conv, add, BN, ReLU
  (c) relu_before_addition  ... conv-BN-ReLU, add
  (d) relu_only_preact      ReLU-conv-BN ..., add
  (e) full_preact           BN-ReLU-conv ..., add
for ResNet-110 (basic units) and ResNet-164 (bottleneck units). The paper: (e) is
best on both, (b) and (c) are worse than the original.

Recipe: experiments/preact_resnet.py:110 (He et al. 2016 CIFAR recipe, with the
ResNet-110 warmup for both depths), projection shortcuts where the shape changes.
`seeds=N` repeats every variant (the paper reports medians of 5 runs for some
entries).

  python launch.py --config=experiments/ablations/preact_activations.py --workdir=runs/preact_activations --sweep
  python launch.py --config=experiments/ablations/preact_activations.py --workdir=runs/preact_activations --list_variants
  python launch.py --config=experiments/ablations/preact_activations.py --workdir=runs/preact_activations --sweep_index=0
"""
import os

from flaxcnn import papers, sweep
from flaxcnn.config import parse_arg
from flaxcnn.models.resnet import PLACEMENTS

_EXP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODELS = ("resnet110_cifar", "resnet164_cifar")
PAPER = [row for model, table in zip(MODELS, (papers.HE2016_T2_110, papers.HE2016_T2_164))
         for row in papers.rows(table, {
             label: {"model.name": model, "model.kwargs.placement": placement}
             for label, placement in zip(table.values, PLACEMENTS)})]


def _options(arg):
  return parse_arg(arg, "preact_activations.py", seeds=1)


def get_config(arg: str = ""):
  _options(arg)
  config = sweep.load_module(os.path.join(_EXP, "preact_resnet.py")).get_config("110")
  config.model.name = "resnet110_cifar"
  config.model.kwargs.shortcut = "B"
  config.model.kwargs.placement = "original"
  return config


def get_sweep(arg: str = ""):
  return sweep.product(sweep.axis("model.name", list(MODELS)),
                       sweep.axis("model.kwargs.placement", list(PLACEMENTS)),
                       sweep.seeds(_options(arg)["seeds"]))
