"""WRN-28-10 on CIFAR-10 (Zagoruyko & Komodakis 2016, Table 4 / Section 3).

The paper's recipe: 200 epochs, batch 128, SGD with Nesterov momentum 0.9,
lr 0.1 multiplied by 0.2 at epochs 60, 120 and 160, weight decay 5e-4, pad-4
random crop + horizontal flip, mean/std normalization. Dropout 0.3 between the
convolutions of each block is the paper's "WRN-28-10-dropout":

  python launch.py --config=experiments/wrn_28_10.py --workdir=runs/wrn28_10
  python launch.py --config=experiments/wrn_28_10.py:dropout --workdir=runs/wrn28_10_d
  python launch.py --config=experiments/wrn_28_10.py:cifar100 --workdir=runs/wrn_c100

Reads CIFAR-10 from TFDS (prepared in --config.data.data_dir); to use an image
folder instead: --config.data.source=folder --config.data.root=PATH.
"""
from flaxcnn.config import default_config


def get_config(arg: str = ""):
  options = set(filter(None, arg.split(",")))
  unknown = options - {"dropout", "cifar100"}
  if unknown:
    raise ValueError(f"wrn_28_10.py: unknown config argument(s) {sorted(unknown)}; "
                     "use 'dropout' and/or 'cifar100'")
  config = default_config()
  config.model.name = "wrn28_10"
  config.model.kwargs.dropout = 0.3 if "dropout" in options else 0.0
  config.data.source = "tfds"
  config.data.name = "cifar100" if "cifar100" in options else "cifar10"
  config.data.validation_size = 5000
  config.augment.crop_padding = 4
  config.augment.flip = True
  config.batch_size = 128
  config.num_epochs = 200.0
  config.optimizer.name = "sgd"
  config.optimizer.lr = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.schedule.name = "piecewise"
  config.schedule.boundaries = (60.0, 120.0, 160.0)
  config.schedule.factor = 0.2
  config.log_every_steps = 100
  config.eval_every_epochs = 5.0
  config.checkpoint_every_steps = 1000
  return config
