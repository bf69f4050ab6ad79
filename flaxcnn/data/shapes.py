"""Generated segmentation data: "craters", discs on noisy backgrounds, with masks.

Each image is a smooth random background (low-frequency waves, like uneven
terrain and lighting) plus pixel noise, with one to `max_craters` craters at
random centres and radii: a darker bowl, lit on one rim and shadowed on the
other (light from the top left). The mask is 1 inside any crater disc, 0
elsewhere. Everything follows from `seed`: the same seed gives the same images.

    images, masks = craters(512, image_size=32, seed=0)  # (512, 32, 32, 1) uint8, (512, 32, 32) uint8

`craters_dataset` wraps train / validation / test splits as a
`flaxcnn.data.Dataset` whose labels are the masks (N, H, W).
"""
from typing import Tuple

import numpy as np

from flaxcnn.data.core import Split, finalize

CLASS_NAMES = ("background", "crater")


def craters(num_images: int, image_size: int = 32, seed: int = 0, channels: int = 1,
            max_craters: int = 4, radius: Tuple[float, float] = (0.08, 0.25),
            noise: float = 0.08, contrast: float = 0.3) -> Tuple[np.ndarray, np.ndarray]:
  """`num_images` images (N, S, S, channels) uint8 and masks (N, S, S) uint8 in {0, 1}.

  radius: the range of crater radii as fractions of the image side; noise: the
  std of the pixel noise (intensities in [0, 1]); contrast: how much darker a
  crater's floor is than the terrain around it.
  """
  if num_images < 0 or image_size < 4 or max_craters < 1:
    raise ValueError("craters: need num_images >= 0, image_size >= 4, max_craters >= 1")
  rng = np.random.RandomState(seed)
  s = image_size
  yy, xx = (np.mgrid[0:s, 0:s] + 0.5) / s          # pixel centres in [0, 1]
  images = np.empty((num_images, s, s), np.float32)
  masks = np.zeros((num_images, s, s), np.uint8)
  light = np.array([-1.0, -1.0]) / np.sqrt(2.0)    # from the top left (dy, dx)
  for i in range(num_images):
    # Terrain: a few random low-frequency waves around mid grey.
    img = np.full((s, s), 0.5, np.float32)
    for _ in range(3):
      fy, fx = rng.uniform(0.5, 2.5, 2) * rng.choice([-1, 1], 2)
      img += rng.uniform(0.03, 0.08) * np.sin(2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 2 * np.pi))
    for _ in range(rng.randint(1, max_craters + 1)):
      cy, cx = rng.uniform(0.1, 0.9, 2)
      r = rng.uniform(*radius)
      dy, dx = yy - cy, xx - cx
      d = np.sqrt(dy ** 2 + dx ** 2) / r
      inside = d <= 1.0
      depth = contrast * rng.uniform(0.8, 1.2)
      # Bowl: darkest in the middle; rim: lit on the side facing away from the
      # light, shadowed on the other, fading out just outside the disc.
      facing = (dy * light[0] + dx * light[1]) / (np.sqrt(dy ** 2 + dx ** 2) + 1e-6)
      bowl = -depth * (1.0 - 0.5 * d ** 2) * inside
      rim = -0.4 * depth * facing * np.exp(-((d - 1.0) / 0.3) ** 2)
      img = img + bowl + rim
      masks[i] |= inside.astype(np.uint8)
    img += rng.normal(0.0, noise, (s, s))
    images[i] = img
  images = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)[..., None]
  if channels != 1:
    images = np.repeat(images, channels, axis=-1)
  return images, masks


def craters_dataset(train_size: int = 1024, validation_size: int = 128, test_size: int = 256,
                    image_size: int = 32, seed: int = 0, **kwargs):
  """A `flaxcnn.data.Dataset` of craters: 'train' and 'validation' (held out from
  `train_size + validation_size` images of `seed`) and 'test' (images of seed + 1)."""
  images, masks = craters(train_size + validation_size, image_size, seed, **kwargs)
  test_images, test_masks = craters(test_size, image_size, seed + 1, **kwargs)
  splits = {"train": Split(images, masks)}
  if test_size:
    splits["test"] = Split(test_images, test_masks)
  return finalize("craters", 2, splits, validation_size, CLASS_NAMES)
