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
- "synthetic": random images for benchmarks (`synthetic_size` to train on and
               `validation_size` other ones to validate on).
A new in-memory source is a function `load(config)` decorated `@data.source("name")`.
A validation split is held out from train (the last `validation_size` examples
after a fixed shuffle) when the dataset has none.
"""
import numbers

import ml_collections
from ml_collections.config_dict import placeholder

from flaxcnn import registration
from flaxcnn.data import sources, streaming
from flaxcnn.data.core import (Dataset, Split, _stats, finalize, fingerprint,  # noqa: F401
                               hold_out, select)

MAX_IMAGE_SIZE = 4096            # pixels per side; beyond it a size is a typo
MAX_SYNTHETIC_BYTES = 16 << 30   # synthetic data is allocated whole


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
    n, v = d.get("synthetic_size"), d.get("validation_size", 0)
    if not (_is_int(n) and n >= 1):
      raise ValueError(f"config.data.synthetic_size={n!r} must be a positive integer")
    if not (_is_int(v) and v >= 0):
      raise ValueError(f"config.data.validation_size={v!r} must be an integer >= 0")
    if size is not None and (n + v) * size * size * 3 > MAX_SYNTHETIC_BYTES:
      raise ValueError(f"config.data.synthetic_size={n} + validation_size={v} images of "
                       f"{size}x{size} need {(n + v) * size * size * 3 / 2**30:.0f} GiB; "
                       "use fewer or smaller images")
  scale_range = tuple(a.get("scale_range") or ())
  if len(scale_range) != 2 or not all(_is_int(s) and 1 <= s <= MAX_IMAGE_SIZE
                                      for s in scale_range) or scale_range[0] > scale_range[1]:
    raise ValueError(f"config.augment.scale_range={a.get('scale_range')!r} must be two "
                     f"integers (lo, hi) with 1 <= lo <= hi <= {MAX_IMAGE_SIZE}")
  if a.get("train_crop", "scale") not in streaming.TRAIN_CROPS:
    raise ValueError(f"config.augment.train_crop={a.get('train_crop')!r} must be one of "
                     f"{', '.join(streaming.TRAIN_CROPS)}")
  classes, per_class = tuple(d.get("classes") or ()), d.get("train_per_class", 0)
  if not all(_is_int(c) and c >= 0 for c in classes):
    raise ValueError(f"config.data.classes={classes!r} must be class indices (integers "
                     "from 0), e.g. (5, 6, 7, 8, 9)")
  if not (_is_int(per_class) and per_class >= 0):
    raise ValueError(f"config.data.train_per_class={per_class!r} must be an integer >= 0 "
                     "(0 = every training image)")
  if (classes or per_class) and not d.get("in_memory", True):
    raise ValueError("config.data.classes / train_per_class select in-memory data; with "
                     "config.data.in_memory=False make a folder of the classes instead")
  scales = config.get("eval_scales") or ()
  if not all(_is_int(s) and 1 <= s <= MAX_IMAGE_SIZE for s in scales):
    raise ValueError(f"config.eval_scales={tuple(scales)!r} must be integers from 1 to "
                     f"{MAX_IMAGE_SIZE} (shorter sides)")


def load(config):
  """The dataset of `config.data`: a `Dataset` of arrays (only `data.classes` and
  `data.train_per_class` training examples of each, where set), or a streamed one when
  `config.data.in_memory` is False."""
  check_config(config)
  d = config.data
  if not d.in_memory and d.source in ("folder", "tfds"):
    return streaming.load(d, config.augment.get("train_crop", "scale"))
  return select(_load_source(config), d.classes, d.train_per_class)


SOURCES = {}   # config.data.source -> load(config): a Dataset of arrays


def source(name: str):
  """Decorator: registers `load(config)` (an in-memory Dataset) as
  config.data.source=`name`."""
  return registration.add_to(SOURCES, name, "a data source")


def _load_source(config):
  if config.data.source not in SOURCES:
    raise ValueError(f"config.data.source={config.data.source!r} is unknown")
  return SOURCES[config.data.source](config)


def _splits(d) -> dict:
  """The split names of config.data `d`, as the named sources take them."""
  return dict(train_split=d.train_split, validation_split=d.validation_split,
              test_split=d.test_split)


@source("tfds")
def _tfds(config):
  d = config.data
  return sources.tfds_in_memory(d.name, d.data_dir, d.validation_size, **_splits(d))


@source("folder")
def _folder(config):
  d = config.data
  return sources.image_folder(d.root, d.cache_dir, d.validation_size, **_splits(d))


@source("digits")
def _digits(config):
  return sources.digits(config.data.validation_size)


@source("synthetic")
def _synthetic(config):
  d = config.data
  return sources.synthetic(d.synthetic_size, d.image_size, d.num_classes, config.seed,
                           d.validation_size)


def config_section() -> ml_collections.ConfigDict:
  """config.data: where the images come from and how they are split (load reads it)."""
  s = ml_collections.ConfigDict()
  s.source = "tfds"           # tfds | folder | digits | synthetic
  s.name = "cifar10"          # TFDS name (tfds); a folder is named after itself
  s.label = ""                # how the console, data.json and results name the data,
                              # e.g. "CIFAR-10 (JPEG q75)"; "" = the dataset's name
  s.data_dir = placeholder(str)   # TFDS data_dir (default ~/tensorflow_datasets or $TFDS_DATA_DIR)
  s.root = placeholder(str)       # folder: ROOT/<split>/<class>/*.jpg|png, or a .tar[.xz|.gz] of it
  s.cache_dir = placeholder(str)  # where decoded folders/archives are cached (default ~/.cache/flaxcnn)
  s.train_split = "train"
  s.validation_split = "validation"  # held out from train when the dataset has none
  s.test_split = "test"
  s.validation_size = 5000    # examples held out from train when there is no validation split
  s.in_memory = True          # False: stream through tf.data (ImageNet-sized data)
  s.image_size = placeholder(int)   # resize to this (streaming: default 224 / synthetic);
                                    # in memory the native size
  # streaming, centre evaluation: a crop of this side from the shorter side resized to
  # max(it, image_size / 0.875); 320 after training at 224 is He et al. 2016's 320 test
  s.eval_image_size = placeholder(int)
  s.num_classes = placeholder(int)  # synthetic data only
  # In-memory data: only these classes (indices, relabelled 0..k-1 in this order) in
  # every split, and a fixed subset of this many training images per class (0 = all):
  # small-data experiments, transfer between class subsets
  s.classes = ()
  s.train_per_class = 0
  s.synthetic_size = 1024     # synthetic: training examples (+ validation_size others)
  s.shuffle_buffer = 10_000   # streaming only
  # Resuming on data that differ from those the run started with (a folder that
  # gained or lost images) is refused; True goes on with a warning.
  s.allow_changed = False
  return s
