"""CIFAR-10 ResNet-20/32/44/56/110/1202 with option-A shortcuts (He et al. 2015,
Sec. 4.2, Table 6 and Figure 6).

The paper's recipe: batch 128, SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided
by 10 at 32k and 48k iterations, stopped at 64k (on a 45k/5k train/val split),
pad-4 random crop + flip. In epochs of 45,000 images (351 steps): 91, 137, 182.
ResNet-110 and 1202 start at lr 0.01 until the training error is below 80% (about
400 iterations), then 0.1: a constant warm-up (schedule.warmup='constant', 0.1 x the
peak for 400 steps). Weight decay on every parameter, BatchNorm included
(decay_all, as Caffe's solver applies it to all).

  python launch.py --config=experiments/resnet_cifar.py:20 --workdir=runs/resnet20
  python launch.py --config=experiments/resnet_cifar.py:110,plain --workdir=runs/plain110

`plain` selects the paper's plain (no shortcut) counterpart (Figure 6, no table).
"""
from flaxcnn import papers
from flaxcnn.config import default_config, parse_arg

DEPTHS = (20, 32, 44, 56, 110, 1202)
STEPS_PER_EPOCH = 45000 // 128    # 351

PAPER = [row for d in DEPTHS for row in papers.rows(
    papers.HE2015_T6, {f"ResNet-{d}": {"model.name": f"resnet{d}_cifar"}}, arg=str(d))]


def get_config(arg: str = "20"):
  opts = parse_arg(arg, "resnet_cifar.py", depth=DEPTHS, plain=False)
  depth = opts["depth"]
  config = default_config()
  config.model.name = f"{'plain' if opts['plain'] else 'resnet'}{depth}_cifar"
  config.data.name = "cifar10"
  config.data.validation_size = 5000
  config.num_epochs = 182.0                # 64k iterations
  config.optimizer.lr = 0.1
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 1e-4
  config.optimizer.decay_all = True
  config.schedule.boundaries = (91.0, 137.0)   # 32k and 48k iterations
  config.schedule.factor = 0.1
  if depth >= 110:                          # 0.01 for 400 iterations, then 0.1
    config.schedule.warmup = "constant"
    config.schedule.warmup_factor = 0.1
    config.schedule.warmup_epochs = 400 / STEPS_PER_EPOCH
  config.eval_every_epochs = 5.0
  config.checkpoint_every_steps = 1000
  return config
