"""MBConv, EfficientNet and EfficientNetV2.

- MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear
  Bottlenecks"): the inverted residual block MBConv, expand 1x1 -> depthwise kxk
  -> project 1x1. The residual connects the narrow bottlenecks and the
  projection has no activation (a linear bottleneck).
- EfficientNet (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for
  Convolutional Neural Networks"): the searched B0 network (Table 1) of MBConv
  blocks with squeeze-and-excitation and swish, scaled to B1-B7 by compound
  scaling of width, depth and resolution.
- EfficientNetV2 (Tan & Le 2021, "EfficientNetV2: Smaller Models and Faster
  Training"): Fused-MBConv (expand kxk regular conv -> project 1x1) in the early
  stages, where depthwise convolutions are slow on accelerators.

Details follow the TF reference implementations (tensorflow/tpu efficientnet and
google/automl efficientnetv2): BatchNorm epsilon 1e-3 (momentum 0.99 for
EfficientNet, 0.9 for V2), 'SAME' padding, SE bottleneck of
max(1, int(block_input_channels * se_ratio)) units with swish, channel counts
rounded by `round_filters`, block counts by ceil(depth_mult * repeats), and
stochastic depth ("drop connect") on the residual branch with survival
probability 1 - (1 - p_L) * i / N for block i = 0..N-1 of all N blocks.

Compound scaling: `width_mult` and `depth_mult` are plain model arguments and
the resolution is the input size (the preset's registered `image_size`, which a
config may override), so each dimension can also be scaled alone (paper Fig. 3).
"""
import functools
import math
from typing import Any, List, NamedTuple, Sequence

import flax.linen as nn
import jax.numpy as jnp

from flaxcnn.models import layers, registry
from flaxcnn.models.regularization import Regularization

PAPER_V1 = "Tan & Le 2019"
PAPER_V2 = "Tan & Le 2021"


class Stage(NamedTuple):
  """One row of a block table: `repeats` blocks of the same kind.

  Only the first block of a stage has stride `strides`; the others have stride 1
  and `features` input channels. se_ratio 0 disables squeeze-and-excitation.
  """
  expand_ratio: int
  kernel_size: int
  strides: int
  features: int
  repeats: int
  se_ratio: float = 0.25
  fused: bool = False


# EfficientNet-B0 (Tan & Le 2019, Table 1): stages 2-8 (stage 1 is the 3x3 stem,
# stage 9 the 1x1 head conv, pooling and classifier). MBConv6 k5x5 = Stage(6, 5, ...).
EFFICIENTNET_B0_STAGES = (
    Stage(1, 3, 1, 16, 1),
    Stage(6, 3, 2, 24, 2),
    Stage(6, 5, 2, 40, 2),
    Stage(6, 3, 2, 80, 3),
    Stage(6, 5, 1, 112, 3),
    Stage(6, 5, 2, 192, 4),
    Stage(6, 3, 1, 320, 1),
)

# EfficientNetV2-S (Tan & Le 2021, Table 4); M and L from the official code
# (google/automl efficientnetv2/effnetv2_configs.py). Fused stages have no SE.
_fused = functools.partial(Stage, se_ratio=0.0, fused=True)
EFFICIENTNETV2_S_STAGES = (
    _fused(1, 3, 1, 24, 2),
    _fused(4, 3, 2, 48, 4),
    _fused(4, 3, 2, 64, 4),
    Stage(4, 3, 2, 128, 6),
    Stage(6, 3, 1, 160, 9),
    Stage(6, 3, 2, 256, 15),
)
EFFICIENTNETV2_M_STAGES = (
    _fused(1, 3, 1, 24, 3),
    _fused(4, 3, 2, 48, 5),
    _fused(4, 3, 2, 80, 5),
    Stage(4, 3, 2, 160, 7),
    Stage(6, 3, 1, 176, 14),
    Stage(6, 3, 2, 304, 18),
    Stage(6, 3, 1, 512, 5),
)
EFFICIENTNETV2_L_STAGES = (
    _fused(1, 3, 1, 32, 4),
    _fused(4, 3, 2, 64, 7),
    _fused(4, 3, 2, 96, 7),
    Stage(4, 3, 2, 192, 10),
    Stage(6, 3, 1, 224, 19),
    Stage(6, 3, 2, 384, 25),
    Stage(6, 3, 1, 640, 7),
)

# EfficientNetV2 train and eval image sizes (official configs); the presets are
# registered with the eval size. Progressive learning (V2 paper, Sec. 4 and
# Table 6) grows the train size from 128 to about the train size during training,
# together with the regularization (RandAugment magnitude, mixup alpha, dropout).
EFFICIENTNETV2_IMAGE_SIZES = {   # name: (train, eval)
    "efficientnetv2_s": (300, 384),
    "efficientnetv2_m": (384, 480),
    "efficientnetv2_l": (384, 480),
}
EFFICIENTNETV2_PROGRESSIVE = {   # V2 paper Table 6: (min, max) over training
    "efficientnetv2_s": dict(image_size=(128, 300), randaugment=(5, 15),
                             mixup=(0.0, 0.0), dropout=(0.1, 0.3)),
    "efficientnetv2_m": dict(image_size=(128, 380), randaugment=(5, 20),
                             mixup=(0.0, 0.2), dropout=(0.1, 0.4)),
    "efficientnetv2_l": dict(image_size=(128, 380), randaugment=(5, 25),
                             mixup=(0.0, 0.4), dropout=(0.1, 0.5)),
}


def round_filters(filters: int, width_mult: float, divisor: int = 8) -> int:
  """Channels scaled by `width_mult`, rounded to a multiple of `divisor`, never
  more than 10% below the exact value (round_filters of the TF reference)."""
  scaled = filters * width_mult
  rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * scaled:
    rounded += divisor
  return int(rounded)


def round_repeats(repeats: int, depth_mult: float) -> int:
  """Blocks of a stage scaled by `depth_mult`, rounded up (TF reference)."""
  return int(math.ceil(depth_mult * repeats))


def survival_probabilities(num_blocks: int, final: float = 0.8,
                           decay: str = "linear") -> List[float]:
  """Stochastic depth survival probability of each of `num_blocks` blocks.

  As in the EfficientNet reference ("drop connect"), blocks are indexed
  i = 0..N-1 over all N blocks (the non-residual ones too, which simply do not
  use theirs): linear decay gives p_i = 1 - (1 - final) * i / N, so the first
  block is never dropped; constant decay gives p_i = final.
  """
  return [layers.survival_probability(i, num_blocks, final, decay)
          for i in range(num_blocks)]


def _conv_bn(x, train: bool, features: int, kernel_size: int, strides: int = 1,
             groups: int = 1, act=None, *, dtype, bn: dict, name: str):
  """Conv (no bias, 'SAME') -> BatchNorm -> optional activation, created in the
  calling module (names `<name>_conv`, `<name>_bn`)."""
  x = layers.Conv(features, (kernel_size, kernel_size), (strides, strides),
                  padding="SAME", feature_group_count=groups, dtype=dtype,
                  name=f"{name}_conv")(x)
  x = layers.batch_norm(train, dtype, name=f"{name}_bn", **bn)(x)
  return act(x) if act is not None else x


class MBConv(nn.Module):
  """Mobile inverted bottleneck (Sandler et al. 2018) with squeeze-and-excitation
  (Tan & Le 2019), or Fused-MBConv (Tan & Le 2021) when `fused`.

  MBConv:       [expand 1x1 -> BN -> act] -> depthwise kxk/s -> BN -> act
                -> [SE] -> project 1x1 -> BN       (no activation: linear bottleneck)
  Fused-MBConv: expand kxk/s regular conv -> BN -> act -> [SE] -> project 1x1 -> BN;
                with expand_ratio 1 a single kxk/s conv -> BN -> act [-> SE]
                (the official V2 code would put SE before it; no V2 stage uses it).
  The expansion is skipped when expand_ratio is 1. The residual connection (with
  stochastic depth on the branch) is used only when stride is 1 and the input
  and output channels are equal (and `id_skip`). The SE bottleneck has
  max(1, int(input_channels * se_ratio)) units (input of the block, not of SE).
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  expand_ratio: int = 6
  se_ratio: float = 0.25
  fused: bool = False
  id_skip: bool = True
  survival_prob: float = 1.0
  regularization: Regularization = Regularization()   # its stochastic depth mode and unit
  act: str = "swish"
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool, survival_prob=None, step=None):
    act = layers.activation(self.act)
    unit = functools.partial(_conv_bn, train=train, dtype=self.dtype,
                             bn=dict(momentum=self.bn_momentum, epsilon=self.bn_epsilon))
    in_features = x.shape[-1]
    hidden = in_features * self.expand_ratio
    k, s = self.kernel_size, self.strides

    def branch(mdl, y):
      if self.fused:
        if self.expand_ratio == 1:   # a single kxk conv (with activation)
          y = unit(y, features=self.features, kernel_size=k, strides=s, act=act, name="fused")
        else:
          y = unit(y, features=hidden, kernel_size=k, strides=s, act=act, name="expand")
      else:
        if self.expand_ratio != 1:
          y = unit(y, features=hidden, kernel_size=1, act=act, name="expand")
        y = unit(y, features=hidden, kernel_size=k, strides=s, groups=hidden, act=act,
                 name="depthwise")
      if self.se_ratio > 0:
        y = layers.SqueezeExcite(max(1, int(in_features * self.se_ratio)), act=nn.swish,
                                 dtype=self.dtype, name="se")(y)
      if not (self.fused and self.expand_ratio == 1):
        y = unit(y, features=self.features, kernel_size=1, name="project")  # linear
      return y

    if self.id_skip and s == 1 and in_features == self.features:
      return self.regularization.residual(
          self, branch, x, x, train=train,
          survival_prob=layers.or_field(survival_prob, self.survival_prob))
    return branch(self, x)


# Depthwise separable convolution (MobileNet; the expand-ratio-1 MBConv of
# Sandler et al. 2018): depthwise kxk -> BN -> act -> pointwise 1x1 -> BN.
DepthwiseSeparableConv = functools.partial(MBConv, expand_ratio=1, se_ratio=0.0,
                                           id_skip=False)


class EfficientNet(nn.Module):
  """EfficientNet (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for
  Convolutional Neural Networks").

  Stem 3x3/2 conv (round_filters(stem_features)) -> BN -> swish, the MBConv stages
  of `stages` (channels scaled by `width_mult` and rounded to multiples of
  `depth_divisor`, block counts by ceil(depth_mult * repeats)), head 1x1 conv to
  round_filters(head_features) -> BN -> swish, global average pooling, dropout
  and the classifier. B0 has width_mult = depth_mult = 1 at 224x224; compound
  scaling grows all three together (B1-B7, see the presets), and a config may
  scale any one of them alone.

  `regularization`: dropout before the classifier (0.2 for B0) and stochastic
  depth: the residual branch of block i (0-based over all blocks) is kept with
  probability 1 - (1 - stochastic_depth) * i / N (linear decay, the reference's
  drop connect; 0.8 for the last), or stochastic_depth (constant decay).
  """
  num_classes: int
  stages: Sequence[Stage] = EFFICIENTNET_B0_STAGES
  width_mult: float = 1.0
  depth_mult: float = 1.0
  depth_divisor: int = 8
  stem_features: int = 32
  head_features: int = 1280
  regularization: Regularization = Regularization(dropout=0.2, stochastic_depth=0.8)
  act: str = "swish"
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  remat: bool = False
  scan_blocks: bool = False
  dtype: Any = jnp.float32

  def __post_init__(self):
    super().__post_init__()
    if not self.stages:
      raise ValueError("stages: need at least one stage")
    for st in self.stages:
      st = Stage(*st)
      if st.expand_ratio < 1 or st.repeats < 1 or st.features < 1:
        raise ValueError(f"stages: expand_ratio, repeats and features must be >= 1, got {st}")
      if st.kernel_size < 1 or st.kernel_size % 2 == 0 or st.strides not in (1, 2):
        raise ValueError(f"stages: kernel_size must be odd and strides 1 or 2, got {st}")
      if not 0.0 <= st.se_ratio <= 1.0:
        raise ValueError(f"stages: se_ratio must be in [0, 1], got {st}")
    if self.width_mult <= 0:
      raise ValueError(f"width_mult: must be > 0, got {self.width_mult}")
    if self.depth_mult <= 0:
      raise ValueError(f"depth_mult: must be > 0, got {self.depth_mult}")
    if self.depth_divisor < 1:
      raise ValueError(f"depth_divisor: must be >= 1, got {self.depth_divisor}")
    self.regularization.check("EfficientNet", len(self.stages), ("dropout", "stochastic_depth"))
    layers.activation(self.act)

  @property
  def blocks(self) -> List[Stage]:
    """The scaled blocks, one Stage (repeats=1) per block, in network order."""
    out = []
    for st in map(lambda s: Stage(*s), self.stages):
      features = round_filters(st.features, self.width_mult, self.depth_divisor)
      for j in range(round_repeats(st.repeats, self.depth_mult)):
        out.append(st._replace(features=features, repeats=1,
                               strides=st.strides if j == 0 else 1))
    return out

  @property
  def stage_block_names(self) -> List[List[str]]:
    """The names block1, block2, ... of the blocks of each stage."""
    out, i = [], 0
    for st in map(lambda s: Stage(*s), self.stages):
      n = round_repeats(st.repeats, self.depth_mult)
      out.append([f"block{j}" for j in range(i + 1, i + n + 1)])
      i += n
    return out

  @property
  def scan_groups(self):
    """(scan_name, block names) that `scan_blocks` stacks: blocks 2.. of each stage."""
    return [(f"stage{s + 1}_scan", names[1:])
            for s, names in enumerate(self.stage_block_names) if len(names) > 2]

  @property
  def block_survival_probs(self) -> List[float]:
    """The stochastic depth survival probability of each block (see class doc)."""
    reg = self.regularization
    return survival_probabilities(len(self.blocks), reg.stochastic_depth,
                                  reg.stochastic_depth_decay)

  @nn.compact
  def __call__(self, x, train: bool = False, pre_logits: bool = False, step=None):
    act = layers.activation(self.act)
    bn = dict(momentum=self.bn_momentum, epsilon=self.bn_epsilon)
    rf = functools.partial(round_filters, width_mult=self.width_mult,
                           divisor=self.depth_divisor)
    x = _conv_bn(x, train, rf(self.stem_features), 3, 2, act=act, dtype=self.dtype,
                 bn=bn, name="stem")
    probs, blocks, i = self.block_survival_probs, self.blocks, 0
    for s, names in enumerate(self.stage_block_names):
      b = blocks[i]
      block = functools.partial(
          MBConv, features=b.features, kernel_size=b.kernel_size, expand_ratio=b.expand_ratio,
          se_ratio=b.se_ratio, fused=b.fused, regularization=self.regularization, act=self.act,
          bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, dtype=self.dtype)
      p = probs[i:i + len(names)]
      x = layers.repeat_blocks(block, x, train, names[:1], p[:1], remat=self.remat,
                               strides=b.strides)
      x = layers.repeat_blocks(block, x, train, names[1:], p[1:], remat=self.remat,
                               scan=self.scan_blocks, scan_name=f"stage{s + 1}_scan")
      i += len(names)
    x = _conv_bn(x, train, rf(self.head_features), 1, act=act, dtype=self.dtype,
                 bn=bn, name="head")
    return layers.classifier_head(x, train, self.num_classes, self.regularization.dropout,
                                  self.dtype, pre_logits)


class EfficientNetV2(EfficientNet):
  """EfficientNetV2 (Tan & Le 2021, "EfficientNetV2: Smaller Models and Faster
  Training"): EfficientNet with Fused-MBConv stages first, smaller expansion
  ratios and 3x3 kernels (V2-S of Table 4 by default); the stem has as many
  channels as the first stage (24 for S and M, 32 for L). BN momentum 0.9: the
  paper's Sec. 5.1 says 0.99, its official code (google/automl efficientnetv2,
  hparams bn_momentum) uses 0.9, and the code is what trained the published
  models and their weights; `bn_momentum=0.99` gives the paper's wording.
  """
  stages: Sequence[Stage] = EFFICIENTNETV2_S_STAGES
  stem_features: int = 24
  bn_momentum: float = 0.9


# EfficientNet-B0..B7 (Tan & Le 2019; width, depth, resolution, dropout as in
# the reference implementation's efficientnet_params).
_V1_SCALING = {
    "b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3), "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5),
}
for _b, (_w, _d, _res, _drop) in _V1_SCALING.items():
  registry.register(f"efficientnet_{_b}", EfficientNet, image_size=_res,
                    num_classes=1000, paper=PAPER_V1, width_mult=_w, depth_mult=_d,
                    dropout=_drop)

for _v, _stages, _drop in (("s", EFFICIENTNETV2_S_STAGES, 0.2),
                           ("m", EFFICIENTNETV2_M_STAGES, 0.3),
                           ("l", EFFICIENTNETV2_L_STAGES, 0.4)):
  _name = f"efficientnetv2_{_v}"
  registry.register(_name, EfficientNetV2, image_size=EFFICIENTNETV2_IMAGE_SIZES[_name][1],
                    num_classes=1000, paper=PAPER_V2, stages=_stages,
                    stem_features=_stages[0].features, dropout=_drop)
