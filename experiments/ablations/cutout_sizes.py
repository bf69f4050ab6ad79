"""Ablation: Cutout patch length (DeVries & Taylor 2017, "Improved Regularization of
Convolutional Neural Networks with Cutout", Section 4.1, Figure 3: validation
accuracy of ResNet-18 on CIFAR-10 and CIFAR-100 against the Cutout square's side,
average of five runs, 45k/5k train/validation split).

Grid: data.name in {cifar10, cifar100} x augment.cutout in {0, 4, 8, 12, 16, 20, 24}
(0 = no Cutout). The paper: the best side is 16 on CIFAR-10 and 8 on CIFAR-100
(the sizes used for all its other results); too large a square hurts.

Recipe: experiments/cutout_wrn.py:resnet18 (the authors' CIFAR ResNet-18, batch 128,
200 epochs, Nesterov SGD, lr 0.1 x0.2 at 60/120/160, weight decay 5e-4, crop +
flip), with 5,000 training images held out for validation as in the figure.
`seeds=5` repeats every variant as the paper's average of five runs.

  python launch.py --config=experiments/ablations/cutout_sizes.py --workdir=runs/cutout_sizes --sweep
  python launch.py --config=experiments/ablations/cutout_sizes.py --workdir=runs/cutout_sizes --list_variants
  python launch.py --config=experiments/ablations/cutout_sizes.py --workdir=runs/cutout_sizes --sweep_index=0
"""
import os

from flaxcnn import papers, sweep
from flaxcnn.config import parse_arg

_EXP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATASETS = ("cifar10", "cifar100")
SIZES = (0, 4, 8, 12, 16, 20, 24)
# Table 1's ResNet-18 rows (trained on all 50k images; these runs hold 5k out).
PAPER = [row for table, best in ((papers.CUTOUT_T1_C10, 16), (papers.CUTOUT_T1_C100, 8))
         for row in papers.rows(table, {"ResNet-18": {"augment.cutout": 0},
                                        "ResNet-18 + cutout": {"augment.cutout": best}})]
PAPER_UNREPORTED = "Figure 3 plots the other sizes (validation accuracy, no numbers)"


def _options(arg):
  return parse_arg(arg, "cutout_sizes.py", seeds=1)


def get_config(arg: str = ""):
  _options(arg)
  config = sweep.load_module(os.path.join(_EXP, "cutout_wrn.py")).get_config("resnet18")
  config.data.validation_size = 5000
  return config


def get_sweep(arg: str = ""):
  return sweep.product(sweep.axis("data.name", list(DATASETS)),
                       sweep.axis("augment.cutout", list(SIZES)),
                       sweep.seeds(_options(arg)["seeds"]))
