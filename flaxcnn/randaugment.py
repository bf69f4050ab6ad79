"""RandAugment (Cubuk et al. 2020) in pure JAX, for uint8 batches on the device.

    images = randaugment(rng, images_uint8, num_layers=2, magnitude=9.0)

Per image and independently, `num_layers` ops are drawn uniformly (with
replacement) from the paper's 14 (`OPS`, Identity included) and applied in
sequence at the shared magnitude M in [0, 30] (clipped). Each op is always applied
(no per-op probability: Identity is in the list, as in the paper and torchvision).

Reference followed: torchvision.transforms.RandAugment for the op list, the
[0, 30] magnitude scale (value = max * M / 30) and the random sign; the ops
themselves reproduce PIL (ImageOps / ImageEnhance / Image.transform, which the TF
EfficientNet autoaugment.py also emulates), with nearest sampling by default:

  op            parameter at magnitude M                    M = 0
  Identity      -                                           identity
  AutoContrast  - (per channel min/max -> 0/255)            changes
  Equalize      - (per channel, PIL's histogram formula)    changes
  Rotate        +-M degrees (30 at M=30), about the centre  identity
  Solarize      invert pixels >= 256 - 256 M / 30            identity
  Color         factor 1 +- 0.9 M / 30  (0.1 .. 1.9)        identity
  Posterize     keep 8 - round(M / 7.5) bits (8 .. 4)       identity
  Contrast      factor 1 +- 0.9 M / 30                      identity
  Brightness    factor 1 +- 0.9 M / 30                      identity
  Sharpness     factor 1 +- 0.9 M / 30                      identity
  ShearX/Y      +-0.3 M / 30 (PIL affine, not centred)      identity
  TranslateX/Y  +-translate_frac * M / 30 * width/height    identity

Contrast and Sharpness are PIL's (a blend toward the rounded mean grey; the SMOOTH
filter rounded), as torchvision applies them; the TF references differ in both
(flaxcnn.autoaugment follows them there).

Departures from torchvision, both deliberate: Solarize's threshold is
256 - 256 M / 30 (timm's SolarizeIncreasing; torchvision's 255 - 255 M / 30
inverts pure white at M=0), and the translate range defaults to 100/331 of the
image side (the TF reference's translate_const=100 at 331 px; pass
translate_frac=150/331 for torchvision's range). Translation is not rounded to
whole pixels.

Grayscale (C = 1) works: the colour ops use the channel itself as the grey image,
so Color becomes the identity. Only C in {1, 3} is accepted.

`magnitude` may be a Python float, a traced scalar (so progressive training can
change it without recompiling) or an (N,) array (one magnitude per image).
`num_layers` must be a Python int (it sets the number of scan steps).
Under vmap, lax.switch evaluates every branch and selects, so the cost per layer
is that of all 14 ops; fine for the sizes this is meant for.
"""
import math
from typing import Sequence, Union

import jax
import jax.numpy as jnp

OPS = ("Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color",
       "Posterize", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
       "TranslateX", "TranslateY")
MAX_MAGNITUDE = 30.0
# The TF references' RandAugment (EfficientNet, EfficientNetV2: 16 ops, levels of 10,
# extrapolated above) is flaxcnn.autoaugment.randaugment_tf (augment.randaugment_ops="tf").
TRANSLATE_FRAC = 100.0 / 331.0

_F32 = jnp.float32


# ----------------------------------------------------------------------------
# Building blocks, one (H, W, C) uint8 image at a time.
# ----------------------------------------------------------------------------

def affine_transform(image, matrix, fill=128, interpolation: str = "nearest"):
  """PIL's Image.transform(size, AFFINE, matrix) on one (H, W, C) image.

  `matrix` = (a, b, c, d, e, f) maps each output pixel centre (x + .5, y + .5) to
  the input point (a x' + b y' + c, d x' + e y' + f) in continuous pixel
  coordinates (pixel i spans [i, i+1)); outputs whose input point falls outside
  the image get `fill` (scalar or per channel). Nearest takes the pixel containing
  the point (as PIL's NEAREST); bilinear interpolates between the four nearest
  pixel centres, clamped at the border (as PIL's BILINEAR).
  """
  h, w, c = image.shape
  a, b, cc, d, e, f = [jnp.asarray(v, _F32) for v in matrix]
  ys = jnp.arange(h, dtype=_F32)[:, None] + 0.5
  xs = jnp.arange(w, dtype=_F32)[None, :] + 0.5
  u = a * xs + b * ys + cc          # (H, W) input x
  v = d * xs + e * ys + f           # (H, W) input y
  valid = (u >= 0) & (u < w) & (v >= 0) & (v < h)
  if interpolation == "nearest":
    ix = jnp.clip(jnp.floor(u), 0, w - 1).astype(jnp.int32)
    iy = jnp.clip(jnp.floor(v), 0, h - 1).astype(jnp.int32)
    out = image[iy, ix]
  elif interpolation == "bilinear":
    u, v = u - 0.5, v - 0.5
    x0, y0 = jnp.floor(u), jnp.floor(v)
    dx, dy = (u - x0)[..., None], (v - y0)[..., None]
    x0i = jnp.clip(x0, 0, w - 1).astype(jnp.int32)
    x1i = jnp.clip(x0 + 1, 0, w - 1).astype(jnp.int32)
    y0i = jnp.clip(y0, 0, h - 1).astype(jnp.int32)
    y1i = jnp.clip(y0 + 1, 0, h - 1).astype(jnp.int32)
    img = image.astype(_F32)
    top = img[y0i, x0i] * (1 - dx) + img[y0i, x1i] * dx
    bot = img[y1i, x0i] * (1 - dx) + img[y1i, x1i] * dx
    out = jnp.clip(jnp.floor(top * (1 - dy) + bot * dy), 0, 255).astype(jnp.uint8)
  else:
    raise ValueError(f"interpolation={interpolation!r} must be 'nearest' or 'bilinear'")
  fill = jnp.broadcast_to(jnp.asarray(fill).astype(image.dtype), (c,))
  return jnp.where(valid[..., None], out, fill)


def rotate_matrix(degrees, height, width):
  """PIL Image.rotate(degrees) (counter-clockwise, about the centre) as an
  affine_transform matrix."""
  t = -jnp.asarray(degrees, _F32) * (math.pi / 180.0)
  a, b, d, e = jnp.cos(t), jnp.sin(t), -jnp.sin(t), jnp.cos(t)
  cx, cy = width / 2.0, height / 2.0
  return (a, b, cx - a * cx - b * cy, d, e, cy - d * cx - e * cy)


def _gray(image):
  """PIL's convert('L') as int32 (H, W, 1): ITU-R 601-2 luma, integer rounding.
  A one-channel image is its own grey."""
  if image.shape[-1] == 1:
    return image.astype(jnp.int32)
  x = image.astype(jnp.int32)
  return (x[..., 0:1] * 19595 + x[..., 1:2] * 38470 + x[..., 2:3] * 7471 + 0x8000) >> 16


def blend(degenerate, image, factor):
  """PIL Image.blend(degenerate, image, factor): degenerate + factor * (image -
  degenerate) in float32, truncated and clipped to uint8 (ImageEnhance's core)."""
  deg = jnp.asarray(degenerate).astype(_F32)
  out = deg + jnp.asarray(factor, _F32) * (image.astype(_F32) - deg)
  return jnp.clip(jnp.floor(out), 0, 255).astype(jnp.uint8)


def autocontrast(image):
  """PIL ImageOps.autocontrast (cutoff 0), each channel mapped so min->0, max->255."""
  x = image.astype(jnp.int32)
  lo = jnp.min(x, axis=(0, 1))
  hi = jnp.max(x, axis=(0, 1))
  out = (255 * (x - lo)) // jnp.maximum(hi - lo, 1)    # exact; PIL (double) may be 1 lower
  return jnp.where(hi > lo, out, x).astype(jnp.uint8)


def _equalize_channel(ch):
  """PIL ImageOps.equalize on one (H, W) uint8 channel."""
  x = ch.astype(jnp.int32)
  hist = jnp.bincount(x.ravel(), length=256)
  last = hist[jnp.max(x)]                       # count of the last non-empty bin
  step = (x.size - last) // 255
  safe = jnp.maximum(step, 1)
  cum = jnp.cumsum(hist) - hist                 # exclusive cumulative histogram
  lut = jnp.clip((cum + step // 2) // safe, 0, 255)
  return jnp.where(step > 0, lut[x], x).astype(jnp.uint8)


def equalize(image):
  """PIL ImageOps.equalize, per channel."""
  return jnp.moveaxis(jax.vmap(_equalize_channel, in_axes=-1)(image), 0, -1)


def solarize(image, threshold):
  """PIL ImageOps.solarize: pixels >= threshold become 255 - pixel."""
  return jnp.where(image.astype(_F32) < threshold, image, 255 - image)


def posterize(image, bits):
  """PIL ImageOps.posterize: keep the `bits` (1..8) most significant bits."""
  shift = (8 - jnp.asarray(bits, jnp.int32)).astype(jnp.uint8)
  return jnp.left_shift(jnp.right_shift(image, shift), shift)


def color(image, factor):
  """PIL ImageEnhance.Color: blend with the grey version."""
  return blend(_gray(image), image, factor)


def contrast(image, factor):
  """PIL ImageEnhance.Contrast: blend with the (rounded) mean grey level."""
  mean = jnp.floor(jnp.mean(_gray(image).astype(_F32)) + 0.5)
  return blend(mean, image, factor)


def brightness(image, factor):
  """PIL ImageEnhance.Brightness: blend with black."""
  return blend(jnp.zeros((), _F32), image, factor)


def smooth(image, rounded: bool = True):
  """PIL ImageFilter.SMOOTH (3x3 [[1,1,1],[1,5,1],[1,1,1]] / 13, rounded; truncated
  with `rounded=False`, as the TF references cast it); the one-pixel border keeps
  the original values, as in PIL."""
  h, w, _ = image.shape
  x = image.astype(_F32)
  p = jnp.pad(x, ((1, 1), (1, 1), (0, 0)))
  s = sum(p[i:i + h, j:j + w] for i in range(3) for j in range(3)) + 4 * x
  s = jnp.clip(jnp.floor(s / 13.0 + (0.5 if rounded else 0.0)), 0, 255)
  ys = jnp.arange(h)[:, None, None]
  xs = jnp.arange(w)[None, :, None]
  inner = (ys > 0) & (ys < h - 1) & (xs > 0) & (xs < w - 1)
  return jnp.where(inner, s, x)


def sharpness(image, factor):
  """PIL ImageEnhance.Sharpness: blend with the SMOOTH-filtered image."""
  return blend(smooth(image), image, factor)


# ----------------------------------------------------------------------------
# Magnitude -> op parameter, and one op by index.
# ----------------------------------------------------------------------------

def _level(magnitude):
  return jnp.clip(jnp.asarray(magnitude, _F32), 0.0, MAX_MAGNITUDE) / MAX_MAGNITUDE


def enhance_factor(magnitude, sign):
  return 1.0 + jnp.asarray(sign, _F32) * 0.9 * _level(magnitude)


def solarize_threshold(magnitude):
  return 256.0 - 256.0 * _level(magnitude)


def posterize_bits(magnitude):
  return 8 - jnp.round(_level(magnitude) * 4.0).astype(jnp.int32)


def apply_op(image, op, magnitude, sign, fill=128, *,
             translate_frac: float = TRANSLATE_FRAC, interpolation: str = "nearest"):
  """Apply OPS[op] at `magnitude` (0..30) to one (H, W, C) uint8 image. `sign` (+-1)
  is the direction of the signed ops (Rotate, Shear*, Translate*, the enhance ops).
  `op` may be traced (lax.switch)."""
  h, w, _ = image.shape
  lvl = _level(magnitude)
  sgn = jnp.asarray(sign, _F32)

  def warp(m):
    return affine_transform(image, m, fill, interpolation)

  branches = [
      lambda: image,
      lambda: autocontrast(image),
      lambda: equalize(image),
      lambda: warp(rotate_matrix(sgn * 30.0 * lvl, h, w)),
      lambda: solarize(image, solarize_threshold(magnitude)),
      lambda: color(image, enhance_factor(magnitude, sign)),
      lambda: posterize(image, posterize_bits(magnitude)),
      lambda: contrast(image, enhance_factor(magnitude, sign)),
      lambda: brightness(image, enhance_factor(magnitude, sign)),
      lambda: sharpness(image, enhance_factor(magnitude, sign)),
      lambda: warp((1.0, sgn * 0.3 * lvl, 0.0, 0.0, 1.0, 0.0)),
      lambda: warp((1.0, 0.0, 0.0, sgn * 0.3 * lvl, 1.0, 0.0)),
      lambda: warp((1.0, 0.0, sgn * translate_frac * w * lvl, 0.0, 1.0, 0.0)),
      lambda: warp((1.0, 0.0, 0.0, 0.0, 1.0, sgn * translate_frac * h * lvl)),
  ]
  assert len(branches) == len(OPS)
  return jax.lax.switch(jnp.asarray(op, jnp.int32), [lambda _, b=b: b() for b in branches],
                        None)


def sample_ops(rng, batch_size: int, num_layers: int):
  """(op indices, signs), each (num_layers, batch_size): ops uniform over OPS,
  signs +-1 with probability 1/2."""
  k_op, k_sign = jax.random.split(rng)
  ops = jax.random.randint(k_op, (num_layers, batch_size), 0, len(OPS))
  signs = jnp.where(jax.random.bernoulli(k_sign, 0.5, (num_layers, batch_size)), 1.0, -1.0)
  return ops, signs.astype(_F32)


def randaugment(rng, images, num_layers: int, magnitude: Union[float, jax.Array],
                fill: Union[int, Sequence[int]] = 128, *,
                translate_frac: float = TRANSLATE_FRAC, interpolation: str = "nearest"):
  """RandAugment on a uint8 batch (N, H, W, C), C in {1, 3}; returns uint8 (N, H, W, C).

  Each image gets `num_layers` ops drawn uniformly from OPS, each at `magnitude`
  (scalar, traced scalar or (N,) per image; clipped to [0, 30]) with its own random
  sign. `fill` (scalar or per channel) fills pixels uncovered by the geometric ops.
  Pure: a fixed key gives the same result whatever the device layout.
  """
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"randaugment wants (N, H, W, C) with C in (1, 3); got {images.shape}")
  if images.dtype != jnp.uint8:
    raise ValueError(f"randaugment wants uint8 images; got {images.dtype}")
  if not isinstance(num_layers, int) or num_layers < 0:
    raise ValueError(f"num_layers={num_layers!r} must be a non-negative Python int")
  if interpolation not in ("nearest", "bilinear"):
    raise ValueError(f"interpolation={interpolation!r} must be 'nearest' or 'bilinear'")
  n, _, _, c = images.shape
  if num_layers == 0 or n == 0:
    return images
  fill_vec = jnp.broadcast_to(jnp.asarray(fill, jnp.int32), (c,)).astype(jnp.uint8)
  mags = jnp.broadcast_to(jnp.asarray(magnitude, _F32), (n,))
  ops, signs = sample_ops(rng, n, num_layers)

  def one(image, op, mag, sign):
    return apply_op(image, op, mag, sign, fill_vec, translate_frac=translate_frac,
                    interpolation=interpolation)

  def layer(imgs, xs):
    op, sign = xs
    return jax.vmap(one)(imgs, op, mags, sign), None

  images, _ = jax.lax.scan(layer, images, (ops, signs))
  return images
