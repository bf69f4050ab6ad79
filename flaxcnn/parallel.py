"""Data parallelism: a 1-D device mesh, the batch sharded along it, state replicated."""
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process: pure data parallelism."""
  return Mesh(np.asarray(jax.devices()), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def global_array(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A global jax.Array from a host array that every process holds in full."""
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def padded_batches(split, batch_size: int):
  """(images, labels, mask) host batches of an in-memory split; the last batch is
  padded to the fixed batch size (one compilation) and the padding masked out.
  Labels may be class indices (N,) or per-pixel masks (N, H, W)."""
  n = len(split)
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    pad = batch_size - (stop - start)
    images, labels = split.images[start:stop], split.labels[start:stop]
    mask = np.ones(stop - start, np.float32)
    if pad:
      images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
      labels = np.concatenate([labels, np.zeros((pad,) + labels.shape[1:], labels.dtype)])
      mask = np.concatenate([mask, np.zeros(pad, np.float32)])
    yield images, labels, mask
