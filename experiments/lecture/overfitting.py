"""Under- and overfitting: on little data a network overfits, and regularization
closes part of the gap between training and validation error.

Lecture: "Designing and Training Neural Networks" (check underfitting by training
longer, overfitting by the train/dev difference or by stronger regularization; train
until dev performance stops improving, usually later than training performance
plateaus) and the regularization slides (Cutout: DeVries & Taylor 2017, Table 1;
weight decay).

Claim: trained on 1,000 images until the training error is near zero, the baseline
has a large train/validation gap; adding weight decay or Cutout lowers the
validation error (and the gap); validation stops improving later than the training
error plateaus.

Recipe: experiments/cifar10_jpeg_resnet20.py (ResNet-20, batch 128, SGD Nesterov
0.9, cosine lr from 0.1, pad-4 crop + flip) with weight decay off in the baseline.
Data: a fixed 100 images per class of CIFAR-10 (JPEG q75)'s 45,000 training images
(the same for every seed), validated on the 5,000 held out.
Budget rule: the recipe over 500 steps (71 passes over the 1,000 images), evaluated
every 50 steps. `budget=paper` keeps the data and trains 64,000 steps.

Arms (one change each from the baseline): weight decay 5e-4 (the recipe's), Cutout
16x16 (DeVries & Taylor's CIFAR-10 size). 3 seeds each (about 3 minutes per run on
2 CPU cores).

  python launch.py --config=experiments/lecture/overfitting.py --workdir=runs/lecture/overfitting --sweep
  python -m flaxcnn.results runs/lecture/overfitting     # the diagnosis line of every run
"""
import os

from flaxcnn import sweep

_HERE = os.path.dirname(os.path.abspath(__file__))
common = sweep.load_module(os.path.join(_HERE, "_common.py"))

PER_CLASS = 100
LAPTOP_STEPS = 500
ARMS = ({"optimizer.weight_decay": 0.0, "augment.cutout": 0},     # the baseline
        {"optimizer.weight_decay": 5e-4, "augment.cutout": 0},
        {"optimizer.weight_decay": 0.0, "augment.cutout": 16})


def get_config(arg: str = ""):
  opts = common.options(arg, "lecture/overfitting.py")
  config = sweep.load_module(os.path.join(_HERE, "..", "cifar10_jpeg_resnet20.py")).get_config()
  common.use_cifar10_jpeg(config, train_per_class=PER_CLASS)
  config.optimizer.weight_decay = 0.0
  spe = 10 * PER_CLASS // config.batch_size            # 7 steps per pass
  config.num_steps = LAPTOP_STEPS if opts["budget"] == "laptop" else 64_000
  config.eval_every_epochs = 50 / spe if opts["budget"] == "laptop" else 2000 / spe
  config.log_every_steps = 10
  config.checkpoint_every_steps = 250
  if opts["budget"] == "smoke":
    common.smoke(config, cifar_depth=8)
  return config


def get_sweep(arg: str = ""):
  n = common.options(arg, "lecture/overfitting.py")["seeds"] or 3
  return sweep.product(sweep.seeds(n), list(ARMS))
