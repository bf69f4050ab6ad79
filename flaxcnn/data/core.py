"""The in-memory dataset types: `Split` arrays, a `Dataset` of splits, hold-out and
per-channel statistics (re-exported by `flaxcnn.data`)."""
import dataclasses
import hashlib
from typing import Dict, Optional, Tuple

import numpy as np


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


def fingerprint(dataset) -> Dict[str, str]:
  """{split: 'size:hash'}: what each split holds (a hash of its images and labels;
  for a streamed dataset, whose images are read later, the size alone)."""
  out = {}
  for name, split in dataset.splits.items():
    images = getattr(split, "images", None)
    if images is None:
      out[name] = str(dataset.sizes[name])
      continue
    h = hashlib.blake2b(digest_size=12)
    h.update(np.ascontiguousarray(images).data)
    h.update(np.ascontiguousarray(split.labels).data)
    out[name] = f"{len(split)}:{h.hexdigest()}"
  return out
