"""Building blocks shared by every model family.

Conventions (all families follow them):
- Models are linen modules called as `model(x, train=...)` on NHWC inputs.
- `dtype` is the computation dtype (float32 or bfloat16); parameters are float32.
- Convolutions have no bias when a BatchNorm follows; kernels use He (fan-out)
  initialization as in He et al. 2015.
- Randomness (dropout, stochastic depth, DropBlock) uses the 'dropout' RNG stream
  and is the identity when `train=False`.
- Regularizer strength that follows a schedule during training (DropBlock's
  keep probability) is read from the 'schedule' collection, which the training
  step fills with the current strength in [0, 1] (see `schedule_strength`).
"""
import functools
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
ModuleDef = Any

he_normal = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

# The conv used everywhere: no bias (BatchNorm follows), He initialization.
Conv = functools.partial(nn.Conv, use_bias=False, kernel_init=he_normal)


def batch_norm(train: bool, dtype: Dtype = jnp.float32, **kwargs) -> nn.BatchNorm:
  """A BatchNorm module (Ioffe & Szegedy 2015) in training or inference mode.

  Momentum 0.9 and epsilon 1e-5 as in the reference ResNet implementations.
  Use inside a compact method: `x = batch_norm(train, self.dtype)(x)`.
  """
  kwargs.setdefault("momentum", 0.9)
  kwargs.setdefault("epsilon", 1e-5)
  return nn.BatchNorm(use_running_average=not train, dtype=dtype, **kwargs)


def activation(name: str) -> Callable:
  """Activation by name: relu, swish/silu (Ramachandran et al. 2017), ..."""
  table = {"relu": nn.relu, "swish": nn.swish, "silu": nn.swish,
           "relu6": nn.relu6, "gelu": nn.gelu, "identity": lambda x: x}
  if name not in table:
    raise ValueError(f"activation {name!r} is unknown; use one of {sorted(table)}")
  return table[name]


class ConvBN(nn.Module):
  """Conv -> BatchNorm -> optional activation (the standard CNN unit)."""
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  groups: int = 1
  act: Optional[Callable] = nn.relu
  bn_zero_init: bool = False   # zero-init the BN scale (last BN of a residual branch)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    pad = [((k - 1) // 2, k // 2) for k in self.kernel_size]
    x = Conv(self.features, tuple(self.kernel_size), tuple(self.strides),
             padding=pad, feature_group_count=self.groups, dtype=self.dtype)(x)
    scale_init = nn.initializers.zeros if self.bn_zero_init else nn.initializers.ones
    x = batch_norm(train, self.dtype, scale_init=scale_init)(x)
    return self.act(x) if self.act is not None else x


def shortcut_a(x, features: int, strides: int):
  """Option-A shortcut (He et al. 2015): identity, subsampled by striding, with
  zero channels appended for the new features. It adds no parameters."""
  if strides > 1:
    x = x[:, ::strides, ::strides, :]
  extra = features - x.shape[-1]
  if extra < 0:
    raise ValueError(f"shortcut A cannot reduce channels ({x.shape[-1]} -> {features})")
  if extra:
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra)))
  return x


class Projection(nn.Module):
  """Option-B/C shortcut (He et al. 2015): 1x1 convolution + BatchNorm."""
  features: int
  strides: int = 1
  norm: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = Conv(self.features, (1, 1), (self.strides, self.strides),
             dtype=self.dtype)(x)
    if self.norm:
      x = batch_norm(train, self.dtype)(x)
    return x


class SqueezeExcite(nn.Module):
  """Squeeze-and-Excitation (Hu et al. 2018).

  Global average pooling (squeeze), a bottleneck of `hidden` units and a sigmoid
  gate per channel (excitation); the output is the input times the gate.
  """
  hidden: int
  act: Callable = nn.relu
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = nn.Conv(self.hidden, (1, 1), dtype=self.dtype, name="reduce")(s)
    s = self.act(s)
    s = nn.Conv(x.shape[-1], (1, 1), dtype=self.dtype, name="expand")(s)
    return x * nn.sigmoid(s)


def survival_probability(block: int, num_blocks: int, final: float,
                         decay: str = "linear") -> float:
  """Stochastic depth survival probability p_l of block l in 1..L.

  Linear decay (Huang et al. 2016): p_l = 1 - l/L (1 - p_L); constant: p_l = p_L.
  """
  if not 0.0 < final <= 1.0:
    raise ValueError(f"stochastic depth: final survival probability must be in (0, 1], got {final}")
  if decay == "linear":
    return 1.0 - block / num_blocks * (1.0 - final)
  if decay == "constant":
    return final
  raise ValueError(f"stochastic depth decay {decay!r} is unknown; use 'linear' or 'constant'")


class StochasticDepth(nn.Module):
  """Drops a whole residual branch with probability 1 - p (Huang et al. 2016).

  mode='train_scale': divide the kept branch by p during training (identity at
  inference), like inverted dropout. mode='inference_scale': the paper's form,
  the branch is kept unscaled in training and multiplied by p at inference.
  Apply it to the residual branch only, never to the shortcut.
  """
  survival_prob: float = 1.0
  mode: str = "train_scale"

  @nn.compact
  def __call__(self, branch, train: bool):
    p = self.survival_prob
    if self.mode not in ("train_scale", "inference_scale"):
      raise ValueError(f"stochastic depth mode {self.mode!r}: use 'train_scale' or 'inference_scale'")
    if p >= 1.0:
      return branch
    if not train:
      return branch * p if self.mode == "inference_scale" else branch
    rng = self.make_rng("dropout")
    keep = jax.random.bernoulli(rng, p, (branch.shape[0],) + (1,) * (branch.ndim - 1))
    scale = 1.0 / p if self.mode == "train_scale" else 1.0
    return jnp.where(keep, branch * jnp.asarray(scale, branch.dtype), 0).astype(branch.dtype)


def schedule_strength(module: nn.Module) -> jnp.ndarray:
  """The current regularization strength in [0, 1] from the 'schedule' collection.

  The training step sets every 'strength' leaf of that collection (for example to
  the fraction of training done, for DropBlock's linear keep_prob schedule). When
  the collection is absent the strength is 1 (the regularizer's full target).
  """
  if module.is_initializing() or module.has_variable("schedule", "strength"):
    return module.variable("schedule", "strength",
                           lambda: jnp.ones((), jnp.float32)).value
  return jnp.ones((), jnp.float32)


class DropBlock(nn.Module):
  """DropBlock (Ghiasi et al. 2018): drops contiguous block_size x block_size
  regions, in all channels at once (or per channel), then renormalizes.

  gamma = (1 - keep_prob) / block_size^2 * feat^2 / (feat - block_size + 1)^2,
  sampled for block centres in the valid region. The drop rate is scaled by the
  'schedule' strength, so keep_prob goes linearly from 1 to its target when the
  training step feeds the fraction of training done (fixed when it feeds 1).
  """
  keep_prob: float = 0.9
  block_size: int = 7
  per_channel: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    strength = schedule_strength(self)
    if not train or self.keep_prob >= 1.0:
      return x
    n, h, w, c = x.shape
    bs = min(self.block_size, h, w)
    drop = (1.0 - self.keep_prob) * strength
    gamma = drop / (bs * bs) * (h * w) / ((h - bs + 1) * (w - bs + 1))
    rng = self.make_rng("dropout")
    shape = (n, h, w, c if self.per_channel else 1)
    # Seeds only where the whole block fits inside the feature map.
    valid = jnp.zeros((h, w), bool).at[(bs - 1) // 2:h - bs // 2,
                                       (bs - 1) // 2:w - bs // 2].set(True)
    seeds = jax.random.bernoulli(rng, gamma, shape) & valid[None, :, :, None]
    blocks = nn.max_pool(seeds.astype(jnp.float32), (bs, bs), strides=(1, 1),
                         padding=((bs // 2, (bs - 1) // 2), (bs // 2, (bs - 1) // 2)))
    mask = 1.0 - blocks
    scale = mask.size / jnp.maximum(mask.sum(), 1.0)
    return (x * (mask * scale).astype(x.dtype)).astype(x.dtype)


class Classifier(nn.Module):
  """Global average pooling, optional dropout, and the final dense layer."""
  num_classes: int
  dropout: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = jnp.mean(x, axis=(1, 2))
    if self.dropout > 0:
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return x.astype(jnp.float32)
