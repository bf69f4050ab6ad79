"""Feature extraction: a trained backbone's pooled features + logistic regression.

The backbone (config.features.backbone) is a flaxcnn training workdir (its
latest checkpoint; the model and input normalization come from the run's
config.json) or an imported torchvision / timm weights file (flaxcnn.pretrained,
model = config.model.name, normalized with ImageNet statistics unless
config.features.mean/std are set). Its classifier is dropped, the global-average-
pooled features of every split of config.data are computed once and cached
(keyed by backbone and dataset), and a logistic-regression head is trained on
them; rerunning, e.g. with another head_l2, reads the cache.

  python launch.py --config=experiments/quickstart.py --workdir=runs/quickstart
  python -m flaxcnn.features --config=experiments/feature_extraction.py \
      --workdir=runs/features --config.features.backbone=runs/quickstart

This file adds the `features` section to default_config() (unlocked and locked
again): it exists only for this command.
"""
import ml_collections
from ml_collections import config_dict

from flaxcnn.config import default_config


def get_config():
  config = default_config()
  # The dataset whose features are extracted (here the digits, as the quickstart).
  config.data.source = "digits"
  config.data.name = "digits"
  config.data.validation_size = 180
  config.eval_batch_size = 256         # extraction batch (divisible by the devices)
  # Imported weights only: the preset the file is converted into.
  config.model.name = "resnet18"

  config.unlock()
  config.features = ml_collections.ConfigDict()
  f = config.features
  f.backbone = config_dict.placeholder(str)   # a flaxcnn workdir, or .safetensors/.pth/.npz
  f.cache_dir = config_dict.placeholder(str)  # default: $FLAXCNN_CACHE/features (~/.cache/flaxcnn)
  f.image_size = config_dict.placeholder(int)  # resize images before the backbone (default: as is)
  f.mean = config_dict.placeholder(tuple)     # imported weights: input mean/std
  f.std = config_dict.placeholder(tuple)      #   (default ImageNet's)
  f.head_steps = 500                   # full-batch Adam steps of the logistic regression
  f.head_lr = 0.05
  f.head_l2 = 1e-3                     # L2 penalty on the head's weights
  config.lock()
  config.model.kwargs.unlock()
  return config
