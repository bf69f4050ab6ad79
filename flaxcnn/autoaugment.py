"""The TensorFlow references' augmentation policies, in pure JAX on uint8 batches on
the device: AutoAugment (Cubuk et al. 2019, "AutoAugment: Learning Augmentation
Policies from Data"), the ImageNet policy as the EfficientNet reference applies it,
and RandAugment (Cubuk et al. 2020) as the EfficientNet and EfficientNetV2 references
apply it (both live in the references' autoaugment.py, and share its ops):

    images = autoaugment(rng, images_uint8)            # POLICY_V0, the reference's 'v0'
    images = randaugment_tf(rng, images_uint8, num_layers=2, level=15.0)

Per image, one of the policy's 25 sub-policies is drawn uniformly; its two ops are
applied in order, each with its own probability, at its level (0..10). Reference
followed: tensorflow/tpu models/official/efficientnet/autoaugment.py
(`distort_image_with_autoaugment(image, 'v0')`), whose level-to-argument rules are
those below; fill value 128 for the pixels the geometric ops uncover.

  op            argument at level L                          random sign
  AutoContrast  -                                            -
  Equalize      -                                            -
  Invert        - (255 - x)                                  -
  Rotate        30 L / 10 degrees                            yes
  Posterize     keep b = int(4 L / 10) bits: the reference shifts by 8 - b, which
                TensorFlow's CPU kernel (where tf.data runs) takes as a uint8 and
                clamps to 7, so b = 0 or b > 8 keeps 1 bit and b = 8 keeps all
  Solarize      invert pixels >= int(256 L / 10)             -
  SolarizeAdd   add int(110 L / 10) to pixels < 128, clip    -
  Color, Contrast, Brightness, Sharpness
                factor 0.1 + 1.8 L / 10                      no (unlike torchvision's)
                Contrast blends toward the reference's sum(histogram) / 256, that is
                pixels / 256 clipped to 255 and truncated (196 at 224 x 224), not
                PIL's mean grey; Sharpness truncates the SMOOTH filter where PIL rounds
  ShearX/Y      0.3 L / 10                                   yes
  TranslateX/Y  translate_const L / 10 pixels                yes
  Cutout        a square of side 2 int(cutout_const L / 10) pixels at a uniform
                centre, clipped at the borders, filled with 128

The constants are the references': AutoAugment translate_const=250, cutout_const=100;
RandAugment 100 and 40, in pixels of the image as it is augmented (after the crop).
AutoAugment scales them with the image side, as 250 pixels of a 224-pixel image (the
same at 224: EfficientNet-B0; small images keep the op's meaning); RandAugment keeps
the reference's absolute pixels, as EfficientNetV2's progressive sizes (128 to 380
pixels) see them. Levels are not capped: EfficientNetV2's RandAugment levels 15-25
extrapolate as the reference (Rotate 75 degrees at 25, enhance factors up to 4.6).
The other pixel ops are flaxcnn.randaugment's (PIL's formulas, as the reference emulates
them).
"""
import math
from typing import Sequence, Tuple

import jax
import jax.numpy as jnp

from flaxcnn import randaugment as ra

# (op, probability, level) pairs: the reference's policy_v0, in its order.
POLICY_V0: Tuple[Tuple[Tuple[str, float, int], ...], ...] = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)
POLICIES = {"v0": POLICY_V0}

OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
       "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
       "TranslateX", "TranslateY", "Cutout")
MAX_LEVEL = 10.0
TRANSLATE_PIXELS = 25.0   # per level: translate_const=250 at level 10, of 224-pixel images
CUTOUT_PIXELS = 10.0      # per level: cutout_const=100, of 224-pixel images
# distort_image_with_randaugment: its 16 ops (in its order) and constants.
RANDAUGMENT_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
                   "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
                   "TranslateX", "TranslateY", "Cutout", "SolarizeAdd")
RANDAUGMENT_TRANSLATE = 100.0
RANDAUGMENT_CUTOUT = 40.0


def solarize_add(image, addition, threshold=128):
  """The reference's SolarizeAdd: pixels below `threshold` get `addition`, clipped."""
  added = jnp.clip(image.astype(jnp.int32) + addition, 0, 255).astype(jnp.uint8)
  return jnp.where(image < threshold, added, image)


def posterize(image, bits):
  """The reference's posterize as TensorFlow's CPU kernel computes it: a shift of
  8 - bits, as a uint8, clamped to 7."""
  shift = jnp.minimum(jnp.mod(8 - bits, 256), 7).astype(jnp.uint8)
  return jnp.left_shift(jnp.right_shift(image, shift), shift)


def contrast(image, factor):
  """The reference's Contrast: a blend toward sum(histogram) / 256 of the grey image,
  which is the pixel count / 256 (clipped to 255, cast to uint8), whatever the image."""
  h, w, _ = image.shape
  return ra.blend(jnp.float32(math.floor(min(h * w / 256.0, 255.0))), image, factor)


def sharpness(image, factor):
  """The reference's Sharpness: a blend with PIL's SMOOTH filter, cast (truncated)."""
  return ra.blend(ra.smooth(image, rounded=False), image, factor)


def cutout(image, pad, center, fill):
  """The reference's cutout: rows [cy - pad, cy + pad) x columns [cx - pad, cx + pad),
  clipped to the image, set to `fill`."""
  h, w, _ = image.shape
  rows = jnp.abs(jnp.arange(h)[:, None] - center[0] + 0.5) < pad
  cols = jnp.abs(jnp.arange(w)[None, :] - center[1] + 0.5) < pad
  return jnp.where((rows & cols)[..., None], fill, image)


def apply_op(image, op, level, sign, fill, translate=None, cutout_pixels=None,
             center=(0, 0)):
  """OPS[op] at `level` on one (H, W, C) uint8 image; `sign` (+-1) turns the
  geometric ops; `op` may be traced (lax.switch). `translate` / `cutout_pixels`:
  pixels per level (default AutoAugment's, scaled to the image side); `center`:
  Cutout's square centre (row, column)."""
  h, w, _ = image.shape
  if translate is None:
    translate = (TRANSLATE_PIXELS * w / 224.0, TRANSLATE_PIXELS * h / 224.0)
  else:
    translate = (translate, translate)
  if cutout_pixels is None:
    cutout_pixels = CUTOUT_PIXELS * min(h, w) / 224.0
  # Each argument as one correctly rounded float32 (factor 1.72 at level 9, as the
  # reference's Python double cast to float32; 0.1 + 1.8 * 0.9 in float32 is 1.7199999).
  level = jnp.asarray(level, jnp.float32)
  sign = jnp.asarray(sign, jnp.float32)
  factor = (10.0 + 18.0 * level) / 100.0

  def warp(matrix):
    return ra.affine_transform(image, matrix, fill)

  branches = [
      lambda: ra.autocontrast(image),
      lambda: ra.equalize(image),
      lambda: 255 - image,
      lambda: warp(ra.rotate_matrix(sign * 3.0 * level, h, w)),
      lambda: posterize(image, jnp.floor(4.0 * level / 10.0).astype(jnp.int32)),
      lambda: ra.solarize(image, jnp.floor(256.0 * level / 10.0)),
      lambda: solarize_add(image, (11.0 * level).astype(jnp.int32)),
      lambda: ra.color(image, factor),
      lambda: contrast(image, factor),
      lambda: ra.brightness(image, factor),
      lambda: sharpness(image, factor),
      lambda: warp((1.0, sign * 3.0 * level / 100.0, 0.0, 0.0, 1.0, 0.0)),
      lambda: warp((1.0, 0.0, 0.0, sign * 3.0 * level / 100.0, 1.0, 0.0)),
      lambda: warp((1.0, 0.0, sign * translate[0] * level, 0.0, 1.0, 0.0)),
      lambda: warp((1.0, 0.0, 0.0, 0.0, 1.0, sign * translate[1] * level)),
      lambda: cutout(image, jnp.floor(cutout_pixels * level), center, fill),
  ]
  assert len(branches) == len(OPS)
  return jax.lax.switch(jnp.asarray(op, jnp.int32), [lambda _, b=b: b() for b in branches],
                        None)


def policy_table(policy: Sequence) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """(ops, probabilities, levels), each (sub-policies, ops per sub-policy)."""
  unknown = sorted({name for sub in policy for name, _, _ in sub} - set(OPS))
  if unknown or len({len(sub) for sub in policy}) != 1:
    raise ValueError(f"autoaugment policy: unknown ops {unknown}" if unknown else
                     "autoaugment policy: every sub-policy must have as many ops")
  ops = jnp.asarray([[OPS.index(name) for name, _, _ in sub] for sub in policy], jnp.int32)
  probs = jnp.asarray([[p for _, p, _ in sub] for sub in policy], jnp.float32)
  levels = jnp.asarray([[lvl for _, _, lvl in sub] for sub in policy], jnp.float32)
  return ops, probs, levels


def _centers(rng, shape, h, w):
  """Cutout centres (row, column), uniform over the image: (*shape, 2) int32."""
  k_y, k_x = jax.random.split(rng)
  return jnp.stack([jax.random.randint(k_y, shape, 0, h),
                    jax.random.randint(k_x, shape, 0, w)], axis=-1)


def _check(images, what):
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != jnp.uint8:
    raise ValueError(f"{what} wants uint8 (N, H, W, C) with C in (1, 3); got "
                     f"{images.dtype} {images.shape}")
  return images


def autoaugment(rng, images, policy="v0", fill=128):
  """AutoAugment on a uint8 batch (N, H, W, C), C in {1, 3}: per image a sub-policy
  drawn uniformly, its ops applied in order, each with its probability. `policy`:
  a name of POLICIES or a sequence of sub-policies of (op, probability, level)."""
  images = _check(images, "autoaugment")
  if isinstance(policy, str):
    if policy not in POLICIES:
      raise ValueError(f"autoaugment policy {policy!r}: choose one of {sorted(POLICIES)}")
    policy = POLICIES[policy]
  ops, probs, levels = policy_table(policy)
  n, h, w, c = images.shape
  fill_vec = jnp.broadcast_to(jnp.asarray(fill, jnp.int32), (c,)).astype(jnp.uint8)
  uses_cutout = any(name == "Cutout" for sub in policy for name, _, _ in sub)
  k_sub, k_apply, k_sign, *k_center = jax.random.split(rng, 4 if uses_cutout else 3)
  chosen = jax.random.randint(k_sub, (n,), 0, ops.shape[0])
  apply = jax.random.uniform(k_apply, (n, ops.shape[1])) < probs[chosen]
  signs = jnp.where(jax.random.bernoulli(k_sign, 0.5, (n, ops.shape[1])), 1.0, -1.0)
  centers = (_centers(k_center[0], (n, ops.shape[1]), h, w) if uses_cutout
             else jnp.zeros((n, ops.shape[1], 2), jnp.int32))

  def one(image, op_row, level_row, apply_row, sign_row, center_row):
    for j in range(op_row.shape[0]):
      out = apply_op(image, op_row[j], level_row[j], sign_row[j], fill_vec,
                     center=center_row[j])
      image = jnp.where(apply_row[j], out, image)
    return image

  return jax.vmap(one)(images, ops[chosen], levels[chosen], apply, signs, centers)


def sample_randaugment(rng, batch_size: int, num_layers: int, height: int, width: int):
  """(ops as OPS indices, signs, Cutout centres), each (num_layers, batch_size, ...):
  per layer and image one of RANDAUGMENT_OPS drawn uniformly, as the reference."""
  k_op, k_sign, k_center = jax.random.split(rng, 3)
  table = jnp.asarray([OPS.index(name) for name in RANDAUGMENT_OPS], jnp.int32)
  ops = table[jax.random.randint(k_op, (num_layers, batch_size), 0, len(RANDAUGMENT_OPS))]
  signs = jnp.where(jax.random.bernoulli(k_sign, 0.5, (num_layers, batch_size)), 1.0, -1.0)
  return ops, signs, _centers(k_center, (num_layers, batch_size), height, width)


def randaugment_tf(rng, images, num_layers: int, level, fill=128):
  """RandAugment as the EfficientNet / EfficientNetV2 references apply it
  (distort_image_with_randaugment) on a uint8 batch (N, H, W, C): per image and layer
  one of the 16 RANDAUGMENT_OPS drawn uniformly and always applied, at `level` on the
  reference's scale (10 = its _MAX_LEVEL; higher levels extrapolate). `level` may be
  traced (progressive learning changes it without recompiling)."""
  images = _check(images, "randaugment_tf")
  if not isinstance(num_layers, int) or num_layers < 0:
    raise ValueError(f"num_layers={num_layers!r} must be a non-negative Python int")
  n, h, w, c = images.shape
  if num_layers == 0 or n == 0:
    return images
  fill_vec = jnp.broadcast_to(jnp.asarray(fill, jnp.int32), (c,)).astype(jnp.uint8)
  level = jnp.asarray(level, jnp.float32)
  translate, cut = RANDAUGMENT_TRANSLATE / MAX_LEVEL, RANDAUGMENT_CUTOUT / MAX_LEVEL

  def one(image, op, sign, center):
    return apply_op(image, op, level, sign, fill_vec, translate, cut, center)

  def layer(imgs, xs):
    return jax.vmap(one)(imgs, *xs), None

  images, _ = jax.lax.scan(layer, images, sample_randaugment(rng, n, num_layers, h, w))
  return images
