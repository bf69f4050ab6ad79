"""Transfer learning: on little data, a pretrained backbone's features beat training
from scratch, and fine-tuning the whole network improves further.

Lecture: "Transfer Learning" (drop the classifier of a network trained on another
dataset, use its global-average-pooled output as features) and "Transfer Learning -
Finetuning" (train the new head to convergence first, then the whole network at about
one tenth of the original learning rate; think about batch normalization).

Claim: on 100 images per class, a logistic regression on the pooled features of a
backbone pretrained on other classes reaches a lower validation error than the same
network trained from scratch, and fine-tuning (head first, then everything at 0.1x
the learning rate) lower still.

Source task (`stage=pretrain`): ResNet-20 on CIFAR-10 (JPEG q75) classes 0-4
(airplane, automobile, bird, cat, deer: 22,500 images), the recipe of
experiments/cifar10_jpeg_resnet20.py (batch 128, SGD Nesterov 0.9, cosine lr from
0.1, weight decay 5e-4, crop + flip) for 1,000 steps.
Target task (the sweep): classes 5-9 (dog, frog, horse, ship, truck), a fixed 100
training images per class, validated on their 2,499 images among the 5,000 held out. Every arm that
trains uses the same recipe for 300 steps (77 passes over the 500 images):
  - scratch:   ResNet-20 from random initialization;
  - features:  the backbone's pooled features (computed once, cached) and a
               logistic-regression head (config.features);
  - finetune:  init_from the backbone with a new head; the head alone for the first
               150 steps (finetune.head_epochs), then everything at lr_mult 0.1;
               BatchNorm trained (freeze_bn=False) or in inference mode (True).
Budget rule: the recipe's schedule shape over 1,000 (source) and 300 (target) steps.
`budget=paper` trains the source 64,000 steps and the target 10,000.
Seeds: 3 per arm (about 2 minutes each on 2 CPU cores); the features arm is
deterministic given the backbone (its seeds agree), and one backbone serves all.

  python launch.py --config=experiments/lecture/transfer.py:stage=pretrain \\
      --workdir=runs/lecture/transfer/pretrain
  python launch.py --config=experiments/lecture/transfer.py:backbone=runs/lecture/transfer/pretrain \\
      --workdir=runs/lecture/transfer/target --sweep
"""
import os

from flaxcnn import sweep

_HERE = os.path.dirname(os.path.abspath(__file__))
common = sweep.load_module(os.path.join(_HERE, "_common.py"))

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
PER_CLASS = 100
STEPS = {"laptop": (1000, 300), "paper": (64_000, 10_000)}
ARMS = ({"init_from": None},                                         # scratch
        {"job": "features"},                                         # features + head
        {"finetune.head_epochs": 50.0, "finetune.freeze_bn": False},   # fine-tuning
        {"finetune.head_epochs": 50.0, "finetune.freeze_bn": True})


def _options(arg):
  return common.options(arg, "lecture/transfer.py", stage=("target", "pretrain"),
                        backbone="runs/lecture/transfer/pretrain")


def get_config(arg: str = ""):
  opts = _options(arg)
  config = sweep.load_module(os.path.join(_HERE, "..", "cifar10_jpeg_resnet20.py")).get_config()
  source_steps, target_steps = STEPS.get(opts["budget"], (2, 2))
  if opts["stage"] == "pretrain":
    common.use_cifar10_jpeg(config, classes=SOURCE_CLASSES)
    config.num_steps = source_steps
    config.eval_every_epochs = 1.0
    config.checkpoint_every_steps = 250
    if opts["budget"] == "smoke":
      common.smoke(config, cifar_depth=8)
    return config
  common.use_cifar10_jpeg(config, classes=TARGET_CLASSES, train_per_class=PER_CLASS)
  spe = len(TARGET_CLASSES) * PER_CLASS // config.batch_size      # 3 steps per pass
  config.num_steps = target_steps
  config.eval_every_epochs = 30 / spe                 # every 30 steps
  config.log_every_steps = 10
  config.checkpoint_every_steps = 150
  config.init_from = opts["backbone"]                 # used by the fine-tuning arms
  config.features.backbone = opts["backbone"]         # used by the features arm
  config.finetune.new_head = True                     # other classes, as many of them
  if opts["budget"] == "smoke":
    common.smoke(config, cifar_depth=8)
  return config


def get_sweep(arg: str = ""):
  opts = _options(arg)
  if opts["stage"] == "pretrain":
    return [{}]
  return sweep.product(sweep.seeds(opts["seeds"] or 3), list(ARMS))
