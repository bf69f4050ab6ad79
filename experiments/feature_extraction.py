"""Feature extraction: a trained backbone's pooled features + logistic regression.

The backbone (config.features.backbone) is a flaxcnn training workdir (its
latest checkpoint; the model comes from the run's config.json and the input
normalization from the statistics training saved in its data.json) or an
imported torchvision / timm weights file (flaxcnn.pretrained, model =
config.model.name, normalized with ImageNet statistics unless
config.features.mean/std are set). Its classifier is dropped, the global-average-
pooled features of every split of config.data are computed once and cached
(keyed by backbone and dataset), and a logistic-regression head is trained on
them; rerunning, e.g. with another head_l2, reads the cache.

  python launch.py --config=experiments/quickstart.py --workdir=runs/quickstart
  python launch.py --config=experiments/feature_extraction.py \
      --workdir=runs/features --config.features.backbone=runs/quickstart

The `features` section and `job` are fields of default_config() (flaxcnn/config.py).
"""
from flaxcnn.config import default_config


def get_config():
  config = default_config()
  config.job = "features"
  # The dataset whose features are extracted (here the digits, as the quickstart).
  config.data.source = "digits"
  config.data.name = "digits"
  config.data.validation_size = 180
  config.eval_batch_size = 256         # extraction batch (divisible by the devices)
  # Imported weights only: the preset the file is converted into.
  config.model.name = "resnet18"
  config.features.head_steps = 500     # full-batch Adam steps of the linear head
  return config
