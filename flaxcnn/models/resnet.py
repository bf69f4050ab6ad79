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
- Regularizers (`regularization.Regularization`): stochastic depth (Huang et al.
  2016), DropBlock (Ghiasi et al. 2018), dropout before the classifier.

One `ResNet` module is built from post-activation (`PostActBlock`) or
pre-activation (`PreActBlock`) residual units with a `Shortcut`; the papers'
networks are presets (keyword arguments) registered at the bottom, built by the
factories `imagenet_resnet(depth, ...)` and `cifar_resnet(depth, ...)`:

    model = create_model("resnet110_cifar", placement="full_preact")

Layer names follow torchvision's where it has them: `stem_conv`, `stem_bn`,
`stage{s}_block{b}` (1-based) with `conv1`, `bn1`, ... and `shortcut`, then
`final_bn` and `head`.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from flaxcnn.models import layers, registry
from flaxcnn.models.regularization import Regularization, gather

Dtype = Any
ModuleDef = Any

SHORTCUTS = ("A", "B", "C", "none")
SHORTCUT_VARIANTS = ("identity", "constant_scaling", "exclusive_gating",
                     "shortcut_only_gating", "conv_shortcut", "dropout_shortcut")
PLACEMENTS = ("original", "bn_after_addition", "relu_before_addition",
              "relu_only_preact", "full_preact")
PREACT_PLACEMENTS = ("relu_only_preact", "full_preact")


def _one_of(field: str, value, allowed) -> None:
  if value not in allowed:
    raise ValueError(f"{field}: must be one of {list(allowed)}, got {value!r}")


class Shortcut(nn.Module):
  """The shortcut h(x) of a residual unit, and the factor of its branch.

  `kind` (He et al. 2015, Section 3.3 / Table 3), used where shapes change:
  "A": identity, subsampled and zero-padded (layers.shortcut_a), no parameters;
  "B": 1x1 conv (+ BN) projection only where the shape changes, else identity;
  "C": projection on every block; "none": no shortcut, the plain network (Table 2).

  `variant` (He et al. 2016, Table 1), on every block: "identity"; "constant_scaling"
  (0.5 shortcut + 0.5 F); "exclusive_gating" (g = sigmoid(1x1 conv(x)),
  g F + (1 - g) shortcut); "shortcut_only_gating" (F + (1 - g) shortcut);
  "conv_shortcut" (a 1x1 projection everywhere); "dropout_shortcut" (dropout 0.5
  without the inverted-dropout rescaling, so the shortcut is 0.5 x in expectation, the
  paper's reading of it as constant scaling with lambda = 0.5 (Section 3.1); 0.5 x at
  inference).
  The gates' bias starts at `gate_bias_init` (the paper's best: -6).
  """
  features: int
  strides: int = 1
  kind: str = "B"
  variant: str = "identity"
  norm: bool = True              # BN after the projection (not in full pre-activation)
  gate_bias_init: float = -6.0
  dtype: Dtype = jnp.float32

  def projects(self, in_features: int) -> bool:
    changes = self.strides != 1 or in_features != self.features
    return (self.kind == "C" or self.variant == "conv_shortcut"
            or (self.kind == "B" and changes))

  @nn.compact
  def __call__(self, x, h, train: bool):
    """(shortcut, factor of the branch or None) for block input `x`; a projection
    takes `h`, the input as pre-activated by the block (x itself in post-activation)."""
    if self.kind == "none":
      return None, None
    s = (self.strides, self.strides)
    if self.projects(x.shape[-1]):
      sc = layers.Conv(self.features, (1, 1), s, dtype=self.dtype, name="conv")(h)
      if self.norm:
        sc = layers.batch_norm(train, self.dtype, name="bn")(sc)
    else:
      sc = layers.shortcut_a(x, self.features, self.strides)
    if self.variant == "constant_scaling":
      return 0.5 * sc, 0.5
    if self.variant in ("exclusive_gating", "shortcut_only_gating"):
      gate = nn.sigmoid(nn.Conv(self.features, (1, 1), s, dtype=self.dtype, name="gate",
                                kernel_init=layers.he_normal,
                                conv_general_dilated=layers.conv_general_dilated,
                                bias_init=nn.initializers.constant(self.gate_bias_init))(x))
      return sc * (1.0 - gate), gate if self.variant == "exclusive_gating" else None
    if self.variant == "dropout_shortcut":   # not rescaled: 0.5 shortcut in expectation
      sc = 0.5 * nn.Dropout(0.5, deterministic=not train, name="dropout")(sc)
    return sc, None


class _Unit(nn.Module):
  """What the two residual units share: the branch's convolutions, SE, the shortcut.

  Branch F: basic (`bottleneck=False`): two 3x3 convolutions with `planes`
  channels; bottleneck: 1x1 (reduce to `width`), 3x3 (`groups` groups), 1x1
  (expand to 4 * planes). The stride sits on the 3x3 convolution as in
  torchvision's "ResNet v1.5" (the layout of imported weights); `stride_in_1x1`
  puts it on the first 1x1 as the 2015 paper and the authors' pre-activation
  code do ("v1", 3.8 G multiply-adds for ResNet-50 instead of 4.1 G).
  width = int(planes * width_per_group / 64) * groups: ResNeXt's cardinality x
  bottleneck width (Xie et al. 2017), or wide bottlenecks (WRN-50-2).
  Squeeze-and-excitation (`se_reduction` > 0, Hu et al. 2018) rescales the branch
  before the addition. Stochastic depth drops the branch only; DropBlock follows
  every convolution unit of the branch and the shortcut, as Ghiasi et al. do.
  `shortcut` is a `Shortcut` with its kind and variant set (a module factory).
  """
  planes: int
  strides: int = 1
  bottleneck: bool = False
  groups: int = 1
  width_per_group: int = 64
  stride_in_1x1: bool = False
  shortcut: ModuleDef = Shortcut
  se_reduction: int = 0
  zero_init_residual: bool = False   # the branch's last BN scale starts at 0
  survival_prob: float = 1.0
  regularization: Regularization = Regularization()
  dtype: Dtype = jnp.float32

  expansion = 4  # bottleneck output channels / planes

  @property
  def out_features(self) -> int:
    return self.planes * (self.expansion if self.bottleneck else 1)

  @property
  def convs(self):
    """(kernel, features, strides, groups) of the branch's convolutions."""
    out = self.out_features
    if not self.bottleneck:
      return [(3, out, self.strides, 1), (3, out, 1, 1)]
    width = int(self.planes * self.width_per_group / 64) * self.groups
    s1, s3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
    return [(1, width, s1, 1), (3, width, s3, self.groups), (1, out, 1, 1)]

  def conv(self, i: int, y):
    k, features, strides, groups = self.convs[i]
    return layers.Conv(features, (k, k), (strides, strides), padding=[((k - 1) // 2, k // 2)] * 2,
                       feature_group_count=groups, dtype=self.dtype, name=f"conv{i + 1}")(y)

  def norm(self, train: bool, name: str, zero: bool = False):
    return layers.batch_norm(train, self.dtype, name=name, scale_init=(
        nn.initializers.zeros if zero and self.zero_init_residual else nn.initializers.ones))

  def make_shortcut(self, norm: bool = True) -> Shortcut:
    return self.shortcut(self.out_features, self.strides, norm=norm, dtype=self.dtype,
                         name="shortcut")

  def apply_shortcut(self, shortcut: Shortcut, x, h, train: bool, step):
    """(shortcut, the branch's factor): DropBlock follows the shortcut too."""
    sc, factor = shortcut(x, h, train)
    if sc is not None:
      sc = self.regularization.dropblock(sc, train, step, "shortcut_dropblock")
    return sc, factor

  def excite_and_scale(self, y, factor):
    """The end of the branch: SE, then the shortcut variant's factor."""
    if self.se_reduction:
      y = layers.SqueezeExcite(max(1, self.out_features // self.se_reduction),
                               dtype=self.dtype, name="se")(y)
    return y if factor is None else y * factor

  def add(self, branch, h, sc, train: bool, survival_prob):
    return self.regularization.residual(
        self, branch, h, sc, train=train,
        survival_prob=layers.or_field(survival_prob, self.survival_prob))


class PostActBlock(_Unit):
  """A post-activation residual unit (He et al. 2015; He et al. 2016, Figure 4 a-c).

  `placement`: "original" (a): conv-BN-ReLU ... conv-BN, add, ReLU;
  "bn_after_addition" (b): conv-BN-ReLU ... conv, add, BN, ReLU;
  "relu_before_addition" (c): conv-BN-ReLU ... conv-BN-ReLU, add.
  """
  placement: str = "original"

  @nn.compact
  def __call__(self, x, train: bool, survival_prob=None, step=None):
    reg, n = self.regularization, len(self.convs)
    sc, factor = self.apply_shortcut(self.make_shortcut(), x, x, train, step)

    def branch(mdl, y):   # mdl: this block, as stochastic depth hands it over
      for i in range(n):
        last = i == n - 1
        y = mdl.conv(i, y)
        if not (last and self.placement == "bn_after_addition"):
          y = mdl.norm(train, f"bn{i + 1}", zero=last)(y)
        if not last or self.placement == "relu_before_addition":
          y = nn.relu(y)
        y = reg.dropblock(y, train, step, f"dropblock{i + 1}")
      return mdl.excite_and_scale(y, factor)

    y = self.add(branch, x, sc, train, survival_prob)
    if self.placement == "original":
      return nn.relu(y)
    if self.placement == "bn_after_addition":
      return nn.relu(self.norm(train, f"bn{n}")(y))
    return y


class PreActBlock(_Unit):
  """A pre-activation residual unit (He et al. 2016, Figure 4 d-e).

  `full` (e): BN-ReLU-conv ... BN-ReLU-conv, add; the block ends with a
  convolution, its output has no activation. Not `full` (d, "ReLU-only
  pre-activation"): ReLU-conv-BN ... ReLU-conv-BN, add.
  The first unit's pre-activation is shared with a projection shortcut (as in the
  authors' code), the identity shortcut takes the raw input, and (full) the
  projection has no BN. `skip_preact` drops the first pre-activation when the
  input is already activated (the first block after an ImageNet stem).
  """
  full: bool = True
  skip_preact: bool = False

  @nn.compact
  def __call__(self, x, train: bool, survival_prob=None, step=None):
    reg, n = self.regularization, len(self.convs)

    def preact(mdl, y, i):
      return nn.relu(mdl.norm(train, f"bn{i + 1}")(y) if self.full else y)

    shortcut = self.make_shortcut(norm=not self.full)
    project = shortcut.projects(x.shape[-1])
    first = not self.skip_preact
    h = preact(self, x, 0) if first and project else x
    sc, factor = self.apply_shortcut(shortcut, x, h, train, step)

    def branch(mdl, y):   # mdl: this block, as stochastic depth hands it over
      for i in range(n):
        if i > 0 or (first and not project):
          y = preact(mdl, y, i)
        y = mdl.conv(i, y)
        if not self.full:
          y = mdl.norm(train, f"bn{i + 1}", zero=i == n - 1)(y)
        y = reg.dropblock(y, train, step, f"dropblock{i + 1}")
      return mdl.excite_and_scale(y, factor)

    return self.add(branch, h, sc, train, survival_prob)


def residual_block(placement: str = "original", **fields) -> _Unit:
  """The residual unit of `placement` (see PLACEMENTS) with its `fields`; a
  `shortcut` given as a kind ("A", "B", "C", "none") becomes a `Shortcut`."""
  _one_of("placement", placement, PLACEMENTS)
  if isinstance(fields.get("shortcut", Shortcut), str):
    fields["shortcut"] = functools.partial(Shortcut, kind=fields["shortcut"],
                                           variant=fields.pop("shortcut_variant", "identity"))
  if placement in PREACT_PLACEMENTS:
    return PreActBlock(full=placement == "full_preact", **fields)
  return PostActBlock(placement=placement, **fields)


class ResNet(nn.Module):
  """Residual network (He et al. 2015), with the variants of He et al. 2016,
  Hu et al. 2018 (SE), Xie et al. 2017 (ResNeXt) as arguments.

  - stem "imagenet": 7x7/2 conv `stem_width`, BN, ReLU, 3x3/2 max pooling;
    stem "cifar": 3x3 conv `stem_width` (+ BN, ReLU for post-activation blocks).
  - stages: `stage_sizes[i]` blocks of `stage_planes[i]` planes; the first block of
    every stage but the first halves the resolution (stride 2).
  - head: for pre-activation placements a final BN+ReLU (full) or ReLU
    (relu-only) before global average pooling, then dropout and the classifier.
  Blocks: `PostActBlock` or `PreActBlock` by `placement`, with a `Shortcut` of
  kind `shortcut` and `shortcut_variant`. `regularization`: stochastic depth over
  the blocks l = 1..L of the network, DropBlock in its stages, dropout before the
  classifier.
  `remat` recomputes each block's activations in the backward pass;
  `scan_blocks` runs the repeated blocks of a stage (all but its first) under
  `nn.scan`, variables stacked under "stage{s}_scan" (`scan_groups`;
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
  stride_in_1x1: bool = False
  shortcut: str = "B"
  shortcut_variant: str = "identity"
  gate_bias_init: float = -6.0
  placement: str = "original"
  se_reduction: int = 0
  zero_init_residual: bool = False
  regularization: Regularization = Regularization()
  remat: bool = False
  scan_blocks: bool = False
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    _one_of("stem", self.stem, ("imagenet", "cifar"))
    _one_of("shortcut", self.shortcut, SHORTCUTS)
    _one_of("shortcut_variant", self.shortcut_variant, SHORTCUT_VARIANTS)
    _one_of("placement", self.placement, PLACEMENTS)
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
    reg = self.regularization
    reg.check("ResNet", len(self.stage_sizes), ("dropout", "stochastic_depth", "dropblock"))
    if self.shortcut == "none" and self.shortcut_variant != "identity":
      raise ValueError("shortcut_variant: a plain network (shortcut='none') has no shortcut to vary")
    if self.shortcut == "none" and reg.stochastic_depth_per == "batch" and reg.stochastic_depth < 1:
      raise ValueError("stochastic_depth_per: 'batch' drops whole blocks; a plain network "
                       "(shortcut='none') has no shortcut to keep, use 'example'")
    if self.stride_in_1x1 and not self.bottleneck:
      raise ValueError("stride_in_1x1: only bottleneck blocks have a 1x1 convolution to stride")
    super().__post_init__()

  @property
  def block_survival_probs(self):
    """Stochastic depth survival probability of blocks l = 1..L (Huang et al. 2016)."""
    return self.regularization.survival_probs(sum(self.stage_sizes))

  @property
  def block_names(self):
    """The blocks' names, per stage: stage{s}_block{b}."""
    return [[f"stage{s}_block{b}" for b in range(1, n + 1)]
            for s, n in enumerate(self.stage_sizes, start=1)]

  @property
  def scan_groups(self):
    """(scan_name, block names) of the blocks `scan_blocks` stacks: all but the
    first block of each stage (see layers.stack_blocks / unstack_blocks)."""
    return [(f"stage{s}_scan", names[1:])
            for s, names in enumerate(self.block_names, start=1) if len(names) > 2]

  def block(self, stage: int):
    """The block class of `stage` (1-based) with its fields set."""
    preact = self.placement in PREACT_PLACEMENTS
    kind = dict(full=self.placement == "full_preact") if preact else dict(
        placement=self.placement)
    shortcut = functools.partial(Shortcut, kind=self.shortcut, variant=self.shortcut_variant,
                                 gate_bias_init=self.gate_bias_init)
    return functools.partial(
        PreActBlock if preact else PostActBlock, planes=self.stage_planes[stage - 1],
        bottleneck=self.bottleneck, groups=self.groups, width_per_group=self.width_per_group,
        stride_in_1x1=self.stride_in_1x1, shortcut=shortcut, se_reduction=self.se_reduction,
        zero_init_residual=self.zero_init_residual,
        regularization=self.regularization.in_stage(stage), dtype=self.dtype, **kind)

  def apply_stem(self, x, train: bool):
    preact = self.placement in PREACT_PLACEMENTS
    if self.stem == "imagenet":
      x = layers.Conv(self.stem_width, (7, 7), (2, 2), padding=[(3, 3), (3, 3)],
                      dtype=self.dtype, name="stem_conv")(x)
      x = nn.relu(layers.batch_norm(train, self.dtype, name="stem_bn")(x))
      return nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    x = layers.Conv(self.stem_width, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                    name="stem_conv")(x)
    if self.placement != "full_preact":  # a pre-activation block starts with BN
      x = layers.batch_norm(train, self.dtype, name="stem_bn")(x)
    return x if preact else nn.relu(x)  # ... or with ReLU

  @nn.compact
  def __call__(self, x, train: bool = False, pre_logits: bool = False, step=None):
    x = self.apply_stem(x.astype(self.dtype), train)
    preact = self.placement in PREACT_PLACEMENTS
    probs, index = self.block_survival_probs, 0
    for stage, names in enumerate(self.block_names, start=1):
      block, p = self.block(stage), probs[index:index + len(names)]
      # The first block of a stage changes stride or width: never scanned.
      first = dict(skip_preact=self.stem == "imagenet" and index == 0) if preact else {}
      x = layers.repeat_blocks(block, x, train, names[:1], p[:1], step=step, remat=self.remat,
                               strides=2 if stage > 1 else 1, **first)
      x = layers.repeat_blocks(block, x, train, names[1:], p[1:], step=step, remat=self.remat,
                               scan=self.scan_blocks, scan_name=f"stage{stage}_scan")
      index += len(names)
    if self.placement == "full_preact":
      x = nn.relu(layers.batch_norm(train, self.dtype, name="final_bn")(x))
    elif self.placement == "relu_only_preact":
      x = nn.relu(x)
    return layers.classifier_head(x, train, self.num_classes, self.regularization.dropout,
                                  self.dtype, pre_logits)


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
  return ResNet(stage_sizes=stage_sizes, **gather(kwargs))


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
  return ResNet(stage_sizes=(n,) * len(kwargs["stage_planes"]), bottleneck=bottleneck,
                **gather(kwargs))


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
# Table 5: ImageNet, original vs. pre-activation ResNet-152 / ResNet-200; the "_v1"
# forms stride the first 1x1 convolution, as the authors' code (the table's layout).
_imagenet("resnet200", imagenet_resnet, paper=_HE16, depth=200)
_imagenet("resnet200_v1", imagenet_resnet, paper=_HE16, depth=200, stride_in_1x1=True)
for _d in (152, 200):
  _imagenet(f"preact_resnet{_d}", imagenet_resnet, paper=_HE16, depth=_d,
            placement="full_preact")
  _imagenet(f"preact_resnet{_d}_v1", imagenet_resnet, paper=_HE16, depth=_d,
            placement="full_preact", stride_in_1x1=True)

# Zagoruyko & Komodakis 2016 (Wide Residual Networks), ImageNet WRN-50-2 / WRN-101-2:
# bottleneck ResNets with twice the bottleneck width (torchvision wide_resnet*_2).
_WRN = "Zagoruyko & Komodakis 2016, Wide Residual Networks"
for _d in (50, 101):
  _imagenet(f"wrn{_d}_2", imagenet_resnet, paper=_WRN, depth=_d, width_per_group=128)

# Hu et al. 2018: SE-ResNets (SE on the residual branch before the addition, r = 16).
# The "_v1" forms stride the first 1x1 convolution, as the authors' SE-ResNet-50
# prototxt (conv3_1_1x1_reduce): Table 2's 3.86 / 3.87 GFLOPs are that layout's.
for _d in (50, 101, 152):
  _imagenet(f"se_resnet{_d}", imagenet_resnet, paper=_SE, depth=_d, se_reduction=16)
  _imagenet(f"se_resnet{_d}_v1", imagenet_resnet, paper=_SE, depth=_d, se_reduction=16,
            stride_in_1x1=True)
