"""WRN-28-10 with Cutout on CIFAR (DeVries & Taylor 2017, "Improved Regularization
of Convolutional Neural Networks with Cutout", Section 4.1 / Table 1).

The recipe is the WRN one (experiments/wrn_28_10.py: batch 128, 200 epochs, SGD
with Nesterov momentum 0.9, lr 0.1 multiplied by 0.2 at epochs 60, 120 and 160,
weight decay 5e-4, pad-4 random crop + flip, mean/std normalization) with the
authors' additions (uoguelph-mlrg/Cutout train.py): dropout 0.3 inside the blocks,
one Cutout square per image after normalization (zero = the dataset mean), with its
centre uniform over the image and clipped at the border; side 16 on CIFAR-10 and
8 on CIFAR-100. Trained on all 50,000 training images, test error reported. Weight
decay on every parameter, BatchNorm included (decay_all: the authors' PyTorch SGD
gets model.parameters() with weight_decay=5e-4).

  python launch.py --config=experiments/cutout_wrn.py --workdir=runs/wrn_cutout
  python launch.py --config=experiments/cutout_wrn.py:cifar100 --workdir=runs/wrn_cutout100
  python launch.py --config=experiments/cutout_wrn.py:resnet18 --workdir=runs/r18_cutout

`resnet18` selects the paper's other network, the CIFAR ResNet-18 (3x3 stem, no max
pooling, 64-512 channels; same optimizer and schedule, no dropout).
"""
import os

from flaxcnn import papers, sweep
from flaxcnn.config import parse_arg

CUTOUT = {"cifar10": 16, "cifar100": 8}
_NETS = {"WRN-28-10": {"model.name": "wrn28_10"}, "ResNet-18": {"model.name": "resnet18"}}
PAPER = [row for table, dataset in ((papers.CUTOUT_T1_C10, "cifar10"),
                                    (papers.CUTOUT_T1_C100, "cifar100"))
         for label, match in _NETS.items()
         for row in papers.rows(table, {f"{label} + cutout": {
             **match, "augment.cutout": CUTOUT[dataset]}},
             arg=",".join([dataset] + (["resnet18"] if label == "ResNet-18" else [])))]


def get_config(arg: str = ""):
  opts = parse_arg(arg, "cutout_wrn.py", dataset=("cifar10", "cifar100"),
                   model=("wrn", "resnet18"))
  wrn = sweep.load_module(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "wrn_28_10.py"))
  config = wrn.get_config(f"{opts['dataset']},dropout")
  if opts["model"] == "resnet18":
    config.model.name = "resnet18"
    config.model.kwargs = {"stem": "cifar"}
  config.augment.cutout = CUTOUT[opts["dataset"]]
  config.data.validation_size = 0          # all 50k training images, test error reported
  return config
