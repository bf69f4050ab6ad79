"""The in-memory dataset types: `Split` arrays, a `Dataset` of splits, hold-out and
per-channel statistics (re-exported by `flaxcnn.data`)."""
import dataclasses
import hashlib
from typing import Dict, List, Optional, Sequence, Tuple

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
  validation_held_out: bool = False   # validation drawn from train (config.data.validation_size)

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
  held = "validation" not in splits and bool(validation_size)
  if held:
    splits["train"], splits["validation"] = hold_out(splits["train"], validation_size, seed)
  mean, std = _stats(splits["train"].images)
  return Dataset(name, num_classes, splits, mean, std, class_names, validation_held_out=held)


def select(dataset: Dataset, classes: Sequence[int] = (), train_per_class: int = 0,
           seed: int = 0) -> Dataset:
  """The dataset restricted to `classes` (relabelled 0..k-1 in the order given) in every
  split, and to `train_per_class` examples of each class in the training split (a fixed
  choice: the first of each class after a shuffle by `seed`, whatever the run's seed).
  The training statistics are those of the examples kept."""
  if not classes and not train_per_class:
    return dataset
  n = dataset.num_classes
  classes = tuple(int(c) for c in classes) or tuple(range(n))
  bad = [c for c in classes if not 0 <= c < n]
  if bad or len(set(classes)) != len(classes):
    raise ValueError(f"config.data.classes={classes!r}: each class at most once, from 0 to "
                     f"{n - 1} (the dataset's {n} classes)")
  relabel = np.full(n, -1, np.int32)
  relabel[list(classes)] = np.arange(len(classes), dtype=np.int32)
  splits = {}
  for name, split in dataset.splits.items():
    keep = np.nonzero(relabel[split.labels] >= 0)[0]
    if name == "train" and train_per_class:
      order = np.random.RandomState(seed).permutation(len(split))
      picked = []
      for c in classes:
        of_c = order[split.labels[order] == c][:train_per_class]
        if len(of_c) < train_per_class:
          raise ValueError(f"config.data.train_per_class={train_per_class}: class {c} has "
                           f"only {len(of_c)} training examples; ask for at most that")
        picked.append(of_c)
      keep = np.sort(np.concatenate(picked))
    splits[name] = Split(split.images[keep], relabel[split.labels[keep]])
  names = (tuple(dataset.class_names[c] for c in classes) if dataset.class_names
           else None)
  mean, std = _stats(splits["train"].images)
  return dataclasses.replace(dataset, num_classes=len(classes), splits=splits, mean=mean,
                             std=std, class_names=names)


def example_hashes(split: Split) -> List[str]:
  """A short hash per example (its image's bytes and its label), to find it again."""
  return [hashlib.blake2b(np.ascontiguousarray(image).tobytes()
                          + np.ascontiguousarray(label).tobytes(), digest_size=8).hexdigest()
          for image, label in zip(split.images, split.labels)]


def keep_validation(dataset: Dataset, held: Sequence[str]) -> Tuple[Dataset, int]:
  """The dataset re-split so that validation holds the examples `held` names (in that
  order) and train all the others (images added since go to train, never to
  validation). Returns it and how many of `held` are still there."""
  pool = Split(np.concatenate([dataset.splits["train"].images,
                               dataset.splits["validation"].images]),
               np.concatenate([dataset.splits["train"].labels,
                               dataset.splits["validation"].labels]))
  where = {h: i for i, h in enumerate(example_hashes(pool))}
  picked = [where[h] for h in held if h in where]
  rest = np.setdiff1d(np.arange(len(pool)), picked)
  splits = dict(dataset.splits, train=Split(pool.images[rest], pool.labels[rest]),
                validation=Split(pool.images[picked], pool.labels[picked]))
  return dataclasses.replace(dataset, splits=splits), len(picked)


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
