"""Feeds: what the training loop hands its jitted step each step, and the global
evaluation batches.

- `InMemoryFeed`: the whole training split on the devices (replicated uint8);
  the step gathers its batch from the epoch's permutation, which depends only on
  (seed, epoch), so a resumed run sees the same batches.
- `StreamingFeed`: tf.data batches, each process decoding its share of every
  global batch (flaxcnn/data/streaming.py).

A feed needs only the run's sharding, batch and epoch sizes, seed and streaming
options (`run`).
"""
import dataclasses

import jax
import jax.numpy as jnp

from flaxcnn.parallel import global_array, padded_batches


def is_streaming(dataset) -> bool:
  return not hasattr(dataset.splits["train"], "images")


class InMemoryFeed:
  """Training inputs (images, labels, perm): the split on the devices, put there at
  the first step (or shared with the feed of the stage before), and this epoch's
  permutation of it."""
  in_memory = True

  def __init__(self, run, dataset, arrays=None):
    self.run, self.dataset = run, dataset
    self.n = dataset.sizes["train"]
    self.arrays = arrays
    self.perm, self.perm_epoch = None, None
    self._permute = jax.jit(lambda k: jax.random.permutation(k, self.n).astype(jnp.int32),
                            out_shardings=run.replicated)   # compiled once per run

  def train_inputs(self, step: int):
    if self.arrays is None:
      train = self.dataset.splits["train"]
      self.arrays = (global_array(train.images, self.run.replicated),
                     global_array(train.labels, self.run.replicated))
    epoch = step // self.run.steps_per_epoch
    if self.perm_epoch != epoch:
      key = jax.random.fold_in(jax.random.PRNGKey(self.run.config.seed + 2), epoch)
      self.perm = self._permute(key)
      self.perm_epoch = epoch
    return (*self.arrays, self.perm)

  def eval_batches(self, split: str, batch_size: int):
    """Batches of `batch_size`, or of the whole split (padded to a multiple of the
    devices) when it is smaller: no memory and time spent on padding."""
    data = self.dataset.splits[split]
    devices = jax.device_count()
    batch_size = min(batch_size, -(-len(data) // devices) * devices)
    for batch in padded_batches(data, batch_size):
      yield tuple(global_array(x, self.run.batch_sharding) for x in batch)


class StreamingFeed:
  """Training inputs (images, labels): one global batch from tf.data, sharded."""
  in_memory = False

  def __init__(self, run, dataset, arrays=None):
    self.run, self.dataset = run, dataset
    self.it, self.it_epoch = None, None
    self.arrays = None

  def _global(self, x):
    return jax.make_array_from_process_local_data(self.run.batch_sharding, x)

  def train_inputs(self, step: int):
    spe = self.run.steps_per_epoch
    epoch = step // spe
    if self.it_epoch != epoch:
      self.it = self.dataset.train_batches(self.run.stream, epoch, step % spe,
                                           jax.process_index())
      self.it_epoch = epoch
    images, labels = next(self.it)
    return self._global(images), self._global(labels)

  def eval_batches(self, split: str, batch_size: int):
    dataset, opts = self.dataset, self.run.stream
    if opts.eval_mode == "multiscale":   # He et al. 2015: whole images, shorter side s
      for views, labels, mask in dataset.multiscale_batches(
          split, batch_size, opts.eval_scales, jax.process_index(), jax.process_count()):
        yield (tuple(self._global(v) for v in views), self._global(labels), self._global(mask))
      return
    if opts.eval_mode != "center":    # ten-crop: the views are cut on the device
      dataset = dataclasses.replace(dataset, eval_crop=round(dataset.image_size / 0.875))
    for batch in dataset.eval_batches(split, batch_size, jax.process_index(),
                                      jax.process_count()):
      yield tuple(self._global(x) for x in batch)


def make_feed(run, dataset, arrays=None):
  return (StreamingFeed if is_streaming(dataset) else InMemoryFeed)(run, dataset, arrays)


def eval_image_size(data, dataset) -> int:
  """Evaluation resolution: the data section's (config.data) eval_image_size, else its
  image_size, else the dataset's own."""
  return data.get("eval_image_size") or data.image_size or dataset.image_shape[0]
