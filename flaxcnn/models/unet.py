"""U-Net (Ronneberger et al. 2015, "U-Net: Convolutional Networks for Biomedical
Image Segmentation").

A contracting path of `depth` stages, each two 3x3 convolutions followed by a
2x2 max pool (stride 2), doubling the channels after each pooling
(base, 2 base, ..., 2^depth base at the bottom), and an expansive path that
mirrors it: a 2x2 transposed convolution with stride 2 ("up-convolution", the
upscaling convolution of the lecture) doubles the resolution and halves the
channels, the result is concatenated with the feature map of the same
resolution from the contracting path (the skip connection), and two 3x3
convolutions follow. A final 1x1 convolution gives per-pixel class logits.

Unlike the paper, convolutions use 'SAME' padding (no cropping of the skip
connections) and are followed by BatchNorm (no bias) before the ReLU, so the
output has the input's resolution; `norm=False` gives the paper's BN-free
convolutions with biases. Inputs need sides divisible by 2^depth.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from flaxcnn.models import layers, registry
from flaxcnn.models.regularization import Regularization

PAPER = "Ronneberger et al. 2015"


class DoubleConv(nn.Module):
  """Two (3x3 conv -> BN -> ReLU) units, one U-Net stage (Ronneberger et al.
  2015); with norm=False, (3x3 conv with bias -> ReLU) as in the paper."""
  features: int
  norm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    for i in range(2):
      if self.norm:
        x = layers.ConvBN(self.features, (3, 3), dtype=self.dtype,
                          name=f"conv{i + 1}")(x, train)
      else:
        x = nn.relu(nn.Conv(self.features, (3, 3), padding="SAME",
                            kernel_init=layers.he_normal, dtype=self.dtype,
                            name=f"conv{i + 1}")(x))
    return x


class UNet(nn.Module):
  """U-Net (Ronneberger et al. 2015): per-pixel logits of shape
  (N, H, W, num_classes), float32, for inputs (N, H, W, C) with H and W
  divisible by 2^depth.

  `depth` is the number of 2x2 max poolings (4 in the paper: 64 -> 1024
  channels with base_features 64); `regularization.dropout` > 0 adds dropout at
  the end of the contracting path, as the paper does.
  """
  num_classes: int
  base_features: int = 64
  depth: int = 4
  norm: bool = True
  regularization: Regularization = Regularization()
  dtype: Any = jnp.float32

  def __post_init__(self):
    super().__post_init__()
    if self.depth < 1:
      raise ValueError(f"depth: number of poolings must be >= 1, got {self.depth}")
    if self.base_features < 1:
      raise ValueError(f"base_features: must be >= 1, got {self.base_features}")
    if self.num_classes < 1:
      raise ValueError(f"num_classes: must be >= 1, got {self.num_classes}")
    self.regularization.check("UNet", self.depth, ("dropout",))

  @nn.compact
  def __call__(self, x, train: bool, step=None):
    factor = 2 ** self.depth
    h, w = x.shape[1:3]
    if h % factor or w % factor:
      raise ValueError(f"UNet input size {h}x{w}: height and width must be divisible "
                       f"by 2^depth = {factor} (depth={self.depth})")
    stage = lambda i, name: DoubleConv(self.base_features * 2 ** i, self.norm,  # noqa: E731
                                       self.dtype, name=name)
    skips = []
    for i in range(self.depth):                       # contracting path
      x = stage(i, f"down{i + 1}")(x, train)
      skips.append(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = stage(self.depth, "bottom")(x, train)
    if self.regularization.dropout > 0:
      x = nn.Dropout(self.regularization.dropout, deterministic=not train, name="dropout")(x)
    for i in reversed(range(self.depth)):             # expansive path
      x = nn.ConvTranspose(self.base_features * 2 ** i, (2, 2), strides=(2, 2),
                           padding="VALID", kernel_init=layers.he_normal,
                           dtype=self.dtype, name=f"upconv{i + 1}")(x)
      x = jnp.concatenate([skips[i], x.astype(skips[i].dtype)], axis=-1)
      x = stage(i, f"up{i + 1}")(x, train)
    x = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="head")(x)
    return x.astype(jnp.float32)


registry.register("unet", UNet, image_size=256, num_classes=2, paper=PAPER,
                  base_features=64, depth=4)
registry.register("unet_small", UNet, image_size=64, num_classes=2, paper=PAPER,
                  base_features=16, depth=3)
