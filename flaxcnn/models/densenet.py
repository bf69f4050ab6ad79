"""DenseNet (Huang et al. 2017, "Densely Connected Convolutional Networks").

Inside a dense block every layer receives the concatenation of the feature maps
of all preceding layers of the block and adds `growth_rate` (k) new channels:
after l layers a block that started with c0 channels has c0 + l*k channels.
Between blocks, transition layers (BN-ReLU-conv1x1-avgpool2x2) halve the
resolution and, with compression theta < 1, reduce m channels to floor(theta*m).

The variants of the paper are configurations of one model:
  DenseNet     bottleneck=False, compression=1.0
  DenseNet-B   bottleneck=True  (BN-ReLU-conv1x1 to 4k channels before the 3x3)
  DenseNet-C   compression=0.5
  DenseNet-BC  bottleneck=True, compression=0.5
ImageNet models (Table 1) are DenseNet-BC with a 7x7/2 convolution of 2k = 64
channels and a 3x3/2 max pool as stem; CIFAR models (Table 2) have three dense
blocks of equal size after a 3x3 convolution (see `densenet_cifar`).
"""
import functools
import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from flaxcnn.models import layers, registry
from flaxcnn.models.regularization import Regularization, gather

PAPER = "Huang et al. 2017"
BOTTLENECK_OUTPUT = "dense_bottleneck"   # checkpoint_name of the 1x1 conv output


def bn_relu_conv(x, train: bool, features: int, kernel: int, *, dropout: float, dtype,
                 suffix: str = ""):
  """The pre-activation composite function of DenseNet (Huang et al. 2017):
  BatchNorm, ReLU, convolution, and dropout when `dropout` > 0 (the paper uses
  0.2 after each convolution but the first when training without augmentation).
  Call it in a compact method; it creates `norm{suffix}` and `conv{suffix}` there
  (torchvision's names)."""
  x = nn.relu(layers.batch_norm(train, dtype, name=f"norm{suffix}")(x))
  pad = [((kernel - 1) // 2, kernel // 2)] * 2
  x = layers.Conv(features, (kernel, kernel), padding=pad, dtype=dtype, name=f"conv{suffix}")(x)
  if dropout > 0:
    x = nn.Dropout(dropout, deterministic=not train, name=f"dropout{suffix}")(x)
  return x


@jax.custom_vjp
def _gradient_at_once(x):
  """The identity, whose gradient is materialized as soon as it is computed.

  The gradient of a feature map that several later dense layers read is a sum
  over those layers. Left alone, XLA fuses each layer's BN/ReLU backward into
  that sum at the block's end, so the recomputed concatenation and ReLU mask of
  every layer stay alive until then: quadratic memory again. An optimization
  barrier on each layer's share (Pleiss et al.'s shared gradient storage, in
  effect) lets those buffers go as soon as the layer's backward is done."""
  return x


_gradient_at_once.defvjp(lambda x: (x, None),
                         lambda _, g: (jax.lax.optimization_barrier(g),))


class DenseLayer(nn.Module):
  """One layer of a dense block (Huang et al. 2017): the concatenation of all
  earlier feature maps, [BN-ReLU-conv1x1 to bottleneck_width*k channels
  (DenseNet-B)] BN-ReLU-conv3x3; returns only the k new channels."""
  growth_rate: int
  bottleneck: bool = True
  bottleneck_width: int = 4
  dropout: float = 0.0
  dtype: Any = jnp.float32
  memory_efficient: bool = False   # materialize each input's gradient at once

  @nn.compact
  def __call__(self, features: Sequence[jnp.ndarray], train: bool):
    unit = functools.partial(bn_relu_conv, train=train, dropout=self.dropout, dtype=self.dtype)
    if self.memory_efficient:
      features = [_gradient_at_once(f) for f in features]
    x = jnp.concatenate(features, axis=-1) if len(features) > 1 else features[0]
    if self.bottleneck:
      x = unit(x, features=self.bottleneck_width * self.growth_rate, kernel=1, suffix="1")
      x = checkpoint_name(x, BOTTLENECK_OUTPUT)
    y = unit(x, features=self.growth_rate, kernel=3, suffix=str(1 + self.bottleneck))
    return y.astype(features[0].dtype)


# What a memory-efficient dense layer keeps for the backward pass: 'convs' keeps
# the convolution outputs and recomputes the concatenation, BN and ReLU (Pleiss
# et al. 2017); 'nothing' recomputes the whole layer, convolutions included.
REMAT_POLICIES = {
    "convs": jax.checkpoint_policies.save_only_these_names(BOTTLENECK_OUTPUT),
    "nothing": jax.checkpoint_policies.nothing_saveable,
}


class DenseBlock(nn.Module):
  """`num_layers` dense layers (Huang et al. 2017); each sees all earlier
  feature maps of the block, so c0 input channels grow to c0 + num_layers*k.

  The block keeps the list of feature maps (c0, k, k, ...) and concatenates it
  once per layer and once at the end. With `remat_policy` set, each layer runs
  under `nn.remat` (memory-efficient DenseNet, Pleiss et al. 2017): only the
  policy's outputs and the k new channels of each layer are kept for the
  backward pass, and each layer's share of the gradients is materialized at once
  (`_gradient_at_once`), so activation memory grows linearly, not quadratically,
  in depth.
  """
  num_layers: int
  growth_rate: int
  bottleneck: bool = True
  bottleneck_width: int = 4
  dropout: float = 0.0
  dtype: Any = jnp.float32
  remat_policy: Optional[str] = None   # None, or a key of REMAT_POLICIES

  @nn.compact
  def __call__(self, x, train: bool):
    layer = DenseLayer
    if self.remat_policy is not None:
      layer = nn.remat(DenseLayer, static_argnums=(2,),
                       policy=REMAT_POLICIES[self.remat_policy])
    features = [x]
    for i in range(self.num_layers):
      features.append(layer(self.growth_rate, self.bottleneck, self.bottleneck_width,
                            self.dropout, self.dtype, self.remat_policy is not None,
                            name=f"layer{i + 1}")(features, train))
    return jnp.concatenate(features, axis=-1)


class Transition(nn.Module):
  """Transition layer (Huang et al. 2017): BN-ReLU-conv1x1 to floor(theta*m)
  channels (theta = compression), then 2x2 average pooling with stride 2."""
  compression: float = 1.0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    # floor(theta * m); the epsilon keeps e.g. 0.29 * 100 = 28.999... at 29.
    features = math.floor(self.compression * x.shape[-1] + 1e-9)
    x = bn_relu_conv(x, train, features, 1, dropout=self.dropout, dtype=self.dtype)
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class DenseNet(nn.Module):
  """DenseNet (Huang et al. 2017, "Densely Connected Convolutional Networks").

  stem='imagenet': 7x7/2 conv (stem_features, default 2k) + BN-ReLU + 3x3/2 max
  pool (Table 1). stem='cifar': a single 3x3 conv (stem_features, default 16, or
  2k for DenseNet-BC); the first dense layer's BN-ReLU follows it (Sec. 4.2).
  Then the dense blocks of `block_sizes` layers with transitions between them,
  and a final BN-ReLU, global average pooling and the dense classifier.

  memory_efficient (or remat, the name every family accepts): recompute each
  dense layer's concatenation, BN and ReLU in the backward pass instead of
  storing them (Pleiss et al. 2017, "Memory-Efficient Implementation of
  DenseNets"); same outputs and gradients. remat_policy='convs' keeps the
  convolution outputs (the paper's form); 'nothing' recomputes the convolutions
  too (least memory, most time).
  """
  num_classes: int
  block_sizes: Sequence[int] = (6, 12, 24, 16)
  growth_rate: int = 32
  bottleneck: bool = True
  bottleneck_width: int = 4      # the 1x1 bottleneck conv has bottleneck_width*k channels
  compression: float = 0.5
  stem: str = "imagenet"
  stem_features: Optional[int] = None
  regularization: Regularization = Regularization()   # dropout after every convolution
  dtype: Any = jnp.float32
  memory_efficient: bool = False
  remat: bool = False
  remat_policy: str = "convs"

  def __post_init__(self):
    super().__post_init__()
    if self.stem not in ("imagenet", "cifar"):
      raise ValueError(f"stem: use 'imagenet' or 'cifar', got {self.stem!r}")
    if not self.block_sizes or any(n < 1 for n in self.block_sizes):
      raise ValueError(f"block_sizes: need one or more blocks of >= 1 layers, got {self.block_sizes}")
    if self.growth_rate < 1:
      raise ValueError(f"growth_rate: must be >= 1, got {self.growth_rate}")
    if self.bottleneck_width < 1:
      raise ValueError(f"bottleneck_width: must be >= 1, got {self.bottleneck_width}")
    if not 0.0 < self.compression <= 1.0:
      raise ValueError(f"compression: theta must be in (0, 1], got {self.compression}")
    self.regularization.check("DenseNet", len(self.block_sizes), ("dropout",))
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"remat_policy: use one of {sorted(REMAT_POLICIES)}, got {self.remat_policy!r}")

  @property
  def num_stem_features(self) -> int:
    if self.stem_features is not None:
      return self.stem_features
    is_bc = self.bottleneck and self.compression < 1.0
    return 16 if self.stem == "cifar" and not is_bc else 2 * self.growth_rate

  @nn.compact
  def __call__(self, x, train: bool = False, pre_logits: bool = False, step=None):
    dropout = self.regularization.dropout
    if self.stem == "imagenet":
      x = layers.Conv(self.num_stem_features, (7, 7), (2, 2), padding=[(3, 3), (3, 3)],
                      dtype=self.dtype, name="stem_conv")(x)
      x = nn.relu(layers.batch_norm(train, self.dtype, name="stem_bn")(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      x = layers.Conv(self.num_stem_features, (3, 3), padding=((1, 1), (1, 1)),
                      dtype=self.dtype, name="stem_conv")(x)
    for i, num_layers in enumerate(self.block_sizes):
      x = DenseBlock(num_layers, self.growth_rate, self.bottleneck,
                     self.bottleneck_width, dropout, self.dtype,
                     remat_policy=self.remat_policy if self.memory_efficient or self.remat else None,
                     name=f"block{i + 1}")(x, train)
      if i < len(self.block_sizes) - 1:
        x = Transition(self.compression, dropout, self.dtype,
                       name=f"transition{i + 1}")(x, train)
    x = nn.relu(layers.batch_norm(train, self.dtype, name="final_norm")(x))
    return layers.classifier_head(x, train, self.num_classes, dtype=self.dtype,
                                  pre_logits=pre_logits)


def densenet_cifar(depth: int, growth_rate: int, *, num_classes: int = 10,
                   bottleneck: bool = True, compression: float = 0.5,
                   **kwargs) -> DenseNet:
  """CIFAR DenseNet (L=depth, k=growth_rate) of Huang et al. 2017, Table 2.

  Three dense blocks of equal size: (L-4)/3 layers each, or (L-4)/6 bottleneck
  layers (two convolutions each) with bottleneck=True; the 4 other layers are
  the stem convolution, two transitions and the classifier.
  """
  step = 6 if bottleneck else 3   # 3 blocks of 1 or 2 convolutions per layer
  if depth < step + 4 or (depth - 4) % step:
    raise ValueError(f"depth: CIFAR DenseNet{'-B' if bottleneck else ''} depth must be "
                     f"{step}n+4 ({', '.join(str(step * n + 4) for n in (1, 2, 3))}, ...), got {depth}")
  n = (depth - 4) // step
  return DenseNet(num_classes=num_classes, block_sizes=(n, n, n),
                  growth_rate=growth_rate, bottleneck=bottleneck,
                  compression=compression, stem="cifar", **gather(kwargs))


# CIFAR models of Table 2 (image size 32, 10 classes).
_cifar = functools.partial(registry.register, constructor=densenet_cifar,
                           image_size=32, num_classes=10, paper=PAPER)
for _depth, _k in ((40, 12), (100, 12), (100, 24)):
  _cifar(f"densenet_{_depth}_{_k}", depth=_depth, growth_rate=_k,
         bottleneck=False, compression=1.0)
for _depth, _k in ((100, 12), (250, 24), (190, 40)):
  _cifar(f"densenet_bc_{_depth}_{_k}", depth=_depth, growth_rate=_k,
         bottleneck=True, compression=0.5)

# ImageNet models of Table 1 (DenseNet-BC, k=32), and torchvision's DenseNet-161.
_imagenet = functools.partial(registry.register, constructor=DenseNet,
                              image_size=224, num_classes=1000, paper=PAPER)
for _name, _blocks in (("densenet121", (6, 12, 24, 16)), ("densenet169", (6, 12, 32, 32)),
                       ("densenet201", (6, 12, 48, 32)), ("densenet264", (6, 12, 64, 48))):
  _imagenet(_name, block_sizes=_blocks, growth_rate=32)
_imagenet("densenet161", block_sizes=(6, 12, 36, 24), growth_rate=48)
