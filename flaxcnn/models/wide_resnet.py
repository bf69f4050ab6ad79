"""Wide Residual Networks (Zagoruyko & Komodakis 2016, "Wide Residual Networks", BMVC).

WRN-d-k for CIFAR: a 3x3 stem convolution with 16 channels, three groups of
n pre-activation residual blocks with 16k, 32k and 64k channels (strides 1, 2,
2), then BN-ReLU, global average pooling and a dense layer. The paper writes a
block as B(k_1, ..., k_m), the kernel sizes of its m convolutions; B(3,3) is the
default. Here the depth d always counts the convolutions of all blocks plus 4,
d = 3 * n * m + 4 (6n + 4 for B(3,3)), the convention of the paper's Table 3
(WRN-40-2 with l = 1..4 convolutions per block, all 2.2M parameters).

The block-type ablation (Table 2) instead names its nets by the B(3,3)
convention n = (d - 4) / 6 of the official code: its "WRN-40-2 B(1,3,1)" has
n = 6 three-convolution blocks per group (1.4M parameters, as published), which
is depth 58 here. The presets `wrn40_2_b131`, `wrn40_2_b311` and `wrn22_2_b313`
carry the paper's names and the depths (58, 58, 31) that reproduce its nets.

The structure follows the official implementation
(github.com/szagoruyko/wide-residual-networks, models/wide-resnet.lua):
convolutions have no bias, the dense layer has one, and where a block changes
the shape its first BN-ReLU is applied to the block input and feeds both the
residual branch and the 1x1 projection shortcut. WRN-28-10 then has exactly
36,479,194 parameters (10 classes). Dropout (0.3 in the paper) sits between the
convolutions of a block, after BN-ReLU, never on the shortcut.

WRN-50-2 (the ImageNet bottleneck variant) is registered by the ResNet module.
"""
import functools
from typing import Any, Sequence, Tuple, Union

import flax.linen as nn
import jax.numpy as jnp

from flaxcnn.models import layers, registry
from flaxcnn.models.regularization import Regularization

PAPER = "Zagoruyko & Komodakis 2016"


def parse_block_type(block_type: Union[str, Sequence[int]]) -> Tuple[int, ...]:
  """Kernel sizes of a block type: (3, 3), [3, 1, 3], "3,1,3" or "B(3,1,3)"."""
  try:
    if isinstance(block_type, str):
      text = block_type.strip().upper()
      text = text[1:] if text.startswith("B") else text
      kernels = tuple(int(k) for k in text.strip("() ").split(","))
    else:
      kernels = tuple(int(k) for k in block_type)
  except (TypeError, ValueError):
    kernels = ()
  if not kernels or any(k < 1 for k in kernels):
    raise ValueError(f"block_type: expected positive kernel sizes such as (3, 3) or "
                     f"'3,1,3', got {block_type!r}")
  return kernels


def blocks_per_group(depth: int, block_type: Union[str, Sequence[int]] = (3, 3)) -> int:
  """n of WRN-depth-k: depth = 3 * n * len(block_type) + 4."""
  m = len(parse_block_type(block_type))
  if depth < 3 * m + 4 or (depth - 4) % (3 * m):
    valid = ", ".join(str(3 * m * n + 4) for n in range(1, 5))
    raise ValueError(f"depth: WRN depth with {m} convolutions per block must be "
                     f"{3 * m}n+4 ({valid}, ...), got {depth}")
  return (depth - 4) // (3 * m)


class WideBlock(nn.Module):
  """Pre-activation wide residual block B(k_1, ..., k_m) (Zagoruyko & Komodakis 2016, Fig. 1).

  BN-ReLU-conv(k_1) then, for each further kernel, BN-ReLU-dropout-conv(k_i)
  (`bn{i}`, `conv{i}`); all convolutions are `features` wide and the first one
  carries the stride (as in the official code). If the shape changes, the
  `shortcut` is a 1x1 convolution of the pre-activated input, otherwise the
  identity. `regularization`: dropout between the convolutions, stochastic depth
  and DropBlock on the residual branch (DropBlock also on the projection), never
  on the identity.
  """
  features: int
  kernels: Sequence[int] = (3, 3)
  strides: int = 1
  survival_prob: float = 1.0
  regularization: Regularization = Regularization()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool, survival_prob=None, step=None):
    reg = self.regularization

    def preact(y, i):
      return nn.relu(layers.batch_norm(train, self.dtype, name=f"bn{i + 1}")(y))

    project = x.shape[-1] != self.features or self.strides != 1
    h = preact(x, 0) if project else x

    def branch(mdl, y):
      for i, k in enumerate(self.kernels):
        if i > 0 or not project:
          y = preact(y, i)
        if i > 0 and reg.dropout > 0:
          y = nn.Dropout(reg.dropout, deterministic=not train, name=f"dropout{i + 1}")(y)
        s = self.strides if i == 0 else 1
        y = layers.Conv(self.features, (k, k), (s, s), padding=[((k - 1) // 2, k // 2)] * 2,
                        dtype=self.dtype, name=f"conv{i + 1}")(y)
      return reg.dropblock(y, train, step, "dropblock")

    if project:
      shortcut = layers.Conv(self.features, (1, 1), (self.strides, self.strides),
                             dtype=self.dtype, name="shortcut")(h)
      shortcut = reg.dropblock(shortcut, train, step, "shortcut_dropblock")
    else:
      shortcut = x
    return reg.residual(self, branch, h, shortcut, train=train,
                        survival_prob=layers.or_field(survival_prob, self.survival_prob))


class WideResNet(nn.Module):
  """WRN-depth-widen_factor for CIFAR-sized inputs (Zagoruyko & Komodakis 2016, Table 1).

  Widths 16, 16k, 32k, 64k; n = (depth - 4) / (3 * len(block_type)) blocks per group.
  Layers: `stem`, `group{g}_block{b}`, `final_bn`, `head`.

  `block_type` takes the paper's B(...) kernel sizes, as a tuple or a string
  ("3,1,3"); `regularization.dropout` is the in-block dropout rate (0.3 for
  WRN-28-10-dropout).
  """
  num_classes: int
  depth: int = 28
  widen_factor: int = 10
  block_type: Union[str, Sequence[int]] = (3, 3)
  stem_features: int = 16
  regularization: Regularization = Regularization()
  remat: bool = False
  scan_blocks: bool = False
  dtype: Any = jnp.float32

  def __post_init__(self):
    super().__post_init__()
    blocks_per_group(self.depth, self.block_type)
    if self.widen_factor < 1:
      raise ValueError(f"widen_factor: must be a positive integer, got {self.widen_factor}")
    self.regularization.check("WideResNet", 3, ("dropout", "stochastic_depth", "dropblock"),
                              full_dropout=True)

  @property
  def scan_groups(self):
    """(scan_name, block names) that `scan_blocks` stacks: blocks 2..n of each group."""
    n = blocks_per_group(self.depth, self.block_type)
    if n < 3:
      return []
    return [(f"group{g}_scan", [f"group{g}_block{b}" for b in range(2, n + 1)])
            for g in (1, 2, 3)]

  @nn.compact
  def __call__(self, x, train: bool = False, pre_logits: bool = False, step=None):
    kernels = parse_block_type(self.block_type)
    n = blocks_per_group(self.depth, kernels)
    x = layers.Conv(self.stem_features, (3, 3), padding=[(1, 1), (1, 1)],
                    dtype=self.dtype, name="stem")(x.astype(self.dtype))
    probs = self.regularization.survival_probs(3 * n)
    for g, (width, strides) in enumerate(zip((16, 32, 64), (1, 2, 2)), start=1):
      block = functools.partial(WideBlock, features=width * self.widen_factor, kernels=kernels,
                                regularization=self.regularization.in_stage(g),
                                dtype=self.dtype)
      names = [f"group{g}_block{b}" for b in range(1, n + 1)]
      p = probs[(g - 1) * n:g * n]
      x = layers.repeat_blocks(block, x, train, names[:1], p[:1], step=step, remat=self.remat,
                               strides=strides)
      x = layers.repeat_blocks(block, x, train, names[1:], p[1:], step=step, remat=self.remat,
                               scan=self.scan_blocks, scan_name=f"group{g}_scan")
    x = nn.relu(layers.batch_norm(train, self.dtype, name="final_bn")(x))
    return layers.classifier_head(x, train, self.num_classes, dtype=self.dtype,
                                  pre_logits=pre_logits)


def _register(name: str, depth: int, k: int, block_type=(3, 3), **kwargs):
  registry.register(name, WideResNet, image_size=32, num_classes=10, paper=PAPER,
                    depth=depth, widen_factor=k, block_type=block_type, **kwargs)


# B(3,3) nets of Tables 2 and 4-6: WRN-40-1 0.6M, 40-2 2.2M, 40-4 8.9M, 40-8 35.7M,
# 28-10 36.5M, 28-12 52.5M, 22-8 17.2M, 22-10 26.8M, 16-8 11.0M, 16-10 17.1M
# (Table 4), 16-4 2.7M and 52-1 (Table 6), 28-2 1.5M (Table 2).
for _d, _k in ((16, 4), (16, 8), (16, 10), (22, 8), (22, 10), (28, 2), (28, 10), (28, 12),
               (40, 1), (40, 2), (40, 4), (40, 8), (52, 1)):
  _register(f"wrn{_d}_{_k}", _d, _k)
# With dropout 0.3 inside the blocks (Tables 5 and 6).
for _d, _k in ((16, 4), (28, 10), (52, 1)):
  _register(f"wrn{_d}_{_k}_dropout", _d, _k, dropout=0.3)
# Block types of Table 2 (k = 2, about the same number of parameters), named as in
# the paper, whose depth assumes n = (d - 4) / 6 blocks per group for every type:
# B(1,3,1) 1.4M, B(3,1) 1.2M, B(1,3) 1.3M, B(3,1,1) 1.3M, B(3,1,3) 1.1M.
for _d, _bt in ((40, (1, 3, 1)), (40, (3, 1)), (40, (1, 3)), (40, (3, 1, 1)),
                (22, (3, 1, 3))):
  _n = (_d - 4) // 6
  _register(f"wrn{_d}_2_b{''.join(map(str, _bt))}", 3 * _n * len(_bt) + 4, 2, _bt)
# Convolutions per block l = 1, 3, 4 of Table 3 (WRN-40-2 with B(3), B(3,3,3), B(3,3,3,3)).
for _bt in ((3,), (3, 3, 3), (3, 3, 3, 3)):
  _register(f"wrn40_2_b{''.join(map(str, _bt))}", 40, 2, _bt)
