"""Streaming input for datasets that do not fit in memory (ImageNet), through tf.data.

Training: decode, scale augmentation (He et al. 2015: shorter side resized to a
random size in `config.augment.scale_range`, a random `image_size` crop, random
horizontal flip), per-process share of every global batch, prefetch. Evaluation:
shorter side resized to image_size / 0.875, centre crop, the last batch padded and
masked so every example counts once.

Determinism: the epoch's order is a permutation seeded by (seed, epoch) and every
random augmentation is a stateless op seeded by (seed, epoch, position), so a run
resumed at step s skips exactly the first s batches (without decoding them) and
sees the same images as the uninterrupted run. Process p of P takes the p-th slice
of every global batch, so the global batch does not depend on the process count.
TensorFlow is imported only here and only when streaming is used.
"""
import dataclasses
import os
from typing import Optional, Tuple

import numpy as np

from flaxcnn.data.sources import IMAGE_EXTENSIONS, extract_archive, tfds_builder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass
class StreamingDataset:
  """Metadata and batch iterators of a streamed dataset (uint8 NHWC batches)."""
  name: str
  num_classes: int
  image_size: int
  sizes: dict                       # split -> number of examples
  records: dict                     # split -> (paths or serialized records, labels)
  from_tfds: bool
  mean: Tuple[float, ...] = IMAGENET_MEAN
  std: Tuple[float, ...] = IMAGENET_STD
  class_names: Optional[Tuple[str, ...]] = None
  eval_crop: Optional[int] = None   # centre crop at evaluation (default image_size);
                                    # larger for 10-crop / multi-scale views

  @property
  def image_shape(self):
    return (self.image_size, self.image_size, 3)

  @property
  def splits(self):
    return self.sizes

  # --------------------------------------------------------------------- tf.data

  def _decode(self, record):
    import tensorflow as tf
    data = tf.io.read_file(record) if not self.from_tfds else record
    return tf.io.decode_image(data, channels=3, expand_animations=False)

  def train_batches(self, config, epoch: int, start_step: int,
                    process_index: int = 0, process_count: int = 1):
    """Local (per-process) uint8 batches of epoch `epoch` from global step `start_step`
    of that epoch; yields numpy (images, labels)."""
    import tensorflow as tf
    records, labels = self.records["train"]
    n, B = len(labels), config.batch_size
    steps = n // B
    order = np.random.RandomState([config.seed, epoch]).permutation(n)[:steps * B]
    local = B // process_count
    order = order.reshape(steps, process_count, local)[start_step:, process_index].ravel()
    positions = (np.arange(start_step, steps)[:, None] * B + process_index * local
                 + np.arange(local)[None]).ravel()
    lo, hi = config.augment.scale_range
    size, flip = self.image_size, config.augment.flip

    def load(i, pos):
      seed = tf.stack([tf.cast(config.seed * 100_003 + epoch, tf.int64), tf.cast(pos, tf.int64)])
      seeds = tf.random.experimental.stateless_split(seed, 3)
      image = self._decode(tf.gather(records, i))
      image = _resize_shorter(image, tf.random.stateless_uniform(
          [], seeds[0], lo, hi + 1, dtype=tf.int32))
      image = tf.image.stateless_random_crop(image, [size, size, 3], seeds[1])
      if flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[2])
      return image, tf.gather(labels, i)

    ds = tf.data.Dataset.from_tensor_slices((order, positions))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(local, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return ds.as_numpy_iterator()

  def eval_batches(self, split: str, batch_size: int, process_index: int = 0,
                   process_count: int = 1):
    """Local (images, labels, mask) batches: resize, centre crop, padded last batch."""
    import tensorflow as tf
    records, labels = self.records[split]
    n = len(labels)
    total = -(-n // batch_size) * batch_size
    local = batch_size // process_count
    idx = np.arange(total).reshape(-1, process_count, local)[:, process_index].ravel()
    mask = (idx < n).astype(np.float32)
    idx = np.minimum(idx, n - 1)
    size = self.eval_crop or self.image_size
    shorter = max(round(self.image_size / 0.875), size)

    def load(i, m):
      image = self._decode(tf.gather(records, i))
      image = _resize_shorter(image, shorter)
      image = _center_crop(image, size)
      return image, tf.gather(labels, i), m

    ds = tf.data.Dataset.from_tensor_slices((idx, mask))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(local).prefetch(tf.data.AUTOTUNE).as_numpy_iterator()



class TFDSStreamingDataset(StreamingDataset):
  """A prepared TFDS dataset (ImageNet) read from its files: records are shuffled
  with a seeded buffer per epoch, skipped undecoded on resume, and every process
  reads only its own shard of the files (tfds.split_for_jax_process)."""

  def train_batches(self, config, epoch, start_step, process_index=0, process_count=1):
    import tensorflow as tf
    import tensorflow_datasets as tfds
    builder, split = self.records["train"]
    local = config.batch_size // process_count
    split = tfds.even_splits(split, n=process_count, drop_remainder=True)[process_index]
    ds = builder.as_dataset(
        split=split, shuffle_files=True,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=config.seed * 1000 + epoch,
                                    interleave_cycle_length=16))
    ds = ds.shuffle(config.data.shuffle_buffer, seed=config.seed * 1000 + epoch,
                    reshuffle_each_iteration=False)
    ds = ds.enumerate().skip(start_step * local)
    lo, hi = config.augment.scale_range
    size, flip = self.image_size, config.augment.flip

    def load(pos, x):
      seed = tf.stack([tf.cast(config.seed * 100_003 + epoch, tf.int64),
                       pos * process_count + process_index])
      seeds = tf.random.experimental.stateless_split(seed, 3)
      image = tf.io.decode_image(x["image"], channels=3, expand_animations=False)
      image = _resize_shorter(image, tf.random.stateless_uniform(
          [], seeds[0], lo, hi + 1, dtype=tf.int32))
      image = tf.image.stateless_random_crop(image, [size, size, 3], seeds[1])
      if flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[2])
      return image, tf.cast(x["label"], tf.int32)

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(local, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return ds.as_numpy_iterator()

  def eval_batches(self, split, batch_size, process_index=0, process_count=1):
    import tensorflow as tf
    import tensorflow_datasets as tfds
    builder, name = self.records[split]
    local = batch_size // process_count
    shares = tfds.even_splits(name, n=process_count)
    n_max = -(-self.sizes[split] // process_count)
    num_batches = -(-n_max // local)   # the same on every process
    ds = builder.as_dataset(split=shares[process_index], shuffle_files=False)
    size = self.eval_crop or self.image_size
    shorter = max(round(self.image_size / 0.875), size)

    def load(x):
      image = _resize_shorter(x["image"], shorter)
      return _center_crop(image, size), tf.cast(x["label"], tf.int32)

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(local)
    it = ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
    for _ in range(num_batches):
      images, labels = next(it, (np.zeros((0, size, size, 3), np.uint8),
                                 np.zeros((0,), np.int32)))
      pad = local - len(labels)
      mask = np.concatenate([np.ones(len(labels), np.float32), np.zeros(pad, np.float32)])
      if pad:
        images = np.concatenate([images, np.zeros((pad, size, size, 3), np.uint8)])
        labels = np.concatenate([labels, np.zeros(pad, np.int32)])
      yield images, labels, mask


def _resize_shorter(image, shorter):
  import tensorflow as tf
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = tf.cast(shorter, tf.float32) / tf.reduce_min(shape)
  new = tf.cast(tf.round(shape * scale), tf.int32)
  image = tf.image.resize(image, new, method="bilinear", antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _center_crop(image, size):
  import tensorflow as tf
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  return tf.image.crop_to_bounding_box(image, (h - size) // 2, (w - size) // 2, size, size)


def _folder_records(folder, class_names):
  paths, labels = [], []
  for label, cls in enumerate(class_names):
    d = os.path.join(folder, cls)
    if os.path.isdir(d):
      names = sorted(n for n in os.listdir(d) if n.lower().endswith(IMAGE_EXTENSIONS))
      paths += [os.path.join(d, n) for n in names]
      labels += [label] * len(names)
  return np.asarray(paths), np.asarray(labels, np.int32)


def load(config) -> StreamingDataset:
  """The streamed dataset of `config.data` (source 'folder' or 'tfds')."""
  d = config.data
  size = d.image_size or 224
  records = {}
  if d.source == "folder":
    from flaxcnn.data.sources import _find_root, _is_archive
    if not os.path.exists(d.root):
      raise FileNotFoundError(f"config.data.root={d.root} does not exist")
    root = extract_archive(d.root, d.cache_dir) if _is_archive(d.root) else d.root
    names = {"train": d.train_split, "validation": d.validation_split, "test": d.test_split}
    root = _find_root(root, names.values())
    train_dir = os.path.join(root, d.train_split)
    class_names = tuple(sorted(e for e in os.listdir(train_dir)
                               if os.path.isdir(os.path.join(train_dir, e))))
    for key, name in names.items():
      if os.path.isdir(os.path.join(root, name)):
        records[key] = _folder_records(os.path.join(root, name), class_names)
    num_classes, from_tfds = len(class_names), False
  elif d.source == "tfds":
    builder = tfds_builder(d.name, d.data_dir)
    info = builder.info
    for key, name in (("train", d.train_split), ("validation", d.validation_split),
                      ("test", d.test_split)):
      if name in info.splits:
        records[key] = (builder, name)
    sizes = {k: info.splits[v[1]].num_examples for k, v in records.items()}
    return TFDSStreamingDataset(d.name, info.features["label"].num_classes, size, sizes,
                                records, True,
                                class_names=tuple(info.features["label"].names))
  else:
    raise ValueError(f"config.data.in_memory=False needs config.data.source 'folder' or "
                     f"'tfds', not {d.source!r}")
  if "validation" not in records and d.validation_size:
    paths, labels = records["train"]
    order = np.random.RandomState(0).permutation(len(labels))
    rest, held = order[:-d.validation_size], order[-d.validation_size:]
    records["train"], records["validation"] = ((paths[rest], labels[rest]),
                                               (paths[held], labels[held]))
  sizes = {k: len(v[1]) for k, v in records.items()}
  return StreamingDataset(d.name, num_classes, size, sizes, records, from_tfds,
                          class_names=class_names)
