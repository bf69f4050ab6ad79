"""DenseNet-BC (L=100, k=12) on CIFAR (Huang, Liu, van der Maaten, Weinberger 2017,
"Densely Connected Convolutional Networks", Section 4.2 "Training"; Table 2).

The paper's recipe: SGD, batch 64, 300 epochs, learning rate 0.1 divided by 10 at
50% and 75% of training (epochs 150 and 225), weight decay 1e-4, Nesterov momentum
0.9 without dampening; standard augmentation (pad-4 random crop + horizontal flip,
"C10+"), so no dropout; trained on all 50,000 training images and evaluated on the
test set at the end (no validation split). Weight decay applies to all parameters
(BatchNorm included), as optim.sgd's weightDecay in the authors' Torch code.

  python launch.py --config=experiments/densenet_bc_100_12.py --workdir=runs/dnbc100
  python launch.py --config=experiments/densenet_bc_100_12.py:250_24,cifar100 --workdir=runs/dn250

Arguments: `L_k` selects another DenseNet-BC of Table 2 (100_12, 250_24, 190_40),
`cifar100` the CIFAR-100 dataset.
"""
from flaxcnn.config import default_config

PRESETS = ("100_12", "250_24", "190_40")


def get_config(arg: str = ""):
  preset, dataset = "100_12", "cifar10"
  for p in (p.strip() for p in arg.split(",") if p.strip()):
    if p in PRESETS:
      preset = p
    elif p in ("cifar10", "cifar100"):
      dataset = p
    else:
      raise ValueError(f"densenet_bc_100_12.py: unknown argument {p!r}; use one of "
                       f"{PRESETS} and/or cifar100")
  config = default_config()
  config.model.name = f"densenet_bc_{preset}"
  config.data.source = "tfds"
  config.data.name = dataset
  config.data.validation_size = 0          # train on all 50k, report test error
  config.augment.crop_padding = 4
  config.augment.flip = True
  config.batch_size = 64
  config.eval_batch_size = 512         # divisible by 1-8 devices
  config.num_epochs = 300.0
  config.optimizer.name = "sgd"
  config.optimizer.lr = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 1e-4
  config.optimizer.decay_all = True
  config.schedule.name = "piecewise"
  config.schedule.boundaries = (150.0, 225.0)   # 50% and 75% of 300 epochs
  config.schedule.factor = 0.1
  config.schedule.warmup_epochs = 0.0
  config.log_every_steps = 100
  config.eval_every_epochs = 5.0
  config.checkpoint_every_steps = 2000
  return config
