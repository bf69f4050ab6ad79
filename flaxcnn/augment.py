"""Data augmentation that runs on the device, inside the jitted training step.

Every function is pure and takes a batch (N, H, W, C); the random ones (crop, flip,
Cutout, mixup, the training augmentation and the policies) take a PRNG key first, so
a fixed key gives the same result on any device layout. The deterministic ones
(normalize, resize, the evaluation views) take none.
"""
import jax
import jax.numpy as jnp
import ml_collections

from flaxcnn import autoaugment, randaugment


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


def resize(images, size: int):
  """Square bilinear resize (antialiased when shrinking); float32 output."""
  n, h, w, c = images.shape
  if (h, w) == (size, size):
    return images.astype(jnp.float32)
  return jax.image.resize(images.astype(jnp.float32), (n, size, size, c), "bilinear")


def train_augment(rng, images, config, mean, std, dtype, size=None):
  """The in-memory training augmentation: crop, flip, RandAugment or AutoAugment,
  resize to the training size (progressive resizing), normalize, Cutout."""
  k_crop, k_flip, k_ra, k_cut = jax.random.split(rng, 4)
  images = random_crop(k_crop, images, config.augment.crop_padding)
  if config.augment.flip:
    images = random_flip(k_flip, images)
  images = policy(k_ra, images, config)
  if size:
    images = resize(images, size)
  x = normalize(images, mean, std, jnp.float32)
  x = cutout(k_cut, x, config.augment.cutout)
  return x.astype(dtype)


def policy(rng, images, config):
  """The configured augmentation policy on a uint8 batch: RandAugment
  (augment.randaugment_layers, torchvision's or the TF references' ops by
  augment.randaugment_ops) or AutoAugment (augment.autoaugment), or none."""
  layers, magnitude = config.augment.randaugment_layers, config.augment.randaugment_magnitude
  if layers and config.augment.randaugment_ops == "tf":
    return autoaugment.randaugment_tf(rng, images, layers, magnitude)
  if layers:
    return randaugment.randaugment(rng, images, layers, magnitude)
  if config.augment.autoaugment:
    return autoaugment.autoaugment(rng, images, config.augment.autoaugment)
  return images


def ten_crop(images, crop: int):
  """The four corner crops and the centre crop, and their horizontal flips
  (Krizhevsky et al. 2012; He et al. 2015 test with it): 10 views (V, N, crop, crop, C)."""
  _, h, w, _ = images.shape
  offsets = [(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop),
             ((h - crop) // 2, (w - crop) // 2)]
  crops = [images[:, y:y + crop, x:x + crop] for y, x in offsets]
  return jnp.stack(crops + [c[:, :, ::-1] for c in crops])


def eval_views(images, mode: str, size: int, pad: int = 0, scales=()):
  """The views whose scores are averaged at evaluation.

  center: the image at `size`; ten_crop: 10 crops of `size` from the image zero-padded
  by `pad` (in-memory data) or from a larger centre crop (streaming); multiscale:
  the whole image resized to each of `scales` and flipped (fully convolutional, He
  et al. 2015), scores averaged over scales.
  """
  if mode == "center":
    return [resize(images, size)]
  if mode == "ten_crop":
    if pad:
      images = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    if images.shape[1] < size or images.shape[2] < size:
      images = resize(images, size)
    return list(ten_crop(images.astype(jnp.float32), size))
  if mode == "multiscale":
    views = []
    for s in scales:
      x = resize(images, s)
      views += [x, x[:, :, ::-1]]
    return views
  raise ValueError(f"config.eval_mode={mode!r} is unknown")


def full_image_views(views, flip: bool = True):
  """Multi-scale testing the paper's way (He et al. 2015, Sec. 3.4 and Table 4): the
  whole images at each scale (one uint8 batch per scale, shorter side s, from
  `StreamingDataset.multiscale_batches`) and, with `flip`, their mirrors, as float32
  views for a fully convolutional model; the eval step averages their softmax scores."""
  out = []
  for v in views:
    x = v.astype(jnp.float32)
    out += [x, x[:, :, ::-1]] if flip else [x]
  return out


def config_section() -> ml_collections.ConfigDict:
  """config.augment: the training augmentation (this module and the data layer read it)."""
  s = ml_collections.ConfigDict()
  s.crop_padding = 4       # in-memory: pad-and-random-crop (0 = off)
  s.flip = True            # random horizontal flip
  s.scale_range = (256, 480)   # streaming: shorter side random in this range, then random crop
  s.train_crop = "scale"   # streaming: scale (He et al. 2015) | inception (random-resized crop, EfficientNet reference)
  s.cutout = 0             # Cutout square side in pixels (0 = off)
  s.mixup_alpha = 0.0      # mixup Beta(alpha, alpha) (0 = off)
  s.randaugment_layers = 0     # RandAugment N (0 = off), on the device
  s.randaugment_magnitude = 10.0   # RandAugment M in [0, 30] (its scale: below)
  # RandAugment's ops: torchvision (14, M of 30) | tf (the EfficientNet(V2) references'
  # 16; M a TF level: 10 = full strength, higher levels extrapolate)
  s.randaugment_ops = "torchvision"
  s.autoaugment = ""       # AutoAugment policy ('' = off, 'v0' = ImageNet), on the device
  return s
