"""Ablation: shortcut variants of the residual unit (He et al. 2016, "Identity
Mappings in Deep Residual Networks", Section 3 and Figure 2, Table 1: ResNet-110 on
CIFAR-10, test error).

Variants (model.kwargs.shortcut_variant, on every unit):
  identity (the original unit), constant_scaling (0.5 on shortcut and branch),
  exclusive_gating and shortcut_only_gating (1x1 conv + sigmoid gate, its bias
  initialized to b_g = 0 or -6, model.kwargs.gate_bias_init), conv_shortcut (1x1
  convolution on every shortcut), dropout_shortcut (dropout 0.5 on the shortcut, not
  rescaled: 0.5x in expectation, Section 3.1).
The paper: only the identity shortcut trains well; the others are worse or fail
to converge, which motivates h(x) = x.

Recipe: the He et al. 2016 CIFAR recipe (experiments/preact_resnet.py at depth 110:
batch 128, lr 0.1 /10 at 32k and 48k iterations, 64k iterations, weight decay 1e-4,
momentum 0.9, warmup), with the original (post-activation) ResNet-110 units and
projection shortcuts where the shape changes (as the paper's Table 1 networks).
`seeds=N` repeats every variant.

  python launch.py --config=experiments/ablations/preact_shortcuts.py --workdir=runs/preact_shortcuts --sweep
  python launch.py --config=experiments/ablations/preact_shortcuts.py --workdir=runs/preact_shortcuts --list_variants
  python launch.py --config=experiments/ablations/preact_shortcuts.py --workdir=runs/preact_shortcuts --sweep_index=0
"""
import os

from flaxcnn import papers, sweep
from flaxcnn.config import parse_arg

_EXP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PLAIN_VARIANTS = ("identity", "constant_scaling", "conv_shortcut", "dropout_shortcut")
GATED_VARIANTS = ("exclusive_gating", "shortcut_only_gating")
GATE_BIAS_INITS = (0.0, -6.0)
_V = "model.kwargs.shortcut_variant"
PAPER = papers.rows(papers.HE2016_T1, {
    "original": {_V: "identity"},
    "constant scaling 0.5/0.5": {_V: "constant_scaling"},
    "1x1 conv shortcut": {_V: "conv_shortcut"},
    "dropout shortcut": {_V: "dropout_shortcut"},
    **{f"{name} b_g={b:g}": {_V: v, "model.kwargs.gate_bias_init": b}
       for name, v in (("exclusive gating", "exclusive_gating"),
                       ("shortcut-only gating", "shortcut_only_gating"))
       for b in GATE_BIAS_INITS}})


def _options(arg):
  return parse_arg(arg, "preact_shortcuts.py", seeds=1)


def get_config(arg: str = ""):
  _options(arg)
  config = sweep.load_module(os.path.join(_EXP, "preact_resnet.py")).get_config("110")
  config.model.name = "resnet110_cifar"
  config.model.kwargs.shortcut = "B"
  config.model.kwargs.placement = "original"
  config.model.kwargs.shortcut_variant = "identity"
  return config


def get_sweep(arg: str = ""):
  return sweep.product(
      sweep.chain(
          sweep.axis(_V, list(PLAIN_VARIANTS)),
          sweep.product(sweep.axis(_V, list(GATED_VARIANTS)),
                        sweep.axis("model.kwargs.gate_bias_init", list(GATE_BIAS_INITS)))),
      sweep.seeds(_options(arg)["seeds"]))
