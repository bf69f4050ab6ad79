"""AutoAugment (Cubuk et al. 2019, "AutoAugment: Learning Augmentation Policies from
Data"), the ImageNet policy as the EfficientNet reference applies it, in pure JAX on
uint8 batches on the device:

    images = autoaugment(rng, images_uint8)            # POLICY_V0, the reference's 'v0'

Per image, one of the policy's 25 sub-policies is drawn uniformly; its two ops are
applied in order, each with its own probability, at its level (0..10). Reference
followed: tensorflow/tpu models/official/efficientnet/autoaugment.py
(`distort_image_with_autoaugment(image, 'v0')`), whose level-to-argument rules are
those below; fill value 128 for the pixels the geometric ops uncover.

  op            argument at level L (0..10)                  random sign
  AutoContrast  -                                            -
  Equalize      -                                            -
  Invert        - (255 - x)                                  -
  Rotate        30 L / 10 degrees                            yes
  Posterize     keep int(4 L / 10) bits, at least 1 (the reference's rule: level 6
                keeps 2; TensorFlow clamps a shift of 8 to 7, so level 2 keeps 1)
  Solarize      invert pixels >= int(256 L / 10)             -
  SolarizeAdd   add int(110 L / 10) to pixels < 128, clip    -
  Color, Contrast, Brightness, Sharpness
                factor 0.1 + 1.8 L / 10                      no (unlike RandAugment)
  ShearX/Y      0.3 L / 10                                   yes
  TranslateX/Y  250 L / 10 pixels of a 224-pixel image (the reference's
                translate_const=250), scaled with the image side  yes

The pixel ops are flaxcnn.randaugment's (PIL's formulas, as the reference emulates
them). The reference's Cutout op is not in the 'v0' policy and is left out.
"""
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
       "TranslateX", "TranslateY")
MAX_LEVEL = 10.0
TRANSLATE_PIXELS = 25.0   # per level: translate_const=250 at level 10, of 224-pixel images


def solarize_add(image, addition, threshold=128):
  """The reference's SolarizeAdd: pixels below `threshold` get `addition`, clipped."""
  added = jnp.clip(image.astype(jnp.int32) + addition, 0, 255).astype(jnp.uint8)
  return jnp.where(image < threshold, added, image)


def apply_op(image, op, level, sign, fill):
  """OPS[op] at `level` (0..10) on one (H, W, C) uint8 image; `sign` (+-1) turns the
  geometric ops; `op` may be traced (lax.switch)."""
  h, w, _ = image.shape
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
      lambda: ra.posterize(image, jnp.maximum(jnp.floor(4.0 * level / 10.0), 1.0)
                           .astype(jnp.int32)),
      lambda: ra.solarize(image, jnp.floor(256.0 * level / 10.0)),
      lambda: solarize_add(image, (11.0 * level).astype(jnp.int32)),
      lambda: ra.color(image, factor),
      lambda: ra.contrast(image, factor),
      lambda: ra.brightness(image, factor),
      lambda: ra.sharpness(image, factor),
      lambda: warp((1.0, sign * 3.0 * level / 100.0, 0.0, 0.0, 1.0, 0.0)),
      lambda: warp((1.0, 0.0, 0.0, sign * 3.0 * level / 100.0, 1.0, 0.0)),
      lambda: warp((1.0, 0.0, sign * TRANSLATE_PIXELS * level * w / 224.0, 0.0, 1.0, 0.0)),
      lambda: warp((1.0, 0.0, 0.0, 0.0, 1.0, sign * TRANSLATE_PIXELS * level * h / 224.0)),
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


def autoaugment(rng, images, policy="v0", fill=128):
  """AutoAugment on a uint8 batch (N, H, W, C), C in {1, 3}: per image a sub-policy
  drawn uniformly, its ops applied in order, each with its probability. `policy`:
  a name of POLICIES or a sequence of sub-policies of (op, probability, level)."""
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != jnp.uint8:
    raise ValueError(f"autoaugment wants uint8 (N, H, W, C) with C in (1, 3); got "
                     f"{images.dtype} {images.shape}")
  if isinstance(policy, str):
    if policy not in POLICIES:
      raise ValueError(f"autoaugment policy {policy!r}: choose one of {sorted(POLICIES)}")
    policy = POLICIES[policy]
  ops, probs, levels = policy_table(policy)
  n, c = images.shape[0], images.shape[-1]
  fill_vec = jnp.broadcast_to(jnp.asarray(fill, jnp.int32), (c,)).astype(jnp.uint8)
  k_sub, k_apply, k_sign = jax.random.split(rng, 3)
  chosen = jax.random.randint(k_sub, (n,), 0, ops.shape[0])
  apply = jax.random.uniform(k_apply, (n, ops.shape[1])) < probs[chosen]
  signs = jnp.where(jax.random.bernoulli(k_sign, 0.5, (n, ops.shape[1])), 1.0, -1.0)

  def one(image, op_row, level_row, apply_row, sign_row):
    for j in range(op_row.shape[0]):
      out = apply_op(image, op_row[j], level_row[j], sign_row[j], fill_vec)
      image = jnp.where(apply_row[j], out, image)
    return image

  return jax.vmap(one)(images, ops[chosen], levels[chosen], apply, signs)
