"""Datasets: loaded once into uint8 arrays (in memory) or streamed through tf.data.

`load(config)` returns a `Dataset` whose splits are `Split(images, labels)` numpy
arrays (NHWC uint8, int32 labels) for in-memory data; the training loop puts them on
the devices once and shuffles/augments inside the jitted step. Large datasets
(`config.data.in_memory=False`) stream through `flaxcnn.data.streaming`.

Sources (config.data.source):
- "digits":    scikit-learn's bundled handwritten digits (8x8, offline).
- "folder":    ROOT/<split>/<class>/*.{jpg,jpeg,png} (the ImageNet layout), or an
               archive (.tar, .tar.gz, .tar.xz) of it; decoded once and cached.
- "tfds":      a TFDS dataset by name, already prepared in data_dir.
- "synthetic": random images for benchmarks.
A validation split is held out from train (the last `validation_size` examples
after a fixed shuffle) when the dataset has none.
"""
import dataclasses
import numbers
from typing import Dict, Optional, Tuple

import numpy as np

MAX_IMAGE_SIZE = 4096            # pixels per side; beyond it a size is a typo
MAX_SYNTHETIC_BYTES = 16 << 30   # synthetic data is allocated whole


@dataclasses.dataclass
class Split:
  images: np.ndarray   # (N, H, W, C) uint8
  labels: np.ndarray   # (N,) int32

  def __len__(self):
    return len(self.labels)


@dataclasses.dataclass
class Dataset:
  name: str
  num_classes: int
  splits: Dict[str, Split]
  mean: Tuple[float, ...]      # per channel, in [0, 1], of the training split
  std: Tuple[float, ...]
  class_names: Optional[Tuple[str, ...]] = None

  @property
  def image_shape(self):
    return self.splits["train"].images.shape[1:]

  @property
  def sizes(self):
    return {k: len(v) for k, v in self.splits.items()}


def _stats(images: np.ndarray):
  """Per-channel mean and std in [0, 1], exactly, from uint8 value histograms."""
  values = np.arange(256, dtype=np.float64) / 255.0
  mean, std = [], []
  for c in range(images.shape[-1]):
    counts = np.bincount(images[..., c].ravel(), minlength=256).astype(np.float64)
    m = counts @ values / counts.sum()
    mean.append(float(m))
    std.append(float(max(np.sqrt(counts @ (values - m) ** 2 / counts.sum()), 1e-3)))
  return tuple(mean), tuple(std)


def hold_out(split: Split, size: int, seed: int = 0) -> Tuple[Split, Split]:
  """Splits off `size` examples after a fixed shuffle: (train, validation)."""
  if not 0 < size < len(split):
    raise ValueError(f"config.data.validation_size={size} must be between 1 and the "
                     f"{len(split)} training examples")
  order = np.random.RandomState(seed).permutation(len(split))
  rest, held = order[:-size], order[-size:]
  return (Split(split.images[rest], split.labels[rest]),
          Split(split.images[held], split.labels[held]))


def finalize(name, num_classes, splits, validation_size, class_names=None,
             seed: int = 0) -> Dataset:
  """Adds a held-out validation split if needed and computes the train statistics."""
  if "validation" not in splits and validation_size:
    splits["train"], splits["validation"] = hold_out(splits["train"], validation_size, seed)
  mean, std = _stats(splits["train"].images)
  return Dataset(name, num_classes, splits, mean, std, class_names)


def _is_int(x) -> bool:
  return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def check_config(config) -> None:
  """One-line ValueErrors for data settings that would fail late or allocate absurdly
  (image size, synthetic size, scale range, train crop, evaluation scales), before
  anything is allocated. `load` calls it; config validation may call it too."""
  d, a = config.data, config.augment
  size = d.get("image_size")
  if size is not None and not (_is_int(size) and 1 <= size <= MAX_IMAGE_SIZE):
    raise ValueError(f"config.data.image_size={size!r} must be an integer from 1 to "
                     f"{MAX_IMAGE_SIZE} (pixels per side), or None for the native size")
  if d.get("source") == "synthetic":
    n = d.get("synthetic_size")
    if not (_is_int(n) and n >= 1):
      raise ValueError(f"config.data.synthetic_size={n!r} must be a positive integer")
    if size is not None and n * size * size * 3 > MAX_SYNTHETIC_BYTES:
      raise ValueError(f"config.data.synthetic_size={n} images of {size}x{size} need "
                       f"{n * size * size * 3 / 2**30:.0f} GiB; use fewer or smaller images")
  scale_range = tuple(a.get("scale_range") or ())
  if len(scale_range) != 2 or not all(_is_int(s) and 1 <= s <= MAX_IMAGE_SIZE
                                      for s in scale_range) or scale_range[0] > scale_range[1]:
    raise ValueError(f"config.augment.scale_range={a.get('scale_range')!r} must be two "
                     f"integers (lo, hi) with 1 <= lo <= hi <= {MAX_IMAGE_SIZE}")
  from flaxcnn.data.streaming import TRAIN_CROPS
  if a.get("train_crop", "scale") not in TRAIN_CROPS:
    raise ValueError(f"config.augment.train_crop={a.get('train_crop')!r} must be one of "
                     f"{', '.join(TRAIN_CROPS)}")
  scales = config.get("eval_scales") or ()
  if not all(_is_int(s) and 1 <= s <= MAX_IMAGE_SIZE for s in scales):
    raise ValueError(f"config.eval_scales={tuple(scales)!r} must be integers from 1 to "
                     f"{MAX_IMAGE_SIZE} (shorter sides)")


def load(config):
  """The dataset of `config.data`: a `Dataset` of arrays, or a streamed one when
  `config.data.in_memory` is False."""
  from flaxcnn.data import sources
  check_config(config)
  d = config.data
  if not d.in_memory and d.source in ("folder", "tfds"):
    from flaxcnn.data import streaming
    return streaming.load(config)
  if d.source == "digits":
    return sources.digits(d.validation_size)
  if d.source == "synthetic":
    return sources.synthetic(d.synthetic_size, d.image_size, d.num_classes, config.seed)
  if d.source == "folder":
    return sources.image_folder(d.root, d.cache_dir, d.validation_size,
                                train_split=d.train_split,
                                validation_split=d.validation_split,
                                test_split=d.test_split)
  if d.source == "tfds":
    return sources.tfds_in_memory(d.name, d.data_dir, d.validation_size,
                                  train_split=d.train_split,
                                  validation_split=d.validation_split,
                                  test_split=d.test_split)
  raise ValueError(f"config.data.source={d.source!r} is unknown")
