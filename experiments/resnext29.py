"""ResNeXt-29 on CIFAR (Xie, Girshick, Dollar, Tu, He 2017, "Aggregated Residual
Transformations for Deep Neural Networks", Section 5.3 "Experiments on CIFAR";
Table 7 / Figure 7).

The paper's recipe: batch 128, 300 epochs, learning rate 0.1 divided by 10 at
epochs 150 and 225, weight decay 5e-4, momentum 0.9, pad-4 random crop + flip,
trained on the 50k training images (test error reported). Nesterov momentum and
weight decay on all parameters come from the authors' code (facebookresearch/
ResNeXt, based on fb.resnet.torch: optim.sgd with nesterov=true, dampening 0).

  python launch.py --config=experiments/resnext29.py --workdir=runs/rx29_8x64d
  python launch.py --config=experiments/resnext29.py:16x64d,cifar100 --workdir=runs/rx29

`8x64d` (default, 34.4M parameters) or `16x64d` (68.1M); `cifar100`.
"""
from flaxcnn.config import default_config

WIDTHS = ("8x64d", "16x64d")


def get_config(arg: str = ""):
  width, dataset = "8x64d", "cifar10"
  for p in (p.strip() for p in arg.split(",") if p.strip()):
    if p in WIDTHS:
      width = p
    elif p in ("cifar10", "cifar100"):
      dataset = p
    else:
      raise ValueError(f"resnext29.py: unknown argument {p!r}; use one of {WIDTHS} "
                       "and/or cifar100")
  config = default_config()
  config.model.name = f"resnext29_{width}"
  config.data.source = "tfds"
  config.data.name = dataset
  config.data.validation_size = 0
  config.augment.crop_padding = 4
  config.augment.flip = True
  config.batch_size = 128
  config.eval_batch_size = 512         # divisible by 1-8 devices
  config.num_epochs = 300.0
  config.optimizer.name = "sgd"
  config.optimizer.lr = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.optimizer.decay_all = True
  config.schedule.name = "piecewise"
  config.schedule.boundaries = (150.0, 225.0)
  config.schedule.factor = 0.1
  config.schedule.warmup_epochs = 0.0
  config.log_every_steps = 100
  config.eval_every_epochs = 5.0
  config.checkpoint_every_steps = 2000
  return config
