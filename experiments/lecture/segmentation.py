"""Segmentation with transposed convolutions: a U-Net labels every pixel.

Lecture: "Transposed Convolution" (upscaling convolutions, the U-Net). Paper:
Ronneberger et al. 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", Figure 1 (contracting path, 2x2 up-convolutions, skip concatenations).

Claim: the U-Net's predicted masks match the true ones: its mean IoU on held-out
images is far above the all-background prediction's (which scores the background's
share of pixels as pixel accuracy and about half of that as mIoU).

Recipe and data: experiments/unet_craters.py (unet_small, 16-128 channels, Adam 3e-3,
cosine; generated 32x32 crater images, 2,048 for training, 256 for validation, a test
set from another generator seed), unchanged. Budget rule: the recipe's own 8 epochs
(512 steps), CPU-sized already; `budget=paper` trains 10x longer. 3 seeds (about
2.5 minutes each on 2 CPU cores).

  python launch.py --config=experiments/lecture/segmentation.py --workdir=runs/lecture/segmentation --sweep
"""
import os

from flaxcnn import sweep

_HERE = os.path.dirname(os.path.abspath(__file__))
common = sweep.load_module(os.path.join(_HERE, "_common.py"))


def get_config(arg: str = ""):
  opts = common.options(arg, "lecture/segmentation.py")
  config = sweep.load_module(os.path.join(_HERE, "..", "unet_craters.py")).get_config()
  config.eval_every_epochs = 1.0
  if opts["budget"] == "paper":
    config.num_epochs *= 10
  elif opts["budget"] == "smoke":
    common.smoke(config)
    config.model.kwargs.depth = 1          # one pooling: the machinery, compiled in seconds
    config.log_images = True               # the page shows its validation masks
  return config


def get_sweep(arg: str = ""):
  return sweep.seeds(common.options(arg, "lecture/segmentation.py")["seeds"] or 3)
