"""Deep Pyramidal Residual Networks (Han, Kim & Kim 2017, "Deep Pyramidal Residual Networks", CVPR).

Instead of doubling the width at each downsampling, a PyramidNet widens every
residual block a little, so the widths form a pyramid. With N blocks in all and
a start width D_0 (16 on CIFAR, 64 on ImageNet):
  additive:        D_k = D_{k-1} + alpha / N   (final width D_0 + alpha)
  multiplicative:  D_k = D_{k-1} * alpha^(1/N) (final width D_0 * alpha)
The paper writes floor(.) around both; the official code (jhkim89/PyramidNet,
addpyramidnet.lua and mulpyramidnet.lua, and dyhan0920/PyramidNet-PyTorch)
accumulates the float width and rounds it, floor(D_k + 0.5), per block. We
follow the code; it reproduces the published parameter counts.

The block is BN-conv3x3-BN-ReLU-conv3x3-BN (bottleneck: BN-1x1-BN-ReLU-3x3-BN-
ReLU-1x1-BN with 4x expansion), with no ReLU after the first BN and none after
the addition. The shortcut is a parameter-free identity whose missing channels
are zero-padded; where the block downsamples, the shortcut is 2x2 average
pooling with stride 2, as in the official code (not strided subsampling).

Parameter counts: the published figures leave out the BatchNorm scales and
offsets (the conv and dense weights alone give the ImageNet 62.1M and 116.4M and
the bottleneck CIFAR 27.0M/26.6M/26.8M/26.0M); `summary` counts all parameters.
The small CIFAR nets are published as matched budgets (1.7M, 3.8M, 28.3M for the
additive and multiplicative nets of a row alike), within a few percent.
"""
import functools
import math
from typing import Any, List, Tuple

import flax.linen as nn
import jax.numpy as jnp

from flaxcnn.models import layers, registry
from flaxcnn.models.regularization import Regularization

PAPER = "Han et al. 2017"

# Stage sizes of the ImageNet models (the ResNet layouts the official code uses).
IMAGENET_STAGES = {
    False: {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)},
    True: {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)},
}


def block_widths(alpha: float, num_blocks: int, start: int = 16,
                 widening: str = "additive") -> List[int]:
  """D_1..D_N: widths of the N blocks, widened by `alpha` in total from `start`."""
  width, widths = float(start), []
  for _ in range(num_blocks):
    if widening == "additive":
      width += alpha / num_blocks
    elif widening == "multiplicative":
      width *= alpha ** (1.0 / num_blocks)
    else:
      raise ValueError(f"widening: use 'additive' or 'multiplicative', got {widening!r}")
    widths.append(int(math.floor(width + 0.5)))
  return widths


def stage_sizes(depth: int, bottleneck: bool, stem: str = "cifar") -> Tuple[int, ...]:
  """Blocks per stage: CIFAR depth = 6n+2 (basic) or 9n+2 (bottleneck), three stages."""
  if stem == "imagenet":
    table = IMAGENET_STAGES[bottleneck]
    if depth not in table:
      kind = "bottleneck" if bottleneck else "basic"
      raise ValueError(f"depth: ImageNet PyramidNet with {kind} blocks must have depth in "
                       f"{sorted(table)}, got {depth}")
    return table[depth]
  if stem != "cifar":
    raise ValueError(f"stem: use 'cifar' or 'imagenet', got {stem!r}")
  per_block = 9 if bottleneck else 6
  if depth < per_block + 2 or (depth - 2) % per_block:
    kind = "bottleneck" if bottleneck else "basic"
    valid = ", ".join(str(per_block * n + 2) for n in range(1, 4))
    raise ValueError(f"depth: PyramidNet depth with {kind} blocks must be {per_block}n+2 "
                     f"({valid}, ...), got {depth}")
  n = (depth - 2) // per_block
  return (n, n, n)


def pyramid_shortcut(x, features: int, strides: int):
  """Zero-padded identity shortcut (Han et al. 2017): average pooling over
  strides x strides windows when downsampling (the official code's choice), then
  zero channels appended up to `features`. It has no parameters."""
  if strides > 1:
    pad = [(0, -d % strides) for d in x.shape[1:3]]   # ceil, like the strided conv
    x = nn.avg_pool(x, (strides, strides), (strides, strides), padding=pad,
                    count_include_pad=False)
  return layers.shortcut_a(x, features, 1)


class PyramidBlock(nn.Module):
  """Pyramidal residual unit (Han et al. 2017), basic or bottleneck.

  Basic: BN-conv3x3-BN-ReLU-conv3x3-BN; bottleneck: BN-conv1x1-BN-ReLU-conv3x3-
  BN-ReLU-conv1x1(4x)-BN, named bn1, conv1, bn2, ... as in the official PyTorch
  code. `features` is D_k (the bottleneck's inner width). The sum with the
  zero-padded shortcut is not followed by a ReLU. Stochastic depth and DropBlock
  (`regularization`) act on the residual branch only.
  """
  features: int
  strides: int = 1
  bottleneck: bool = False
  survival_prob: float = 1.0
  regularization: Regularization = Regularization()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool, survival_prob=None, step=None):
    f, s = self.features, self.strides
    convs = [(1, f, 1), (3, f, s), (1, 4 * f, 1)] if self.bottleneck else [(3, f, s), (3, f, 1)]
    norm = functools.partial(layers.batch_norm, train, self.dtype)

    def branch(mdl, y):
      y = norm(name="bn1")(y)
      for i, (k, features, strides) in enumerate(convs, start=1):
        y = layers.Conv(features, (k, k), (strides, strides),
                        padding=[((k - 1) // 2, k // 2)] * 2, dtype=self.dtype,
                        name=f"conv{i}")(y)
        y = norm(name=f"bn{i + 1}")(y)
        if i < len(convs):
          y = nn.relu(y)
      return self.regularization.dropblock(y, train, step, "dropblock")

    return self.regularization.residual(
        self, branch, x, pyramid_shortcut(x, convs[-1][1], s), train=train,
        survival_prob=layers.or_field(survival_prob, self.survival_prob))


class PyramidNet(nn.Module):
  """PyramidNet (Han et al. 2017), CIFAR or ImageNet layout (`stem`).

  CIFAR: 3x3 conv 16 + BN, three stages of n blocks (strides 1, 2, 2).
  ImageNet: 7x7/2 conv 64 + BN-ReLU + 3x3/2 max pool, four ResNet-like stages.
  Then BN-ReLU, global average pooling and a dense layer. `alpha` is the total
  widening: added channels (additive) or the width factor (multiplicative).
  Layers: `stem_conv`, `stem_bn`, `stage{s}_block{b}`, `final_bn`, `head`.
  `regularization`: dropout before the classifier (0.5 for ImageNet alpha=450),
  stochastic depth, DropBlock.
  """
  num_classes: int
  depth: int = 110
  alpha: float = 48
  bottleneck: bool = False
  widening: str = "additive"
  stem: str = "cifar"
  regularization: Regularization = Regularization()
  remat: bool = False
  scan_blocks: bool = False       # not possible: every block has its own width
  dtype: Any = jnp.float32

  def __post_init__(self):
    super().__post_init__()
    stages = stage_sizes(self.depth, self.bottleneck, self.stem)
    if self.widening not in ("additive", "multiplicative"):
      raise ValueError(f"widening: use 'additive' or 'multiplicative', got {self.widening!r}")
    if self.alpha < (0 if self.widening == "additive" else 1):
      raise ValueError(f"alpha: widths may not shrink; need alpha >= "
                       f"{0 if self.widening == 'additive' else 1} for {self.widening} "
                       f"widening, got {self.alpha}")
    self.regularization.check("PyramidNet", len(stages),
                              ("dropout", "stochastic_depth", "dropblock"))
    if self.scan_blocks:
      raise ValueError("scan_blocks: PyramidNet blocks all differ in width, none repeat; "
                       "use remat=True to save memory")

  @nn.compact
  def __call__(self, x, train: bool = False, pre_logits: bool = False, step=None):
    stages = stage_sizes(self.depth, self.bottleneck, self.stem)
    reg = self.regularization
    x = x.astype(self.dtype)
    start, k, s = (16, 3, 1) if self.stem == "cifar" else (64, 7, 2)
    x = layers.Conv(start, (k, k), (s, s), padding=[((k - 1) // 2, k // 2)] * 2,
                    dtype=self.dtype, name="stem_conv")(x)
    x = layers.batch_norm(train, self.dtype, name="stem_bn")(x)
    if self.stem == "imagenet":
      x = nn.max_pool(nn.relu(x), (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    widths = iter(block_widths(self.alpha, sum(stages), start, self.widening))
    probs = iter(reg.survival_probs(sum(stages)))
    block = nn.remat(PyramidBlock, static_argnums=(2,)) if self.remat else PyramidBlock
    for i, n in enumerate(stages, start=1):
      for b in range(1, n + 1):
        x = block(next(widths), 2 if i > 1 and b == 1 else 1, self.bottleneck, next(probs),
                  reg.in_stage(i), self.dtype, name=f"stage{i}_block{b}")(x, train, None, step)
        x = layers.block_boundary(x)
    x = nn.relu(layers.batch_norm(train, self.dtype, name="final_bn")(x))
    return layers.classifier_head(x, train, self.num_classes, reg.dropout, self.dtype,
                                  pre_logits)


# CIFAR models of Table 4 (CIFAR-10 parameters as published; the final width D_N
# or 4 D_N in brackets, as listed by the official README).
for _depth, _alpha, _bottleneck in (
    (110, 48, False),    # 1.7M  (64)
    (110, 84, False),    # 3.8M  (100)
    (110, 270, False),   # 28.3M (286)
    (164, 270, True),    # 27.0M (1144)
    (200, 240, True),    # 26.6M (1024)
    (236, 220, True),    # 26.8M (944)
    (272, 200, True),    # 26.0M (864)
    # Further rows of the official README (github.com/jhkim89/PyramidNet):
    (164, 48, True),     # 1.7M  (256)
    (164, 84, True)):    # 3.8M  (400)
  registry.register(f"pyramidnet{_depth}_a{_alpha}" + ("_bottleneck" if _bottleneck else ""),
                    PyramidNet, image_size=32, num_classes=10, paper=PAPER,
                    depth=_depth, alpha=_alpha, bottleneck=_bottleneck)

# Multiplicative PyramidNet-110 (official README): alpha is the width factor.
for _name, _alpha in (("4_75", 4.75), ("8", 8), ("27", 27)):   # 1.7M (76), 3.8M (128), 28.3M (432)
  registry.register(f"pyramidnet110_mul_a{_name}", PyramidNet, image_size=32, num_classes=10,
                    paper=PAPER, depth=110, alpha=_alpha, widening="multiplicative")

# ImageNet PyramidNet-200: alpha 300 (62.1M, final width 1456) and alpha 450 with
# dropout 0.5 before the classifier (116.4M, 2056).
for _alpha, _dropout in ((300, 0.0), (450, 0.5)):
  registry.register(f"pyramidnet200_a{_alpha}_imagenet", PyramidNet, image_size=224,
                    num_classes=1000, paper=PAPER, depth=200, alpha=_alpha,
                    bottleneck=True, stem="imagenet", dropout=_dropout)
