"""Ablation: the depth of a CIFAR-style ResNet on the digits, ResNet-8 vs ResNet-14,
two seeds each (4 variants, seconds each on 2 CPU cores).

He et al. (2015, Sec. 4.2) compare option-A ResNet-20/32/44/56/110 on CIFAR-10; this
is the same sweep in miniature on real data that ships with scikit-learn (1,257
train / 180 validation / 360 test images of 8x8 pixels), 5 epochs, evaluated every
epoch so that every variant has learning curves.

  python launch.py --config=experiments/ablations/digits_depth.py --workdir=runs/digits_depth --sweep
  python launch.py --config=experiments/ablations/digits_depth.py --workdir=runs/digits_depth --list_variants
  python launch.py --config=experiments/ablations/digits_depth.py --workdir=runs/digits_depth --sweep_index=2

Arguments (comma-separated): `seeds=N` repeats every depth N times (default 2);
`cifar10_jpeg` (`--config=experiments/ablations/digits_depth.py:cifar10_jpeg`) runs
the same sweep on the CIFAR-10 JPEG folder (../shared/data/cifar10-jpeg/train.tar.xz
or $FLAXCNN_CIFAR10_JPEG) for 300 steps per variant (about 2 minutes each on 2 CPU
cores), with 5,000 images held out. Then `python -m flaxcnn.results runs/digits_depth`
writes the table, the diagnostics and the figures.
"""
import os

from flaxcnn import sweep
from flaxcnn.config import default_config, parse_arg

DEPTHS = (8, 14)     # 6n+2 with n = 1, 2 basic blocks per stage
SEEDS = 2
_CIFAR10_JPEG = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data",
    "cifar10-jpeg", "train.tar.xz"))


PAPER_UNREPORTED = ("a miniature on the digits, in no paper (He et al. 2015, Table 6 is its "
                    "CIFAR-10 counterpart: experiments/resnet_cifar.py)")


def _options(arg: str):
  return parse_arg(arg, "digits_depth.py", seeds=SEEDS, data=("digits", "cifar10_jpeg"))


def get_config(arg: str = ""):
  cifar = _options(arg)["data"] == "cifar10_jpeg"
  config = default_config()
  config.model.name = "resnet20_cifar"     # option-A shortcuts; depth set by the sweep
  config.model.kwargs.depth = DEPTHS[0]
  config.optimizer.name = "sgd"
  config.optimizer.lr = 0.1
  config.optimizer.weight_decay = 5e-4
  config.schedule.name = "cosine"
  config.eval_every_epochs = 1.0
  if cifar:
    config.data.source = "folder"
    config.data.name = "cifar10-jpeg"
    config.data.label = "CIFAR-10 (JPEG q75)"
    config.data.root = os.environ.get("FLAXCNN_CIFAR10_JPEG", _CIFAR10_JPEG)
    config.data.validation_size = 5000
    config.batch_size = 128
    config.eval_batch_size = 500
    config.num_steps = 300
    config.eval_every_epochs = 0.25         # 351 steps per epoch: an evaluation every 88
    config.log_every_steps = 22
    config.checkpoint_every_steps = 100
  else:
    config.data.source = "digits"
    config.data.name = "digits"
    config.data.validation_size = 180
    config.augment.crop_padding = 1        # 8x8 digits: shift by at most one pixel
    config.augment.flip = False            # digits are not mirror-symmetric
    config.batch_size = 64
    config.eval_batch_size = 200
    config.num_epochs = 5.0                # 19 steps per epoch
    config.log_every_steps = 5
    config.checkpoint_every_steps = 38
  return config


def get_sweep(arg: str = ""):
  return sweep.product(sweep.axis("model.kwargs.depth", list(DEPTHS)),
                       sweep.seeds(_options(arg)["seeds"]))
