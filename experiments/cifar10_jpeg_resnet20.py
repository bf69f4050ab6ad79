"""The CIFAR-10 (JPEG q75) yardstick: option-A ResNet-20 for 1,000 steps.

ResNet-20 (He et al. 2015), batch 128, SGD with Nesterov momentum 0.9, cosine lr
from 0.1, weight decay 5e-4, pad-4 crop + flip, on the 50,000 CIFAR-10 training
images as JPEG files (image-folder layout, or its .tar.xz) with 5,000 held out for
validation. A plain-Flax option-A ResNet-20 with this recipe reaches about 71%
on held-out images.

  python launch.py --config=experiments/cifar10_jpeg_resnet20.py --workdir=runs/yardstick \
      --config.data.root=PATH/TO/cifar10-jpeg/train.tar.xz
"""
import os

from flaxcnn.config import default_config

_SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                       "shared", "data", "cifar10-jpeg", "train.tar.xz")


def get_config():
  config = default_config()
  config.model.name = "resnet20_cifar"
  config.data.source = "folder"
  config.data.name = "cifar10-jpeg"
  config.data.label = "CIFAR-10 (JPEG q75)"   # as the folder's README asks results to say
  config.data.root = os.environ.get("FLAXCNN_CIFAR10_JPEG", os.path.normpath(_SHARED))
  config.data.test_split = "test"          # absent here: validation is the held-out 5,000
  config.data.validation_size = 5000
  config.batch_size = 128
  config.num_steps = 1000
  config.optimizer.name = "sgd"
  config.optimizer.lr = 0.1
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.schedule.name = "cosine"
  config.log_every_steps = 50
  config.eval_every_epochs = 1.0
  config.checkpoint_every_steps = 500
  return config
