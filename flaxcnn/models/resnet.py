"""ResNet and its variants, as one module family.

Papers:
- He, Zhang, Ren, Sun 2015, "Deep Residual Learning for Image Recognition":
  basic and bottleneck blocks, ImageNet and CIFAR networks, shortcut options A/B/C.
- He, Zhang, Ren, Sun 2016, "Identity Mappings in Deep Residual Networks":
  shortcut variants (its Table 1) and activation placements (its Figure 4),
  full pre-activation ResNets.
- Hu, Shen, Sun 2018, "Squeeze-and-Excitation Networks": SE-ResNet.
- Xie et al. 2017 (ResNeXt, see resnext.py) and Zagoruyko & Komodakis 2016
  (WRN-50-2, registered here) are the same network with `groups` /
  `width_per_group`.
- Regularizer hooks: stochastic depth (Huang et al. 2016) and DropBlock
  (Ghiasi et al. 2018).

Everything is one `ResNet` module built from one `ResidualBlock`; the papers'
networks are presets (keyword arguments) registered at the bottom, built by the
factories `imagenet_resnet(depth, ...)` and `cifar_resnet(depth, ...)`:

    model = create_model("resnet110_cifar", placement="full_preact")
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from flaxcnn.models import layers, registry

Dtype = Any

SHORTCUTS = ("A", "B", "C", "none")
SHORTCUT_VARIANTS = ("identity", "constant_scaling", "exclusive_gating",
                     "shortcut_only_gating", "conv_shortcut", "dropout_shortcut")
PLACEMENTS = ("original", "bn_after_addition", "relu_before_addition",
              "relu_only_preact", "full_preact")
PREACT_PLACEMENTS = ("relu_only_preact", "full_preact")


def _one_of(field: str, value, allowed) -> None:
  if value not in allowed:
    raise ValueError(f"{field}: must be one of {list(allowed)}, got {value!r}")


class ResidualBlock(nn.Module):
  """A residual unit: out = shortcut(x) + F(x) (He et al. 2015, 2016).

  Branch F:
  - basic (`bottleneck=False`): two 3x3 convolutions with `planes` channels;
  - bottleneck: 1x1 (reduce to `width`), 3x3 (`groups` groups, the stride),
    1x1 (expand to 4 * planes). By default the stride sits on the 3x3
    convolution as in torchvision's "ResNet v1.5" (the layout of imported
    weights); `stride_in_1x1` puts it on the first 1x1 as the 2015 paper does
    ("v1", 3.8 G multiply-adds for ResNet-50 instead of 4.1 G; same parameters)
    and as the authors' pre-activation code does (resnet-1k-layers).
    width = int(planes * width_per_group / 64) * groups: ResNeXt's
    cardinality x bottleneck width (Xie et al. 2017), or wide bottlenecks
    (WRN-50-2: width_per_group=128).

  `shortcut` (He et al. 2015, Section 3.3 / Table 3), used where shapes change:
  - "A": identity, subsampled and zero-padded (layers.shortcut_a), no parameters;
  - "B": 1x1 conv + BN projection only where the shape changes, else identity;
  - "C": projection on every block;
  - "none": no shortcut at all, the plain network baseline (its Table 2).

  `shortcut_variant` (He et al. 2016, Table 1), applied to every block:
  - "identity": h(x) = x;
  - "constant_scaling": out = 0.5 * shortcut + 0.5 * F (the paper's row where
    F is scaled by 1 - lambda; lambda = 0.5);
  - "exclusive_gating": g = sigmoid(1x1 conv(x)), out = g * F + (1 - g) * shortcut;
  - "shortcut_only_gating": out = F + (1 - g) * shortcut;
  - "conv_shortcut": a 1x1 conv projection on every shortcut;
  - "dropout_shortcut": dropout with rate 0.5 on the shortcut.
  The gates' bias starts at `gate_bias_init` (the paper's best: -6).

  `placement` of BN and ReLU (He et al. 2016, Figure 4), per convolution "unit":
  - "original" (a): conv-BN-ReLU ... conv-BN, add, ReLU;
  - "bn_after_addition" (b): conv-BN-ReLU ... conv, add, BN, ReLU;
  - "relu_before_addition" (c): conv-BN-ReLU ... conv-BN-ReLU, add;
  - "relu_only_preact" (d): ReLU-conv-BN ... ReLU-conv-BN, add;
  - "full_preact" (e): BN-ReLU-conv ... BN-ReLU-conv, add. The block ends with a
    convolution: its output has no activation.
  In the pre-activation forms the first unit's pre-activation is shared with a
  projection shortcut (as in the authors' code), the identity shortcut takes the
  raw input, and (full pre-activation) the projection has no BN.
  `skip_preact` drops the first pre-activation when the input is already
  activated (the first block after an ImageNet stem conv-BN-ReLU-maxpool).

  Squeeze-and-excitation (`se_reduction` > 0, Hu et al. 2018) rescales the branch
  before the addition. Stochastic depth (`survival_prob` < 1) drops the branch
  only, per example or, with `stochastic_depth_per="batch"`, for the whole
  mini-batch without computing it (layers.stochastic_residual). DropBlock (`dropblock_keep_prob` < 1) follows every convolution unit of
  the branch and the shortcut, as Ghiasi et al. do for ResNet-50.
  """
  planes: int
  strides: int = 1
  bottleneck: bool = False
  groups: int = 1
  width_per_group: int = 64
  stride_in_1x1: bool = False
  shortcut: str = "B"
  shortcut_variant: str = "identity"
  placement: str = "original"
  skip_preact: bool = False
  se_reduction: int = 0
  gate_bias_init: float = -6.0
  zero_init_residual: bool = False
  survival_prob: float = 1.0
  stochastic_depth_mode: str = "train_scale"
  stochastic_depth_per: str = "example"
  dropblock_keep_prob: float = 1.0
  dropblock_size: int = 7
  dropblock_per_channel: bool = False
  dtype: Dtype = jnp.float32

  expansion = 4  # bottleneck output channels / planes

  @property
  def out_features(self) -> int:
    return self.planes * (self.expansion if self.bottleneck else 1)

  @nn.compact
  def __call__(self, x, train: bool, survival_prob=None):
    out = self.out_features
    if self.bottleneck:
      width = int(self.planes * self.width_per_group / 64) * self.groups
      s1, s3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
      convs = [(1, width, s1, 1), (3, width, s3, self.groups), (1, out, 1, 1)]
    else:
      convs = [(3, out, self.strides, 1), (3, out, 1, 1)]
    norm = functools.partial(layers.batch_norm, train, self.dtype)

    def dropblock(y):
      if self.dropblock_keep_prob >= 1.0:
        return y
      return layers.DropBlock(self.dropblock_keep_prob, self.dropblock_size,
                              self.dropblock_per_channel)(y, train)

    preact = self.placement in PREACT_PLACEMENTS
    full_preact = self.placement == "full_preact"

    def pre_activation(y):
      return nn.relu(norm()(y) if full_preact else y)

    # Shortcut.
    shape_changes = self.strides != 1 or x.shape[-1] != out
    project = (self.shortcut == "C" or self.shortcut_variant == "conv_shortcut"
               or (self.shortcut == "B" and shape_changes))
    # The first pre-activation belongs to the branch, unless a projection shares it.
    first_preact = preact and not self.skip_preact
    h = pre_activation(x) if first_preact and project else x
    if self.shortcut == "none":
      sc = None
    elif project:
      sc = layers.Projection(out, self.strides, norm=not full_preact,
                             dtype=self.dtype)(h, train)
    else:  # identity; option A zero-pads and subsamples where the shape changes
      sc = layers.shortcut_a(x, out, self.strides)

    variant = self.shortcut_variant
    gate = None
    if sc is not None:
      if variant == "constant_scaling":
        sc = 0.5 * sc
      elif variant in ("exclusive_gating", "shortcut_only_gating"):
        gate = nn.Conv(out, (1, 1), (self.strides, self.strides), dtype=self.dtype,
                       kernel_init=layers.he_normal, name="gate",
                       conv_general_dilated=layers.conv_general_dilated,
                       bias_init=nn.initializers.constant(self.gate_bias_init))(x)
        gate = nn.sigmoid(gate)
        sc = sc * (1.0 - gate)
      elif variant == "dropout_shortcut":
        sc = nn.Dropout(0.5, deterministic=not train)(sc)
      sc = dropblock(sc)

    def branch(mdl, y):
      """The residual branch F (convolution units, SE, the variant's scaling)."""
      for i, (k, features, strides, groups) in enumerate(convs):
        last = i == len(convs) - 1
        if preact and i > 0 or i == 0 and first_preact and not project:
          y = pre_activation(y)
        y = layers.Conv(features, (k, k), (strides, strides),
                        padding=[((k - 1) // 2, k // 2)] * 2,
                        feature_group_count=groups, dtype=self.dtype)(y)
        if not (full_preact or (last and self.placement == "bn_after_addition")):
          zero = last and self.zero_init_residual
          y = norm(scale_init=nn.initializers.zeros if zero else nn.initializers.ones)(y)
        if not preact and (not last or self.placement == "relu_before_addition"):
          y = nn.relu(y)
        y = dropblock(y)
      if self.se_reduction:
        y = layers.SqueezeExcite(max(1, out // self.se_reduction), dtype=self.dtype)(y)
      if sc is not None and variant == "constant_scaling":
        y = 0.5 * y
      elif sc is not None and variant == "exclusive_gating":
        y = y * gate
      return y

    y = layers.stochastic_residual(self, branch, h, sc, train=train,
                                   survival_prob=layers.or_field(survival_prob, self.survival_prob),
                                   mode=self.stochastic_depth_mode,
                                   per=self.stochastic_depth_per)

    if self.placement == "original":
      y = nn.relu(y)
    elif self.placement == "bn_after_addition":
      y = nn.relu(norm()(y))
    return y


class ResNet(nn.Module):
  """Residual network (He et al. 2015), with the variants of He et al. 2016,
  Hu et al. 2018 (SE), Xie et al. 2017 (ResNeXt) as arguments.

  - stem "imagenet": 7x7/2 conv `stem_width`, BN, ReLU, 3x3/2 max pooling;
    stem "cifar": 3x3 conv `stem_width` (+ BN, ReLU for post-activation blocks).
  - stages: `stage_sizes[i]` blocks of `stage_planes[i]` planes; the first block of
    every stage but the first halves the resolution (stride 2).
  - head: for pre-activation placements a final BN+ReLU (full) or ReLU
    (relu-only) before global average pooling, then dropout (`dropout`) and the
    linear classifier.
  See `ResidualBlock` for the block options. Stochastic depth uses block index
  l = 1..L over all blocks of the network; `stochastic_depth_per="batch"` is
  Huang et al.'s form (one draw per block and mini-batch, dropped blocks not
  computed), "example" timm's.
  `remat` recomputes each block's activations in the backward pass;
  `scan_blocks` runs the repeated blocks of a stage (all but its first) under
  `nn.scan`, variables stacked under "stage{i}_scan" (`scan_groups`;
  convert with layers.stack_blocks / unstack_blocks).
  """
  num_classes: int
  stage_sizes: Sequence[int]
  stage_planes: Sequence[int] = (64, 128, 256, 512)
  bottleneck: bool = False
  stem: str = "imagenet"
  stem_width: int = 64
  groups: int = 1
  width_per_group: int = 64
  shortcut: str = "B"
  shortcut_variant: str = "identity"
  placement: str = "original"
  se_reduction: int = 0
  gate_bias_init: float = -6.0
  zero_init_residual: bool = False
  dropout: float = 0.0
  stochastic_depth: float = 1.0
  stochastic_depth_decay: str = "linear"
  stochastic_depth_mode: str = "train_scale"
  stochastic_depth_per: str = "example"
  stride_in_1x1: bool = False
  dropblock_keep_prob: float = 1.0
  dropblock_size: int = 7
  dropblock_per_channel: bool = False
  dropblock_stages: Sequence[int] = ()
  remat: bool = False
  scan_blocks: bool = False
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    _one_of("stem", self.stem, ("imagenet", "cifar"))
    _one_of("shortcut", self.shortcut, SHORTCUTS)
    _one_of("shortcut_variant", self.shortcut_variant, SHORTCUT_VARIANTS)
    _one_of("placement", self.placement, PLACEMENTS)
    _one_of("stochastic_depth_decay", self.stochastic_depth_decay, ("linear", "constant"))
    layers.check_stochastic_depth(self.stochastic_depth_mode, self.stochastic_depth_per)
    if len(self.stage_sizes) != len(self.stage_planes) or not self.stage_sizes:
      raise ValueError(f"stage_sizes: need one block count per entry of stage_planes "
                       f"{tuple(self.stage_planes)}, got {tuple(self.stage_sizes)}")
    if any(n < 1 for n in self.stage_sizes):
      raise ValueError(f"stage_sizes: every stage needs >= 1 block, got {tuple(self.stage_sizes)}")
    if not self.bottleneck and (self.groups != 1 or self.width_per_group != 64):
      raise ValueError("groups: basic blocks support only groups=1 and width_per_group=64; "
                       "use bottleneck=True for ResNeXt / wide bottlenecks")
    if self.groups < 1 or self.width_per_group < 1 or self.se_reduction < 0:
      raise ValueError("groups, width_per_group must be >= 1 and se_reduction >= 0")
    if self.bottleneck and min(self.stage_planes) * self.width_per_group < 64:
      raise ValueError(f"width_per_group: the bottleneck width int(planes * width_per_group / 64)"
                       f" * groups is 0 for planes {min(self.stage_planes)}, width_per_group "
                       f"{self.width_per_group}")
    if not 0.0 < self.stochastic_depth <= 1.0:
      raise ValueError(f"stochastic_depth: final survival probability must be in (0, 1], "
                       f"got {self.stochastic_depth}")
    layers.check_dropblock(self.dropblock_keep_prob, self.dropblock_stages, len(self.stage_sizes))
    if self.shortcut == "none" and self.shortcut_variant != "identity":
      raise ValueError("shortcut_variant: a plain network (shortcut='none') has no shortcut to vary")
    if self.shortcut == "none" and self.stochastic_depth_per == "batch" and self.stochastic_depth < 1:
      raise ValueError("stochastic_depth_per: 'batch' drops whole blocks; a plain network "
                       "(shortcut='none') has no shortcut to keep, use 'example'")
    if self.stride_in_1x1 and not self.bottleneck:
      raise ValueError("stride_in_1x1: only bottleneck blocks have a 1x1 convolution to stride")
    super().__post_init__()

  @property
  def block_survival_probs(self):
    """Stochastic depth survival probability of blocks l = 1..L (Huang et al. 2016)."""
    total = sum(self.stage_sizes)
    return [layers.survival_probability(l, total, self.stochastic_depth,
                                        self.stochastic_depth_decay)
            for l in range(1, total + 1)]

  @property
  def scan_groups(self):
    """(scan_name, block names) of the blocks `scan_blocks` stacks: all but the
    first block of each stage (see layers.stack_blocks / unstack_blocks)."""
    groups, index = [], 0
    for stage, n in enumerate(self.stage_sizes):
      if n > 2:
        groups.append((f"stage{stage + 1}_scan",
                       [f"ResidualBlock_{index + b}" for b in range(1, n)]))
      index += n
    return groups

  @nn.compact
  def __call__(self, x, train: bool = False, pre_logits: bool = False):
    x = x.astype(self.dtype)
    preact = self.placement in PREACT_PLACEMENTS
    if self.stem == "imagenet":
      x = layers.ConvBN(self.stem_width, (7, 7), (2, 2), dtype=self.dtype)(x, train)
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    else:
      x = layers.Conv(self.stem_width, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype)(x)
      if self.placement != "full_preact":  # a pre-activation block starts with BN
        x = layers.batch_norm(train, self.dtype)(x)
      if not preact:                       # ... or with ReLU
        x = nn.relu(x)

    index = 0
    probs = self.block_survival_probs
    for stage, (num_blocks, planes) in enumerate(zip(self.stage_sizes, self.stage_planes)):
      block = functools.partial(
          ResidualBlock, planes=planes, bottleneck=self.bottleneck, groups=self.groups,
          width_per_group=self.width_per_group, stride_in_1x1=self.stride_in_1x1,
          shortcut=self.shortcut, shortcut_variant=self.shortcut_variant,
          placement=self.placement, se_reduction=self.se_reduction,
          gate_bias_init=self.gate_bias_init, zero_init_residual=self.zero_init_residual,
          stochastic_depth_mode=self.stochastic_depth_mode,
          stochastic_depth_per=self.stochastic_depth_per,
          dropblock_keep_prob=(self.dropblock_keep_prob
                               if stage + 1 in self.dropblock_stages else 1.0),
          dropblock_size=self.dropblock_size,
          dropblock_per_channel=self.dropblock_per_channel, dtype=self.dtype)
      names = [f"ResidualBlock_{index + b}" for b in range(num_blocks)]
      stage_probs = probs[index:index + num_blocks]
      # The first block of a stage changes stride or width: never scanned.
      x = layers.repeat_blocks(block, x, train, names[:1], stage_probs[:1],
                               remat=self.remat, strides=2 if stage > 0 else 1,
                               skip_preact=preact and self.stem == "imagenet" and index == 0)
      x = layers.repeat_blocks(block, x, train, names[1:], stage_probs[1:],
                               remat=self.remat, scan=self.scan_blocks,
                               scan_name=f"stage{stage + 1}_scan")
      index += num_blocks

    if self.placement == "full_preact":
      x = nn.relu(layers.batch_norm(train, self.dtype)(x))
    elif self.placement == "relu_only_preact":
      x = nn.relu(x)
    return layers.classifier_head(x, train, self.num_classes, self.dropout, self.dtype,
                                  pre_logits)


# Blocks per stage of the ImageNet ResNets (He et al. 2015, Table 1; 200: He et al. 2016).
IMAGENET_DEPTHS = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
    200: ((3, 24, 36, 3), True),
}


def imagenet_resnet(depth: int, **kwargs) -> ResNet:
  """An ImageNet ResNet-`depth` (18, 34: basic blocks; 50, 101, 152, 200: bottleneck),
  224x224 input, stem 7x7/2 + max pooling, stages of 64/128/256/512 planes
  (He et al. 2015, Table 1). Other `ResNet` fields are passed through."""
  if depth not in IMAGENET_DEPTHS:
    raise ValueError(f"depth: ImageNet ResNet depth must be one of {sorted(IMAGENET_DEPTHS)}, "
                     f"got {depth}")
  stage_sizes, bottleneck = IMAGENET_DEPTHS[depth]
  kwargs.setdefault("bottleneck", bottleneck)
  if kwargs["bottleneck"] != bottleneck:
    raise ValueError(f"bottleneck: ResNet-{depth} uses bottleneck={bottleneck}")
  return ResNet(stage_sizes=stage_sizes, **kwargs)


def cifar_resnet(depth: int, bottleneck: bool = False, **kwargs) -> ResNet:
  """A CIFAR ResNet-`depth` (He et al. 2015, Section 4.2): 3x3 conv stem, three
  stages of n blocks with 16/32/64 planes on 32x32/16x16/8x8 maps.

  depth = 6n + 2 with basic blocks, 9n + 2 with bottleneck blocks (He et al. 2016:
  ResNet-164, -1001, outputs 64/128/256). Defaults: stem width 16, option-A
  shortcuts (the 2015 paper's CIFAR networks). Other `ResNet` fields pass through.
  """
  per_block = 9 if bottleneck else 6
  if depth < per_block + 2 or (depth - 2) % per_block:
    examples = ", ".join(str(per_block * n + 2) for n in (1, 2, 3, 6, 18))
    raise ValueError(f"depth: CIFAR ResNet depth with {'bottleneck' if bottleneck else 'basic'} "
                     f"blocks must be {per_block}n+2 ({examples}, ...), got {depth}")
  n = (depth - 2) // per_block
  kwargs.setdefault("stem", "cifar")
  kwargs.setdefault("stem_width", 16)
  kwargs.setdefault("stage_planes", (16, 32, 64))
  kwargs.setdefault("shortcut", "A")
  return ResNet(stage_sizes=(n,) * len(kwargs["stage_planes"]), bottleneck=bottleneck, **kwargs)


# ----------------------------------------------------------------------------
# Presets.
_HE15 = "He et al. 2015, Deep Residual Learning for Image Recognition"
_HE16 = "He et al. 2016, Identity Mappings in Deep Residual Networks"
_SE = "Hu et al. 2018, Squeeze-and-Excitation Networks"

_imagenet = functools.partial(registry.register, image_size=224, num_classes=1000)
_cifar = functools.partial(registry.register, image_size=32, num_classes=10)

# He et al. 2015, Tables 2-4: ImageNet ResNets (option B), ResNet-34 A/C, and the
# plain nets vs. ResNet-18/34 with option A of Table 2.
for _d in (18, 34, 50, 101, 152):
  _imagenet(f"resnet{_d}", imagenet_resnet, paper=_HE15, depth=_d)
# The paper's own bottleneck ("v1": the stride on the first 1x1 convolution; 3.8 G
# multiply-adds for ResNet-50). The presets above stride the 3x3 (torchvision's
# "v1.5", 4.1 G), the layout of the imported weights.
for _d in (50, 101, 152):
  _imagenet(f"resnet{_d}_v1", imagenet_resnet, paper=_HE15, depth=_d, stride_in_1x1=True)
for _d in (18, 34):
  _imagenet(f"resnet{_d}_a", imagenet_resnet, paper=_HE15, depth=_d, shortcut="A")
_imagenet("resnet34_c", imagenet_resnet, paper=_HE15, depth=34, shortcut="C")
for _d in (18, 34):
  _imagenet(f"plain{_d}", imagenet_resnet, paper=_HE15, depth=_d, shortcut="none")

# He et al. 2015, Table 6 / Figure 6: CIFAR-10 ResNets (option A) and plain nets.
for _d in (20, 32, 44, 56, 110, 1202):
  _cifar(f"resnet{_d}_cifar", cifar_resnet, paper=_HE15, depth=_d)
for _d in (20, 32, 44, 56, 110):
  _cifar(f"plain{_d}_cifar", cifar_resnet, paper=_HE15, depth=_d, shortcut="none")

# He et al. 2016 (authors' code: projection shortcuts where dimensions increase).
# Table 1: shortcut variants, Figure 4 / Table 2: activation placements, on
# ResNet-110 (and ResNet-164 for the placements); Table 3: pre-activation nets.
_cifar("resnet164_cifar", cifar_resnet, paper=_HE16, depth=164, bottleneck=True, shortcut="B")
for _v in SHORTCUT_VARIANTS[1:]:
  _cifar(f"resnet110_cifar_{_v}", cifar_resnet, paper=_HE16, depth=110, shortcut="B",
         shortcut_variant=_v)
for _p in PLACEMENTS[1:-1]:
  _cifar(f"resnet110_cifar_{_p}", cifar_resnet, paper=_HE16, depth=110, shortcut="B",
         placement=_p)
  _cifar(f"resnet164_cifar_{_p}", cifar_resnet, paper=_HE16, depth=164, bottleneck=True,
         shortcut="B", placement=_p)
_cifar("preact_resnet110_cifar", cifar_resnet, paper=_HE16, depth=110, shortcut="B",
       placement="full_preact")
_cifar("preact_resnet164_cifar", cifar_resnet, paper=_HE16, depth=164, bottleneck=True,
       shortcut="B", placement="full_preact")
_cifar("preact_resnet1001_cifar", cifar_resnet, paper=_HE16, depth=1001, bottleneck=True,
       shortcut="B", placement="full_preact")
# The same nets as the authors' code builds them (KaimingHe/resnet-1k-layers,
# resnet-pre-act.lua: the stride on the first 1x1 convolution of a bottleneck).
for _d in (164, 1001):
  _cifar(f"preact_resnet{_d}_cifar_v1", cifar_resnet, paper=_HE16, depth=_d, bottleneck=True,
         shortcut="B", placement="full_preact", stride_in_1x1=True)
# Table 5: ImageNet, original vs. pre-activation ResNet-152 / ResNet-200.
_imagenet("resnet200", imagenet_resnet, paper=_HE16, depth=200)
for _d in (152, 200):
  _imagenet(f"preact_resnet{_d}", imagenet_resnet, paper=_HE16, depth=_d,
            placement="full_preact")

# Zagoruyko & Komodakis 2016 (Wide Residual Networks), ImageNet WRN-50-2 / WRN-101-2:
# bottleneck ResNets with twice the bottleneck width (torchvision wide_resnet*_2).
_WRN = "Zagoruyko & Komodakis 2016, Wide Residual Networks"
for _d in (50, 101):
  _imagenet(f"wrn{_d}_2", imagenet_resnet, paper=_WRN, depth=_d, width_per_group=128)

# Hu et al. 2018: SE-ResNets (SE on the residual branch before the addition, r = 16).
for _d in (50, 101, 152):
  _imagenet(f"se_resnet{_d}", imagenet_resnet, paper=_SE, depth=_d, se_reduction=16)
