"""Images/s per core of the streaming input pipeline, beside a plain tf.data reference.

Generates ImageNet-sized JPEGs (500x375 and 375x500, quality 90) in a temporary
folder and times, on one tf.data thread (so the figure is per core):
- reference: decode the whole JPEG, resize the shorter side to 256, random 224 crop,
  flip (the plain decode-resize-crop pipeline);
- train scale-aug: flaxcnn's He et al. 2015 scale augmentation (scale 256-480), one
  fused decode of the window only;
- train inception: flaxcnn's random-resized crop (sample_distorted_bounding_box +
  fused decode_and_crop_jpeg), as the EfficientNet reference;
- eval centre crop: flaxcnn's evaluation view (the 224/256 centre window);
- inception unfused: the same crop after decoding the whole JPEG;
- inception window decode only: the fused decode of the same windows with no
  resize and no flip, the bound on any random-resized crop with this decoder
  (libjpeg-turbo must entropy-decode every row down to the window's last);
- scale-aug unfused: the former path (decode all, resize the shorter side to 256-480,
  crop), for comparison.
Each pipeline runs `--repeats` times, interleaved, and the best pass counts (the
machine may be shared). Usage: python benchmarks/input_pipeline.py [--images 1500]
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_jpegs(folder, count, seed=0):
  """`count` photo-like JPEGs (smooth random colour fields + texture noise), q90."""
  from PIL import Image
  rng = np.random.RandomState(seed)
  texture = rng.normal(0, 12, (8, 500, 500, 3)).astype(np.float32)
  paths = []
  for i in range(count):
    h, w = (375, 500) if i % 4 else (500, 375)
    low = rng.randint(0, 256, (h // 25 + 1, w // 25 + 1, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), np.float32)
    img += texture[i % 8, :h, :w]
    path = os.path.join(folder, f"{i:05d}.jpg")
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
    paths.append(path)
  return np.asarray(paths)


def reference_batches(paths, size, batch, threads):
  """Plain tf.data: decode the whole image, resize the shorter side to 256, random
  crop, flip."""
  import tensorflow as tf
  from flaxcnn.data.streaming import data_options

  def load(i, path):
    image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new = tf.cast(tf.round(shape * 256.0 / tf.reduce_min(shape)), tf.int32)
    image = tf.cast(tf.image.resize(image, new), tf.uint8)
    seed = tf.stack([tf.constant(0, tf.int64), i])
    image = tf.image.stateless_random_crop(image, [size, size, 3], seed)
    return tf.image.stateless_random_flip_left_right(image, seed), i

  ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), paths))
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch).prefetch(tf.data.AUTOTUNE).with_options(data_options(threads))
  return ds.as_numpy_iterator()


def unfused_batches(paths, size, batch, threads, scale_range=(256, 480)):
  """The former scale augmentation: decode all, resize the shorter side, crop."""
  import tensorflow as tf
  from flaxcnn.data.streaming import data_options

  def load(i, path):
    seed = tf.stack([tf.constant(0, tf.int64), i])
    seeds = tf.random.experimental.stateless_split(seed, 3)
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    scale = tf.random.stateless_uniform([], seeds[0], scale_range[0], scale_range[1] + 1,
                                        dtype=tf.int32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new = tf.cast(tf.round(shape * tf.cast(scale, tf.float32) / tf.reduce_min(shape)), tf.int32)
    image = tf.image.resize(image, new, antialias=True)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    image = tf.image.stateless_random_crop(image, [size, size, 3], seeds[1])
    return tf.image.stateless_random_flip_left_right(image, seeds[2]), i

  ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), paths))
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch).prefetch(tf.data.AUTOTUNE).with_options(data_options(threads))
  return ds.as_numpy_iterator()


def unfused_inception_batches(paths, size, batch, threads):
  """The same random-resized crop without fusion: decode all, crop the window, resize."""
  import tensorflow as tf
  from flaxcnn.data import streaming

  def load(i, path):
    seed = tf.stack([tf.constant(0, tf.int64), i])
    image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
    y, x, h, w = tf.unstack(streaming.inception_window(tf.shape(image), size, seed))
    image = streaming._resize(image[y:y + h, x:x + w], size, size, "bicubic")
    return tf.image.stateless_random_flip_left_right(image, seed), i

  ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), paths))
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch).prefetch(tf.data.AUTOTUNE).with_options(streaming.data_options(threads))
  return ds.as_numpy_iterator()


def window_only_batches(paths, size, batch, threads):
  """The fused decode of the random-resized crop's windows alone (no resize, no
  flip; cut or padded to size x size so windows batch): the bound on the crop's rate."""
  import tensorflow as tf
  from flaxcnn.data import streaming

  def load(i, path):
    seed = tf.random.experimental.stateless_split(tf.stack([tf.constant(0, tf.int64), i]), 3)
    data = tf.io.read_file(path)
    window = streaming.inception_window(tf.image.extract_jpeg_shape(data), size, seed[0])
    image = tf.io.decode_and_crop_jpeg(data, window, channels=3)
    return image[:size, :size], i

  ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), paths))
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.padded_batch(batch, ([size, size, 3], []))
  ds = ds.prefetch(tf.data.AUTOTUNE).with_options(streaming.data_options(threads))
  return ds.as_numpy_iterator()


def timed(make_iterator):
  """(images per CPU-second of this process, images per wall second) of one pass,
  from the end of the first batch (graph built) to the last. CPU time makes the
  per-core figure robust to other jobs on a shared machine."""
  it = make_iterator()
  first = next(it)[0]
  count, c0, t0 = 0, time.process_time(), time.perf_counter()
  for batch in it:
    count += len(batch[0])
  cpu, wall = time.process_time() - c0, time.perf_counter() - t0
  assert first.shape[1:] == (224, 224, 3) and first.dtype == np.uint8
  return count / cpu, count / wall


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--images", type=int, default=1500)
  p.add_argument("--threads", type=int, default=1, help="tf.data threads (1: per core)")
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--batch", type=int, default=50)
  args = p.parse_args()
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  from flaxcnn.config import default_config
  from flaxcnn.data.streaming import StreamingDataset, options

  with tempfile.TemporaryDirectory() as folder:
    t = time.time()
    paths = make_jpegs(folder, args.images)
    mb = sum(os.path.getsize(x) for x in paths) / len(paths) / 1e3
    print(f"{len(paths)} JPEGs 500x375/375x500 q90 ({mb:.0f} kB each) in {time.time() - t:.0f} s; "
          f"{args.threads} tf.data thread(s), batch {args.batch}, best of {args.repeats}")
    labels = np.zeros(len(paths), np.int32)
    ds = StreamingDataset("bench", 1, 224, {"train": len(paths), "test": len(paths)},
                          {"train": (paths, labels), "test": (paths, labels)}, False,
                          threads=args.threads)

    def train(crop):
      c = default_config()
      c.augment.scale_range = (256, 480)
      c.augment.train_crop = crop
      opts = options(c.data, c.augment, args.batch, args.batch, c.seed)
      return lambda: ds.train_batches(opts, epoch=0, start_step=0)

    rows = {
        "reference (decode all, resize 256, crop)":
            lambda: reference_batches(paths, 224, args.batch, args.threads),
        "train scale-aug 256-480 (fused)": train("scale"),
        "train inception crop (fused)": train("inception"),
        "inception crop unfused (decode all, crop)":
            lambda: unfused_inception_batches(paths, 224, args.batch, args.threads),
        "inception window decode only (the bound)":
            lambda: window_only_batches(paths, 224, args.batch, args.threads),
        "eval centre crop 224/256 (fused)": lambda: ds.eval_batches("test", args.batch),
        "scale-aug 256-480 unfused (before)":
            lambda: unfused_batches(paths, 224, args.batch, args.threads),
    }
    best = {k: (0.0, 0.0) for k in rows}
    for _ in range(args.repeats):
      for name, make in rows.items():
        best[name] = max(best[name], timed(make))
    ref = best["reference (decode all, resize 256, crop)"][0]
    print("| pipeline | images per CPU-second (per core) | vs reference | images/s wall |\n"
          "|---|---|---|---|")
    for name, (rate, wall) in best.items():
      print(f"| {name} | {rate:.0f} | {rate / ref:.2f}x | {wall:.0f} |")


if __name__ == "__main__":
  main()
