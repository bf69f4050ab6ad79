"""Streaming input for datasets that do not fit in memory (ImageNet), through tf.data.

Nothing here reads the whole config: `load` takes its data section and training
crop, `train_batches` an `Options` (the run's global and per-process batch, seed,
crop and flip, evaluation mode) that `options` builds once from the config's sections.

Training crops (config.augment.train_crop):
- "scale" (He et al. 2015): the shorter side resized to a random size in
  `config.augment.scale_range`, then a random `image_size` crop. Done as one fused
  `decode_and_crop_jpeg` of the equivalent window of the original image (a crop of
  size * shorter / scale pixels) resized to image_size: only the window is decoded.
- "inception" (Szegedy et al. 2015, as the EfficientNet reference): a window from
  `sample_distorted_bounding_box` (area 0.08-1, aspect 3/4-4/3, 10 attempts, centre
  crop of image_size / (image_size + 32) of the shorter side when no attempt fits),
  decoded alone and resized bicubically to image_size.
Both flip horizontally at random. Evaluation: the centre window that a resize of the
shorter side to image_size / 0.875 (inception: + 32 px) and a centre crop would keep,
decoded alone and resized; the last batch padded and masked so every example counts
once. `config.data.eval_image_size` evaluates on a larger crop: a crop of that side
from the shorter side resized to the larger of it and image_size / 0.875, so 320
after training at 224 is the 320 x 320 centre of a 320 shorter side (He et al. 2016,
Table 5). `multiscale_batches` gives the paper's multi-scale test: whole images, shorter
side s for each s of config.eval_scales (He et al. 2015, Table 4).

Determinism: the epoch's order is a permutation seeded by (seed, epoch) and every
random augmentation is a stateless op seeded by (seed, epoch, position), so a run
resumed at step s skips exactly the first s batches (without decoding them) and
sees the same images as the uninterrupted run. Process p of P takes the p-th slice
of every global batch, so the global batch does not depend on the process count.
TensorFlow is imported only here and only when streaming is used.

Images stream at config.data.image_size; unset, at 224, with one line saying so when
the images are at most half as large (CIFAR-sized images upscaled for an ImageNet
model may be meant, a CIFAR model on them hardly).
"""
import concurrent.futures
import dataclasses
import os
from typing import Optional, Tuple

import numpy as np

from flaxcnn.data.sources import (IMAGE_EXTENSIONS, _find_root, _is_archive, extract_archive,
                                  folder_name, split_classes, tfds_builder)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAIN_CROPS = ("scale", "inception")
CROP_PADDING = 32       # EfficientNet reference: centre crop size / (size + 32) of the image
EVAL_FRACTION = 0.875   # centre crop of a resize to size / 0.875 (224 of 256)


def data_options(threads: Optional[int] = None):
  """tf.data options: deterministic order, a private thread pool of `threads`
  (default: every core), one thread per op, autotuning within a quarter of the RAM."""
  import tensorflow as tf
  o = tf.data.Options()
  o.deterministic = True
  o.threading.private_threadpool_size = threads or os.cpu_count() or 1
  o.threading.max_intra_op_parallelism = 1
  o.autotune.enabled = True
  try:
    o.autotune.ram_budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
  except (ValueError, OSError, AttributeError):
    pass
  return o


@dataclasses.dataclass(frozen=True)
class Options:
  """What the streamed batches need of a run: the global batch and this process's
  share of it, the seed, the training crop (config.augment), the TFDS shuffle
  buffer (config.data) and the evaluation mode."""
  global_batch: int
  process_batch: int
  seed: int
  train_crop: str            # "scale" | "inception"
  scale_range: Tuple[int, int]
  flip: bool
  shuffle_buffer: int        # TFDS only
  eval_mode: str = "center"  # center | ten_crop | multiscale
  eval_scales: Tuple[int, ...] = ()

  @property
  def process_count(self) -> int:
    return self.global_batch // self.process_batch


def options(data, augment, global_batch: int, process_batch: int, seed: int,
            eval_mode: str = "center", eval_scales=()) -> Options:
  """The `Options` of the config sections `data` and `augment` and the run's batches."""
  return Options(global_batch, process_batch, seed,
                 train_crop=augment.get("train_crop", "scale"),
                 scale_range=tuple(augment.scale_range), flip=augment.flip,
                 shuffle_buffer=data.shuffle_buffer, eval_mode=eval_mode,
                 eval_scales=tuple(eval_scales))


# ----------------------------------------------------------------------------- windows
# Each returns a crop window (y, x, height, width) of an image of shape (h, w, ...).

def scale_window(shape, size: int, scale, seed):
  """He et al. 2015's scale augmentation as a window of the original image: resizing
  the shorter side to `scale` and cropping size x size there keeps the same pixels as
  cropping size * shorter / scale here (then resizing to size)."""
  import tensorflow as tf
  h, w = shape[0], shape[1]
  shorter = tf.cast(tf.minimum(h, w), tf.float32)
  side = tf.cast(tf.round(size * shorter / tf.cast(scale, tf.float32)), tf.int32)
  side = tf.clip_by_value(side, 1, tf.minimum(h, w))
  u = tf.random.stateless_uniform([2], seed)
  y = tf.minimum(tf.cast(u[0] * tf.cast(h - side + 1, tf.float32), tf.int32), h - side)
  x = tf.minimum(tf.cast(u[1] * tf.cast(w - side + 1, tf.float32), tf.int32), w - side)
  return tf.stack([y, x, side, side])


def center_window(shape, fraction):
  """The centred square of `fraction` of the shorter side (offsets as the
  EfficientNet reference: (h - side + 1) // 2)."""
  import tensorflow as tf
  h, w = shape[0], shape[1]
  side = tf.cast(fraction * tf.cast(tf.minimum(h, w), tf.float32), tf.int32)
  side = tf.clip_by_value(side, 1, tf.minimum(h, w))
  return tf.stack([(h - side + 1) // 2, (w - side + 1) // 2, side, side])


def inception_window(shape, size: int, seed):
  """The Inception-style random-resized crop exactly as the EfficientNet reference
  (tensorflow/tpu preprocessing.py): `sample_distorted_bounding_box` with the whole
  image as the object (min_object_covered 0.1, aspect 3/4-4/3, area 0.08-1,
  max_attempts 10); when it returns the whole image (no attempt fitted), the centre
  crop of size / (size + 32) of the shorter side."""
  import tensorflow as tf
  h, w = shape[0], shape[1]
  begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.stack([h, w, 3]), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed,
      min_object_covered=0.1, aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
      area_range=(0.08, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
  sampled = tf.stack([begin[0], begin[1], extent[0], extent[1]])
  whole = tf.logical_and(tf.equal(extent[0], h), tf.equal(extent[1], w))
  return tf.where(whole, center_window(shape, size / (size + CROP_PADDING)), sampled)


def decode_window(data, window_fn):
  """Decodes only the window `window_fn(shape)` of an encoded image: a fused
  `decode_and_crop_jpeg` for JPEG (the shape read from the header), decode then
  slice for PNG/BMP/GIF. RGB uint8."""
  import tensorflow as tf

  def jpeg():
    window = window_fn(tf.image.extract_jpeg_shape(data))
    return tf.image.decode_and_crop_jpeg(data, window, channels=3)

  def other():
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    y, x, h, w = tf.unstack(window_fn(tf.shape(image)))
    return image[y:y + h, x:x + w]

  return tf.cond(tf.io.is_jpeg(data), jpeg, other)


def _resize(image, height, width, method="bilinear"):
  """Resize to (height, width); uint8 out. Bilinear is antialiased only when it
  shrinks a side more than 2x (the plain kernel already averages 2 pixels; the
  antialiased one costs twice as much)."""
  import tensorflow as tf
  size = tf.stack([height, width])
  if method == "bilinear":
    shrink = tf.reduce_max(tf.cast(tf.shape(image)[:2], tf.float32)
                           / tf.cast(size, tf.float32))
    image = tf.cond(shrink > 2.0,
                    lambda: tf.image.resize(image, size, antialias=True),
                    lambda: tf.image.resize(image, size))
  else:
    image = tf.image.resize(image, size, method=method)
  return tf.dtypes.saturate_cast(image + 0.5, tf.uint8)


def train_image(data, opts: Options, size: int, seed):
  """One training example from encoded bytes: the crop of opts.train_crop
  ("scale" or "inception"), resized to size x size, randomly flipped."""
  import tensorflow as tf
  crop = opts.train_crop
  seeds = tf.random.experimental.stateless_split(seed, 3)
  if crop == "inception":
    image = decode_window(data, lambda shape: inception_window(shape, size, seeds[0]))
    image = _resize(image, size, size, "bicubic")
  elif crop == "scale":
    lo, hi = opts.scale_range
    scale = tf.random.stateless_uniform([], seeds[0], lo, hi + 1, dtype=tf.int32)
    image = decode_window(data, lambda shape: scale_window(shape, size, scale, seeds[1]))
    image = _resize(image, size, size)
  else:
    raise ValueError(f"config.augment.train_crop={crop!r} must be one of {TRAIN_CROPS}")
  if opts.flip:
    image = tf.image.stateless_random_flip_left_right(image, seeds[2])
  return image


def eval_image(data, size: int, fraction: float):
  """The centre crop for evaluation: the window of `fraction` of the shorter side,
  decoded alone and resized to size x size."""
  image = decode_window(data, lambda shape: center_window(shape, fraction))
  return _resize(image, size, size)


# ----------------------------------------------------------------------------- errors

def _bad_image(paths, error) -> str:
  """A one-line message naming the first of `paths` that TensorFlow cannot decode."""
  import tensorflow as tf
  for path in paths:
    try:
      tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    except (tf.errors.OpError, ValueError) as e:
      reason = str(getattr(e, "message", e)).strip().splitlines()[0]
      return f"unreadable image {path}: {reason}. Remove or replace the file."
  reason = str(getattr(error, "message", error)).strip().splitlines()[0]
  return f"a streamed batch failed to decode ({reason}); files: {', '.join(paths[:4])} ..."


def _named_errors(iterator, paths, local: int):
  """Yields from a numpy iterator of batches of `local` examples whose files are
  `paths` (in order); a decode error becomes a one-line ValueError naming the file."""
  import tensorflow as tf
  t = 0
  while True:
    try:
      batch = next(iterator)
    except StopIteration:
      return
    except tf.errors.OpError as e:
      raise ValueError(_bad_image(list(paths[t * local:(t + 1) * local]), e)) from None
    yield batch
    t += 1


def _image_shape(path) -> Tuple[int, int]:
  from PIL import Image
  try:
    with Image.open(path) as im:    # reads the header only
      return im.size[1], im.size[0]
  except Exception as e:
    raise ValueError(f"unreadable image {path}: {e}. Remove or replace the file.") from None


DEFAULT_IMAGE_SIZE = 224   # the streamed size when config.data.image_size is unset


def _say_if_upscaled(where: str, shapes) -> None:
  """One line when config.data.image_size is unset and the images (a sample of their
  (height, width)) are at most half the default size: they would be upscaled."""
  shapes = list(shapes)
  if not shapes or max(max(s) for s in shapes) > DEFAULT_IMAGE_SIZE // 2:
    return
  h, w = shapes[0]
  print(f"note: config.data.image_size is unset, so the {h}x{w} images of {where} are "
        f"upscaled to {DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE}; set "
        f"--config.data.image_size={max(h, w)} to train at their own size "
        f"(or ={DEFAULT_IMAGE_SIZE} to keep it)", flush=True)


# ----------------------------------------------------------------------------- datasets

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
                                    # larger for 10-crop views and for
                                    # config.data.eval_image_size (He et al. 2016's 320)
  crop_padding: Optional[int] = None  # eval centre crop size / (size + padding)
                                      # (EfficientNet); None: size / 0.875
  threads: Optional[int] = None     # tf.data private thread pool (default: all cores)

  @property
  def image_shape(self):
    return (self.image_size, self.image_size, 3)

  @property
  def splits(self):
    return self.sizes

  def _read(self, record):
    import tensorflow as tf
    return record if self.from_tfds else tf.io.read_file(record)

  def _eval_fraction(self, size: int) -> float:
    """The part of the shorter side kept by the evaluation centre crop of `size`."""
    if self.crop_padding is not None:
      shorter = self.image_size + self.crop_padding
    else:
      shorter = round(self.image_size / EVAL_FRACTION)
    return min(1.0, size / max(shorter, size))

  # --------------------------------------------------------------------- tf.data

  def train_batches(self, opts: Options, epoch: int, start_step: int,
                    process_index: int = 0):
    """Local (per-process: opts.process_batch) uint8 batches of epoch `epoch` from
    global step `start_step` of that epoch; yields numpy (images, labels)."""
    import tensorflow as tf
    records, labels = self.records["train"]
    n, B = len(labels), opts.global_batch
    steps = n // B
    order = np.random.RandomState([opts.seed, epoch]).permutation(n)[:steps * B]
    local, process_count = opts.process_batch, opts.process_count
    order = order.reshape(steps, process_count, local)[start_step:, process_index].ravel()
    positions = (np.arange(start_step, steps)[:, None] * B + process_index * local
                 + np.arange(local)[None]).ravel()
    size = self.image_size

    def load(i, pos):
      seed = tf.stack([tf.cast(opts.seed * 100_003 + epoch, tf.int64), tf.cast(pos, tf.int64)])
      image = train_image(self._read(tf.gather(records, i)), opts, size, seed)
      return image, tf.gather(labels, i)

    ds = tf.data.Dataset.from_tensor_slices((order, positions))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(local, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    ds = ds.with_options(data_options(self.threads))
    return _named_errors(ds.as_numpy_iterator(), records[order], local)

  def eval_batches(self, split: str, batch_size: int, process_index: int = 0,
                   process_count: int = 1):
    """Local (images, labels, mask) batches: centre crop, padded last batch."""
    import tensorflow as tf
    records, labels = self.records[split]
    n = len(labels)
    total = -(-n // batch_size) * batch_size
    local = batch_size // process_count
    idx = np.arange(total).reshape(-1, process_count, local)[:, process_index].ravel()
    mask = (idx < n).astype(np.float32)
    idx = np.minimum(idx, n - 1)
    size = self.eval_crop or self.image_size
    fraction = self._eval_fraction(size)

    def load(i, m):
      image = eval_image(self._read(tf.gather(records, i)), size, fraction)
      return image, tf.gather(labels, i), m

    ds = tf.data.Dataset.from_tensor_slices((idx, mask))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(local).prefetch(tf.data.AUTOTUNE).with_options(data_options(self.threads))
    return _named_errors(ds.as_numpy_iterator(), records[idx], local)

  def image_shapes(self, split: str) -> np.ndarray:
    """(N, 2) heights and widths of a split's images, read from the file headers."""
    cache = self.__dict__.setdefault("_shapes", {})
    if split not in cache:
      paths = self.records[split][0]
      with concurrent.futures.ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        cache[split] = np.asarray(list(pool.map(_image_shape, paths, chunksize=256)),
                                  np.int64).reshape(-1, 2)
    return cache[split]

  def multiscale_plan(self, split: str, batch_size: int, scales, aspect_step: float = 0.1):
    """Global batches of the multi-scale test: [(indices, mask, [(h, w) per scale])].

    Images are grouped by orientation and aspect ratio (longer / shorter side,
    rounded to a multiple of `aspect_step`, <= aspect_step / 2 distortion; 0: exact),
    so every batch has one shape per scale: shorter side s, longer side s * ratio.
    Each group is padded to whole batches (mask 0)."""
    shapes = self.image_shapes(split)
    h, w = shapes[:, 0], shapes[:, 1]
    ratio = np.maximum(h, w) / np.minimum(h, w)
    if aspect_step:
      ratio = np.maximum(1.0, np.round(ratio / aspect_step) * aspect_step)
    groups = {}
    for i, key in enumerate(zip(h > w, np.round(ratio, 6))):
      groups.setdefault(key, []).append(i)
    plan = []
    for (portrait, r), ids in sorted(groups.items()):
      ids = np.asarray(ids)
      sizes = []
      for s in scales:
        longer = max(1, int(round(s * r)))
        sizes.append((longer, s) if portrait else (s, longer))
      for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        pad = batch_size - len(chunk)
        mask = np.concatenate([np.ones(len(chunk)), np.zeros(pad)]).astype(np.float32)
        plan.append((np.concatenate([chunk, np.full(pad, chunk[-1])]), mask, sizes))
    return plan

  def multiscale_batches(self, split: str, batch_size: int, scales,
                         process_index: int = 0, process_count: int = 1,
                         aspect_step: float = 0.1):
    """Local (views, labels, mask) batches for multi-scale testing the paper's way
    (He et al. 2015, Sec. 3.4 and Table 4): `views` holds, per scale s, the whole
    images resized so their shorter side is s (uint8, (b, H_s, W_s, 3)); a model
    ending in global average pooling runs on them fully convolutionally and the
    softmax scores are averaged over the views. Every example counts once (mask)."""
    import tensorflow as tf
    if self.from_tfds:
      raise ValueError("config.eval_mode='multiscale' on streamed data needs "
                       "config.data.source='folder' (full images); TFDS is not supported")
    records, labels = self.records[split]
    local = batch_size // process_count
    plan = self.multiscale_plan(split, batch_size, scales, aspect_step)
    part = slice(process_index * local, (process_index + 1) * local)
    idx = np.concatenate([ids[part] for ids, _, _ in plan]).astype(np.int64)
    mask = np.concatenate([m[part] for _, m, _ in plan])
    hw = np.repeat(np.asarray([sizes for _, _, sizes in plan], np.int32), local, axis=0)

    def load(i, m, hw):
      data = self._read(tf.gather(records, i))
      image = tf.io.decode_image(data, channels=3, expand_animations=False)
      views = tuple(_resize(image, hw[k, 0], hw[k, 1]) for k in range(len(scales)))
      return views, tf.gather(labels, i), m

    ds = tf.data.Dataset.from_tensor_slices((idx, mask, hw))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(local).prefetch(2).with_options(data_options(self.threads))
    return _named_errors(ds.as_numpy_iterator(), records[idx], local)


class TFDSStreamingDataset(StreamingDataset):
  """A prepared TFDS dataset (ImageNet) read from its files: records are shuffled
  with a seeded buffer per epoch, skipped undecoded on resume, and every process
  reads only its own shard of the files (tfds.split_for_jax_process)."""

  def train_batches(self, opts, epoch, start_step, process_index=0):
    import tensorflow as tf
    import tensorflow_datasets as tfds
    builder, split = self.records["train"]
    local, process_count = opts.process_batch, opts.process_count
    split = tfds.even_splits(split, n=process_count, drop_remainder=True)[process_index]
    ds = builder.as_dataset(
        split=split, shuffle_files=True,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=opts.seed * 1000 + epoch,
                                    interleave_cycle_length=16,
                                    num_parallel_calls_for_interleave_files=16))
    ds = ds.shuffle(opts.shuffle_buffer, seed=opts.seed * 1000 + epoch,
                    reshuffle_each_iteration=False)
    ds = ds.enumerate().skip(start_step * local)
    size = self.image_size

    def load(pos, x):
      seed = tf.stack([tf.cast(opts.seed * 100_003 + epoch, tf.int64),
                       pos * process_count + process_index])
      return train_image(x["image"], opts, size, seed), tf.cast(x["label"], tf.int32)

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(local, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(data_options(self.threads)).as_numpy_iterator()

  def eval_batches(self, split, batch_size, process_index=0, process_count=1):
    import tensorflow as tf
    import tensorflow_datasets as tfds
    builder, name = self.records[split]
    local = batch_size // process_count
    shares = tfds.even_splits(name, n=process_count)
    n_max = -(-self.sizes[split] // process_count)
    num_batches = -(-n_max // local)   # the same on every process
    ds = builder.as_dataset(split=shares[process_index], shuffle_files=False,
                            decoders={"image": tfds.decode.SkipDecoding()})
    size = self.eval_crop or self.image_size
    fraction = self._eval_fraction(size)

    def load(x):
      return eval_image(x["image"], size, fraction), tf.cast(x["label"], tf.int32)

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(local)
    it = ds.prefetch(tf.data.AUTOTUNE).with_options(data_options(self.threads))
    it = it.as_numpy_iterator()
    for _ in range(num_batches):
      images, labels = next(it, (np.zeros((0, size, size, 3), np.uint8),
                                 np.zeros((0,), np.int32)))
      pad = local - len(labels)
      mask = np.concatenate([np.ones(len(labels), np.float32), np.zeros(pad, np.float32)])
      if pad:
        images = np.concatenate([images, np.zeros((pad, size, size, 3), np.uint8)])
        labels = np.concatenate([labels, np.zeros(pad, np.int32)])
      yield images, labels, mask


def _folder_records(folder, class_names):
  paths, labels = [], []
  for label, cls in enumerate(class_names):
    d = os.path.join(folder, cls)
    if os.path.isdir(d):
      names = sorted(n for n in os.listdir(d) if n.lower().endswith(IMAGE_EXTENSIONS))
      paths += [os.path.join(d, n) for n in names]
      labels += [label] * len(names)
  return np.asarray(paths), np.asarray(labels, np.int32)


def load(d, train_crop: str = "scale") -> StreamingDataset:
  """The streamed dataset of the data section `d` (config.data; source 'folder' or
  'tfds'); `train_crop` (config.augment.train_crop) sets the evaluation centre crop."""
  size = d.image_size or DEFAULT_IMAGE_SIZE
  crop_padding = CROP_PADDING if train_crop == "inception" else None
  records = {}
  if d.source == "folder":
    if not os.path.exists(d.root):
      raise FileNotFoundError(f"config.data.root={d.root} does not exist")
    root = extract_archive(d.root, d.cache_dir) if _is_archive(d.root) else d.root
    names = {"train": d.train_split, "validation": d.validation_split, "test": d.test_split}
    root = _find_root(root, names.values())
    class_names = split_classes(root, names)
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
    shape = info.features["image"].shape[:2] if "image" in info.features else (None,)
    if d.image_size is None and None not in shape:
      _say_if_upscaled(f"TFDS {d.name}", [shape])
    return TFDSStreamingDataset(d.name, info.features["label"].num_classes, size, sizes,
                                records, True,
                                class_names=tuple(info.features["label"].names),
                                crop_padding=crop_padding, eval_crop=d.get("eval_image_size"))
  else:
    raise ValueError(f"config.data.in_memory=False needs config.data.source 'folder' or "
                     f"'tfds', not {d.source!r}")
  if "validation" not in records and d.validation_size:
    paths, labels = records["train"]
    order = np.random.RandomState(0).permutation(len(labels))
    rest, held = order[:-d.validation_size], order[-d.validation_size:]
    records["train"], records["validation"] = ((paths[rest], labels[rest]),
                                               (paths[held], labels[held]))
  if d.image_size is None and len(records["train"][0]):
    paths = records["train"][0]
    _say_if_upscaled(d.root, [_image_shape(p) for p in paths[::max(1, len(paths) // 8)][:8]])
  sizes = {k: len(v[1]) for k, v in records.items()}
  return StreamingDataset(folder_name(d.root), num_classes, size, sizes, records, from_tfds,
                          class_names=class_names, crop_padding=crop_padding,
                          eval_crop=d.get("eval_image_size"))
