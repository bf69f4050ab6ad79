"""WRN-28-10 with Cutout on CIFAR (DeVries & Taylor 2017, "Improved Regularization
of Convolutional Neural Networks with Cutout", Section 4.1 / Table 1).

The recipe is the WRN one (experiments/wrn_28_10.py: batch 128, 200 epochs, SGD
with Nesterov momentum 0.9, lr 0.1 multiplied by 0.2 at epochs 60, 120 and 160,
weight decay 5e-4, pad-4 random crop + flip, mean/std normalization) with the
authors' additions (uoguelph-mlrg/Cutout train.py): dropout 0.3 inside the blocks,
one Cutout square per image after normalization (zero = the dataset mean), with its
centre uniform over the image and clipped at the border; side 16 on CIFAR-10 and
8 on CIFAR-100. Trained on all 50,000 training images, test error reported.

  python launch.py --config=experiments/cutout_wrn.py --workdir=runs/wrn_cutout
  python launch.py --config=experiments/cutout_wrn.py:cifar100 --workdir=runs/wrn_cutout100
  python launch.py --config=experiments/cutout_wrn.py:resnet18 --workdir=runs/r18_cutout

`resnet18` selects the paper's other network, the CIFAR ResNet-18 (3x3 stem, no max
pooling, 64-512 channels; same optimizer and schedule, no dropout).
"""
import os

from flaxcnn import sweep

CUTOUT = {"cifar10": 16, "cifar100": 8}


def get_config(arg: str = ""):
  dataset, model = "cifar10", "wrn"
  for p in (p.strip() for p in arg.split(",") if p.strip()):
    if p in CUTOUT:
      dataset = p
    elif p in ("wrn", "resnet18"):
      model = p
    else:
      raise ValueError(f"cutout_wrn.py: unknown argument {p!r}; use cifar10/cifar100 "
                       "and/or wrn/resnet18")
  wrn = sweep.load_module(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "wrn_28_10.py"))
  config = wrn.get_config("dropout,cifar100" if dataset == "cifar100" else "dropout")
  if model == "resnet18":
    config.model.name = "resnet18"
    config.model.kwargs = {"stem": "cifar"}
  config.augment.cutout = CUTOUT[dataset]
  config.data.validation_size = 0          # all 50k training images, test error reported
  return config
