"""Quick start: a small CIFAR-style ResNet on scikit-learn's handwritten digits.

Real data, bundled with scikit-learn (no download): 1,797 images of 8x8 pixels, of
which 1,257 train, 180 are held out for validation and 360 for the test. Reaches
about 99% test accuracy (97% at least: tests/test_readme.py) in under a minute on
2 CPU cores.

  python launch.py --config=experiments/quickstart.py --workdir=runs/quickstart
"""
from flaxcnn.config import default_config


def get_config():
  config = default_config()
  config.model.name = "resnet20_cifar"   # He et al. 2015, option-A shortcuts
  config.model.kwargs.depth = 8          # 3 stages of one basic block: ResNet-8
  config.data.source = "digits"
  config.data.name = "digits"
  config.data.validation_size = 180
  config.augment.crop_padding = 1        # 8x8 digits: shift by at most one pixel
  config.augment.flip = False            # digits are not mirror-symmetric
  config.batch_size = 64
  config.eval_batch_size = 200
  config.num_epochs = 30.0
  config.optimizer.name = "sgd"
  config.optimizer.lr = 0.1
  config.optimizer.weight_decay = 5e-4
  config.schedule.name = "cosine"
  config.log_every_steps = 100
  config.eval_every_epochs = 10.0
  config.checkpoint_every_steps = 200
  return config
