"""Depth and residuals: a deeper plain net trains worse, a deeper ResNet does not.

Lecture: the ResNet slides ("Deep Residual Network"; training error of 20- and
56-layer plain networks). Paper: He et al. 2015, "Deep Residual Learning for Image
Recognition", Figure 1 and Figure 6 (left: plain-20/32/44/56, middle: ResNet-20/
32/44/56/110; CIFAR-10 training error dashed, test error bold).

Claim: with the same recipe and number of steps, plain-56 ends with a higher training
error than plain-20 (the degradation problem), while ResNet-56 does not end higher
than ResNet-20.

Recipe: experiments/resnet_cifar.py (the paper's: batch 128, SGD momentum 0.9, weight
decay 1e-4 on every parameter, lr 0.1 divided by 10 at 50% and 75% of training, pad-4
crop + flip, option-A shortcuts), on CIFAR-10 (JPEG q75), 45,000 / 5,000 split.
Budget rule: the paper's recipe and schedule shape over 800 steps instead of 64,000
(2.3 epochs): the lr drops at steps 400 and 600. `budget=paper` trains the paper's
64,000 steps (182 epochs, drops at 91 and 137), for a GPU.

Arms: plain-20, plain-56, ResNet-20, ResNet-56. Seeds: 3 for the 20-layer nets
(about 4 minutes each on 2 CPU cores), 2 for the 56-layer ones (about 10 minutes);
`seeds=N` gives every arm N.

  python launch.py --config=experiments/lecture/depth.py --workdir=runs/lecture/depth --sweep
  python launch.py --config=experiments/lecture/depth.py:budget=paper --workdir=... --sweep
"""
import os

from flaxcnn import sweep

_HERE = os.path.dirname(os.path.abspath(__file__))
common = sweep.load_module(os.path.join(_HERE, "_common.py"))

ARMS = ("plain20_cifar", "plain56_cifar", "resnet20_cifar", "resnet56_cifar")
LAPTOP_STEPS = 800
PAPER_CURVE = "He et al. 2015, Fig. 6: at 64k steps plain-56 trains worse than plain-20; " \
              "ResNet-56 better than ResNet-20"


def get_config(arg: str = ""):
  opts = common.options(arg, "lecture/depth.py")
  config = sweep.load_module(os.path.join(_HERE, "..", "resnet_cifar.py")).get_config("20")
  common.use_cifar10_jpeg(config)
  config.eval_batch_size = 500
  if opts["budget"] == "laptop":
    spe = common.TRAIN_IMAGES // config.batch_size      # 351 steps per epoch
    config.num_steps = LAPTOP_STEPS
    config.schedule.boundaries = (0.5 * LAPTOP_STEPS / spe, 0.75 * LAPTOP_STEPS / spe)
    config.log_every_steps = 20
    config.eval_every_epochs = 100 / spe                # every 100 steps
    config.checkpoint_every_steps = 100
  elif opts["budget"] == "smoke":
    common.smoke(config, cifar_depth=8)
  return config


def get_sweep(arg: str = ""):
  n = common.options(arg, "lecture/depth.py")["seeds"]
  arms = sweep.axis("model.name", list(ARMS))
  if n:
    return sweep.product(sweep.seeds(n), arms)
  # seed 0 of every arm first, then seed 1, then the third seed of the cheap arms
  return sweep.chain(sweep.product(sweep.seeds(2), arms),
                     sweep.product(sweep.seeds(1, start=2), arms[0::2]))
