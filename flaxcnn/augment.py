"""Data augmentation that runs on the device, inside the jitted training step.

All functions take a PRNG key and a batch (N, H, W, C) and are pure, so a fixed key
gives the same result on any device layout.
"""
import jax
import jax.numpy as jnp


def normalize(images, mean, std, dtype=jnp.float32):
  """uint8 [0, 255] -> (x / 255 - mean) / std, per channel."""
  x = images.astype(jnp.float32) / 255.0
  x = (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
  return x.astype(dtype)


def random_crop(rng, images, padding: int):
  """Zero-pad by `padding` on each side and crop back at a random offset
  (He et al. 2015's CIFAR augmentation: pad 4, random 32x32 crop)."""
  if padding <= 0:
    return images
  n, h, w, _ = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(rng, (n, 2), 0, 2 * padding + 1)

  def crop(img, off):
    return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))
  return jax.vmap(crop)(padded, offsets)


def random_flip(rng, images):
  """Horizontal flip with probability 1/2, per image."""
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1, :], images)


def cutout(rng, images, size: int):
  """Cutout (DeVries & Taylor 2017): zero one size x size square per image.

  The centre is uniform over the image, so the square may extend past the border
  (it is clipped). Apply after normalization, so zero is the dataset mean.
  """
  if size <= 0:
    return images
  n, h, w, _ = images.shape
  ky, kx = jax.random.split(rng)
  cy = jax.random.randint(ky, (n, 1, 1), 0, h)
  cx = jax.random.randint(kx, (n, 1, 1), 0, w)
  ys = jnp.arange(h)[None, :, None]
  xs = jnp.arange(w)[None, None, :]
  y0, x0 = cy - size // 2, cx - size // 2
  inside = (ys >= y0) & (ys < y0 + size) & (xs >= x0) & (xs < x0 + size)
  return jnp.where(inside[..., None], jnp.zeros((), images.dtype), images)


def mixup(rng, images, one_hot_labels, alpha: float):
  """mixup (Zhang et al. 2018): convex combination of the batch with a permutation
  of itself, lambda ~ Beta(alpha, alpha), one lambda per batch."""
  if alpha <= 0:
    return images, one_hot_labels
  kl, kp = jax.random.split(rng)
  lam = jax.random.beta(kl, alpha, alpha)
  perm = jax.random.permutation(kp, images.shape[0])
  mixed = lam * images + (1 - lam) * images[perm]
  labels = lam * one_hot_labels + (1 - lam) * one_hot_labels[perm]
  return mixed.astype(images.dtype), labels


def train_augment(rng, images, config, mean, std, dtype):
  """The in-memory training augmentation: crop, flip, normalize, Cutout."""
  k_crop, k_flip, k_cut = jax.random.split(rng, 3)
  images = random_crop(k_crop, images, config.augment.crop_padding)
  if config.augment.flip:
    images = random_flip(k_flip, images)
  x = normalize(images, mean, std, jnp.float32)
  x = cutout(k_cut, x, config.augment.cutout)
  return x.astype(dtype)
