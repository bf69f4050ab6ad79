"""Segmentation datasets read from TFDS: images and per-pixel class masks in memory.

The generated craters live in flaxcnn/data/shapes.py; the task that trains on
both is flaxcnn/tasks/segmentation.py.
"""
from typing import Optional

import numpy as np

from flaxcnn.data import sources
from flaxcnn.data.core import Split, finalize

# TFDS segmentation datasets: mask feature, value of class 0, class names.
TFDS_SEGMENTATION = {
    "oxford_iiit_pet": ("segmentation_mask", 1, ("pet", "background", "border")),
}


def tfds_segmentation(name: str, data_dir: Optional[str], image_size: int,
                      validation_size: int = 0, train_split="train",
                      validation_split="validation", test_split="test"):
  """A prepared TFDS segmentation dataset, resized to image_size x image_size and
  read whole into uint8 arrays (images bilinear, masks nearest neighbour)."""
  if name not in TFDS_SEGMENTATION:
    raise ValueError(f"config.data.name={name!r}: TFDS segmentation datasets are "
                     f"{', '.join(TFDS_SEGMENTATION)}")
  builder = sources.tfds_builder(name, data_dir)   # fails fast when not prepared
  import tensorflow as tf   # only on this path: TFDS reads through tf.data
  mask_key, offset, class_names = TFDS_SEGMENTATION[name]

  def prepare(example):
    image = tf.image.resize(example["image"], (image_size, image_size), "bilinear")
    mask = tf.image.resize(example[mask_key], (image_size, image_size), "nearest")
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return image, tf.cast(mask[..., 0] - offset, tf.uint8)

  available = set(builder.info.splits.keys())
  splits = {}
  for key, split in (("train", train_split), ("validation", validation_split),
                     ("test", test_split)):
    if split in available:
      ds = builder.as_dataset(split=split).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
      images, masks = [], []
      for x, y in ds.batch(256).as_numpy_iterator():
        images.append(x)
        masks.append(y)
      splits[key] = Split(np.concatenate(images), np.concatenate(masks))
  return finalize(name, len(class_names), splits, validation_size, class_names)
