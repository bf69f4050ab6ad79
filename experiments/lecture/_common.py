"""What the lecture's experiments share: the CIFAR-10 (JPEG q75) folder with its fixed
45,000 / 5,000 split, and the `budget` argument (laptop, or the paper's)."""
import os

from flaxcnn.config import parse_arg

CIFAR10_JPEG = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data",
    "cifar10-jpeg", "train.tar.xz"))
TRAIN_IMAGES = 45_000          # after the 5,000 held out for validation


def options(arg: str, file: str, **more) -> dict:
  """`budget=laptop|paper|smoke` (laptop: minutes on 2 CPU cores; paper: the paper's
  steps, for a GPU; smoke: `smoke()`), `seeds=N` (0: each arm's declared number), and
  the file's own options."""
  return parse_arg(arg, file, budget=("laptop", "paper", "smoke"), seeds=0, **more)


def smoke(config, cifar_depth: int = 0) -> None:
  """budget=smoke: the experiment's machinery in seconds, not its claim (the tests run
  every experiment so): 2 steps of 8 images, an evaluation after each, no image
  summaries, 20 images held out, 4 per class where the file asks for a subset, CIFAR
  ResNets of `cifar_depth`."""
  config.num_steps = 2
  config.batch_size = 8
  config.eval_batch_size = 16
  config.eval_every_epochs = 1e-3
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.log_histograms = False
  config.log_images = False     # a compile more per run (tests/test_train.py checks them)
  if config.data.source == "folder":
    config.data.validation_size = 20
    config.data.train_per_class = min(config.data.train_per_class, 4)
  else:
    config.data.synthetic_size = 32
    config.data.validation_size = 16
  if cifar_depth:
    config.model.kwargs.depth = cifar_depth


def use_cifar10_jpeg(config, classes=(), train_per_class: int = 0) -> None:
  """Trains on the CIFAR-10 JPEG training folder, 5,000 images held out for validation
  (the same 5,000 for every experiment), optionally only `classes` (relabelled 0..k-1)
  and a fixed `train_per_class` images of each in the training split."""
  config.data.source = "folder"
  config.data.name = "cifar10-jpeg"
  config.data.label = "CIFAR-10 (JPEG q75)"
  config.data.root = os.environ.get("FLAXCNN_CIFAR10_JPEG", CIFAR10_JPEG)
  config.data.test_split = "test"      # absent: validation is the held-out 5,000
  config.data.validation_size = 5000
  if classes:
    config.data.classes = tuple(classes)
  if train_per_class:
    config.data.train_per_class = train_per_class


def steps_per_epoch(batch_size: int, images: int = TRAIN_IMAGES) -> float:
  return images / batch_size
