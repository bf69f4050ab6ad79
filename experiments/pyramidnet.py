"""PyramidNet on CIFAR (Han, Kim, Kim 2017, "Deep Pyramidal Residual Networks",
Section 4.1 "Training settings"; Table 4).

The paper's recipe: SGD with Nesterov momentum 0.9 (no dampening), batch 128,
300 epochs, learning rate 0.1 for CIFAR-10 and 0.5 for CIFAR-100, divided by 10 at
epochs 150 and 225, weight decay 1e-4 (on all parameters, as in the authors' Torch
code), pad-4 random crop + horizontal flip, trained on all 50,000 training images
(test error reported at the end).

Default model: additive PyramidNet-110 (alpha 48, 1.7M parameters). Any CIFAR preset
of flaxcnn.models.pyramidnet by its suffix, e.g.

  python launch.py --config=experiments/pyramidnet.py --workdir=runs/pyr110
  python launch.py --config=experiments/pyramidnet.py:272_a200_bottleneck,cifar100 \
      --workdir=runs/pyr272
  python launch.py --config=experiments/pyramidnet.py:110_mul_a8 --workdir=runs/pyr_mul
"""
from flaxcnn.config import default_config
from flaxcnn.models import list_models


def get_config(arg: str = ""):
  preset, dataset = "110_a48", "cifar10"
  for p in (p.strip() for p in arg.split(",") if p.strip()):
    if p in ("cifar10", "cifar100"):
      dataset = p
    elif f"pyramidnet{p}" in list_models("pyramidnet") and not p.endswith("_imagenet"):
      preset = p
    else:
      choices = [m[len("pyramidnet"):] for m in list_models("pyramidnet")
                 if not m.endswith("_imagenet")]
      raise ValueError(f"pyramidnet.py: unknown argument {p!r}; use one of {choices} "
                       "and/or cifar100")
  config = default_config()
  config.model.name = f"pyramidnet{preset}"
  config.data.source = "tfds"
  config.data.name = dataset
  config.data.validation_size = 0
  config.augment.crop_padding = 4
  config.augment.flip = True
  config.batch_size = 128
  config.eval_batch_size = 512         # divisible by 1-8 devices
  config.num_epochs = 300.0
  config.optimizer.name = "sgd"
  config.optimizer.lr = 0.5 if dataset == "cifar100" else 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 1e-4
  config.optimizer.decay_all = True
  config.schedule.name = "piecewise"
  config.schedule.boundaries = (150.0, 225.0)
  config.schedule.factor = 0.1
  config.schedule.warmup_epochs = 0.0
  config.log_every_steps = 100
  config.eval_every_epochs = 5.0
  config.checkpoint_every_steps = 2000
  return config
