"""CIFAR-10 ResNet-20/32/44/56/110 with option-A shortcuts (He et al. 2015, Sec. 4.2,
Table 6 and Figure 6).

The paper's recipe: batch 128, SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided
by 10 at 32k and 48k iterations, stopped at 64k (on a 45k/5k train/val split),
pad-4 random crop + flip. In epochs of 45,000 images (351 steps): 91, 137, 182.

  python launch.py --config=experiments/resnet_cifar.py:20 --workdir=runs/resnet20
  python launch.py --config=experiments/resnet_cifar.py:110,plain --workdir=runs/plain110

`plain` selects the paper's plain (no shortcut) counterpart; for ResNet-110 the
paper starts with lr 0.01 for 400 iterations (here: warmup_epochs) as it does.
"""
from flaxcnn.config import default_config

DEPTHS = (20, 32, 44, 56, 110, 1202)


def get_config(arg: str = "20"):
  parts = [p for p in arg.split(",") if p]
  depth = int(parts[0]) if parts else 20
  plain = "plain" in parts[1:]
  if depth not in DEPTHS:
    raise ValueError(f"resnet_cifar.py: depth {depth} is not one of {DEPTHS}")
  config = default_config()
  config.model.name = f"{'plain' if plain else 'resnet'}{depth}_cifar"
  config.data.source = "tfds"
  config.data.name = "cifar10"
  config.data.validation_size = 5000
  config.batch_size = 128
  config.num_epochs = 182.0                # 64k iterations
  config.optimizer.name = "sgd"
  config.optimizer.lr = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = "piecewise"
  config.schedule.boundaries = (91.0, 137.0)   # 32k and 48k iterations
  config.schedule.factor = 0.1
  if depth >= 110:
    config.schedule.warmup_epochs = 1.0   # the paper's 0.01 warm-up for ResNet-110
  config.eval_every_epochs = 5.0
  config.checkpoint_every_steps = 1000
  return config
