"""Building blocks shared by every model family.

Conventions (all families follow them):
- Models are linen modules called as `model(x, train=...)` on NHWC inputs.
- `dtype` is the computation dtype (float32 or bfloat16); parameters are float32.
- Convolutions have no bias when a BatchNorm follows; kernels use He (fan-out)
  initialization as in He et al. 2015.
- Randomness (dropout, stochastic depth, DropBlock) uses the 'dropout' RNG stream
  and is the identity when `train=False`.
- The regularizers' settings are one `regularization.Regularization` value per
  model; a regularizer that follows a schedule over training (DropBlock's keep
  probability) computes it from the `step` the model is called with.
"""
import functools
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from flaxcnn import backend
from flaxcnn.backend import block_boundary  # noqa: F401 (the families' name for it)

Dtype = Any
ModuleDef = Any

he_normal = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

CONV_OUTPUT = "conv_output"   # checkpoint_name of every convolution's output
_SAVE_CONV_OUTPUTS = jax.checkpoint_policies.save_only_these_names(CONV_OUTPUT)


def conv_general_dilated(*args, **kwargs):
  """`backend.conv_general_dilated` (the CPU-tuned convolution when
  `flaxcnn.backend.configure()` is on, else `jax.lax`'s), its output named
  `CONV_OUTPUT` for remat policies."""
  return checkpoint_name(backend.conv_general_dilated(*args, **kwargs), CONV_OUTPUT)


# The conv used everywhere: no bias (BatchNorm follows), He initialization.
Conv = functools.partial(nn.Conv, use_bias=False, kernel_init=he_normal,
                         conv_general_dilated=conv_general_dilated)


def batch_norm(train: bool, dtype: Dtype = jnp.float32, **kwargs) -> nn.BatchNorm:
  """A BatchNorm module (Ioffe & Szegedy 2015) in training or inference mode.

  Momentum 0.9 and epsilon 1e-5 as in the reference ResNet implementations.
  Use inside a compact method: `x = batch_norm(train, self.dtype)(x)`.
  """
  kwargs.setdefault("momentum", 0.9)
  kwargs.setdefault("epsilon", 1e-5)
  return BatchNorm(use_running_average=not train, dtype=dtype, **kwargs)


class BatchNorm(nn.BatchNorm):
  """flax's `nn.BatchNorm` (same variables, same forward values); in training
  with the CPU tuning on, its statistics and gradients come from
  `backend.batch_norm_train`, whose closed-form backward pass reads the
  activations fewer times."""

  @nn.compact
  def __call__(self, x, use_running_average=None, *, mask=None):
    train = not nn.merge_param("use_running_average", self.use_running_average,
                               use_running_average)
    if not (train and backend.tuned() and mask is None and self.axis in (-1, x.ndim - 1)
            and self.use_scale and self.use_bias and self.use_fast_variance
            and self.axis_name is None and self.force_float32_reductions
            and not self.is_initializing()):
      return super().__call__(x, use_running_average, mask=mask)
    c = (x.shape[-1],)
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), c)
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), c)
    scale = self.param("scale", self.scale_init, c, self.param_dtype)
    bias = self.param("bias", self.bias_init, c, self.param_dtype)
    y, mean, var = backend.batch_norm_train(x, scale, bias, self.epsilon)
    ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
    ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y if self.dtype is None else y.astype(self.dtype)


def activation(name: str) -> Callable:
  """Activation by name: relu, swish/silu (Ramachandran et al. 2017), ..."""
  table = {"relu": nn.relu, "swish": nn.swish, "silu": nn.swish,
           "relu6": nn.relu6, "gelu": nn.gelu, "identity": lambda x: x}
  if name not in table:
    raise ValueError(f"activation {name!r} is unknown; use one of {sorted(table)}")
  return table[name]


class ConvBN(nn.Module):
  """Conv -> BatchNorm -> optional activation (the standard CNN unit); its layers
  are `conv` and `bn`."""
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
             padding=pad, feature_group_count=self.groups, dtype=self.dtype, name="conv")(x)
    scale_init = nn.initializers.zeros if self.bn_zero_init else nn.initializers.ones
    x = batch_norm(train, self.dtype, scale_init=scale_init, name="bn")(x)
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
    s = nn.Conv(self.hidden, (1, 1), dtype=self.dtype, name="reduce",
                conv_general_dilated=conv_general_dilated)(s)
    s = self.act(s)
    s = nn.Conv(x.shape[-1], (1, 1), dtype=self.dtype, name="expand",
                conv_general_dilated=conv_general_dilated)(s)
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


def never_dropped(survival_prob) -> bool:
  """True for a static survival probability of 1 (a traced one may be below 1)."""
  return isinstance(survival_prob, (int, float)) and survival_prob >= 1.0


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
    p = self.survival_prob   # a float, or a traced scalar in scanned blocks
    if self.mode not in ("train_scale", "inference_scale"):
      raise ValueError(f"stochastic depth mode {self.mode!r}: use 'train_scale' or 'inference_scale'")
    if never_dropped(p):
      return branch
    if not train:
      return (branch * jnp.asarray(p, branch.dtype) if self.mode == "inference_scale"
              else branch)
    rng = self.make_rng("dropout")
    keep = jax.random.bernoulli(rng, p, (branch.shape[0],) + (1,) * (branch.ndim - 1))
    scale = 1.0 / p if self.mode == "train_scale" else 1.0
    return jnp.where(keep, branch * jnp.asarray(scale, branch.dtype), 0).astype(branch.dtype)


def or_field(value, field):
  """A block's call argument (a scanned block's traced survival probability) when
  given, else the module's field."""
  return field if value is None else value


STOCHASTIC_DEPTH_PER = ("example", "batch")


def check_stochastic_depth(mode: str, per: str) -> None:
  """Validates the stochastic depth scaling `mode` and the unit of a draw `per`."""
  if mode not in ("train_scale", "inference_scale"):
    raise ValueError(f"stochastic_depth_mode: use 'train_scale' or 'inference_scale', got {mode!r}")
  if per not in STOCHASTIC_DEPTH_PER:
    raise ValueError(f"stochastic_depth_per: use 'example' or 'batch', got {per!r}")


def stochastic_residual(module: nn.Module, branch_fn: Callable, x, shortcut, *, train: bool,
                        survival_prob: float, mode: str = "train_scale",
                        per: str = "example"):
  """shortcut + the residual branch `branch_fn(module, x)` under stochastic depth.

  per="example" (timm's DropPath): each example drops the branch with
  probability 1 - p (`StochasticDepth`); the branch is always computed.
  per="batch" (Huang et al. 2016): one Bernoulli(p) draw per block and step for
  the whole mini-batch, from the 'dropout' stream (the same on every device of a
  data-parallel step); a dropped branch is not computed at all (`nn.cond`) and
  its BatchNorm statistics are not updated. Both keep `mode`'s scaling: the
  kept branch is divided by p in training ("train_scale") or multiplied by p
  at inference ("inference_scale"). `branch_fn` creates its submodules in
  `module` (the block whose compact method calls this). `shortcut` must have
  the branch's output shape, or be None (no shortcut: per-example mode only).
  """
  p = survival_prob
  if per == "batch" and train and not never_dropped(p) and not module.is_initializing():
    if shortcut is None:
      raise ValueError("stochastic_depth_per='batch' needs a shortcut to fall back on")
    scale = 1.0 / p if mode == "train_scale" else 1.0
    dropped = jnp.logical_not(jax.random.bernoulli(module.make_rng("dropout"), p))

    def skip(mdl, x, shortcut):
      return shortcut

    def run(mdl, x, shortcut):
      # A dropped block must still fill every residual slot of the cond (the
      # values the backward pass keeps), with zeros. Remat keeps those slots to
      # the convolution outputs (BN and activations are recomputed from them);
      # with the CPU tuning, BatchNorm's closed-form VJP already keeps only its
      # input, and remat's no-op reduce_precision copies of each saved output
      # would cost more than they save.
      fn = branch_fn if backend.tuned() else nn.checkpoint(
          branch_fn, prevent_cse=False, policy=_SAVE_CONV_OUTPUTS)
      with backend.tracing_control_flow():
        y = fn(mdl, x)
      return (shortcut + y * jnp.asarray(scale, y.dtype)).astype(shortcut.dtype)

    # `run` is the false branch on purpose: jax traces the false branch last,
    # and flax takes the auto-name counters of the last traced branch, so the
    # modules the block creates after this call keep their usual names.
    return nn.cond(dropped, skip, run, module, x, shortcut)
  y = StochasticDepth(p, mode, name="stochastic_depth")(branch_fn(module, x), train)
  return y if shortcut is None else shortcut + y


class DropBlock(nn.Module):
  """DropBlock (Ghiasi et al. 2018): drops contiguous block_size x block_size
  regions, in all channels at once (or per channel), then renormalizes.

  gamma = (1 - keep_prob) / block_size^2 * feat^2 / (feat - block_size + 1)^2,
  sampled for block centres in the valid region. The drop rate 1 - keep_prob is
  scaled by `strength` in [0, 1] (the paper's linear schedule feeds the fraction
  of training done, see `Regularization.dropblock_strength`).
  """
  keep_prob: float = 0.9
  block_size: int = 7
  per_channel: bool = False

  @nn.compact
  def __call__(self, x, train: bool, strength=1.0):
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


class Head(nn.Module):
  """The classifier's dense layer: the matmul (and its gradients) in `dtype`
  (bfloat16 on accelerators), the bias and the logits in float32, so that the bias
  and its gradient (a sum over the batch) are never rounded to bfloat16. Parameters
  and initializers as `nn.Dense`'s (`kernel` lecun-normal, `bias` zeros)."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    y = jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))
    return y.astype(jnp.float32) + bias


def classifier_head(x, train: bool, num_classes: int, dropout: float = 0.0,
                    dtype: Dtype = jnp.float32, pre_logits: bool = False):
  """Global average pooling, optional dropout and the final dense layer `head`.

  Call it inside the model's compact `__call__`: the dense layer is a submodule
  of the model named "head", so its parameters are `params["head"]["kernel"]`
  and `params["head"]["bias"]` in every family. With `pre_logits` it returns the
  pooled (N, D) features (float32) instead of the logits.
  """
  x = jnp.mean(x, axis=(1, 2))
  if pre_logits:
    return x.astype(jnp.float32)
  if dropout > 0:
    x = nn.Dropout(dropout, deterministic=not train, name="dropout")(x)
  return Head(num_classes, dtype=dtype, name="head")(x)


# ----------------------------------------------------------------------------
# Repeated blocks: rematerialization and scan.

def repeat_blocks(block: Callable[..., nn.Module], x, train: bool,
                  names: Sequence[str], survival_probs: Sequence[float], *,
                  step=None, remat: bool = False, scan: bool = False, scan_name: str = "",
                  **kwargs):
  """Applies the identical blocks `block(survival_prob=p, **kwargs)` in turn.

  `block` is a block class (or a functools.partial of one) called as
  `block(...)(x, train, survival_prob, step)`: a `survival_prob` argument (a
  scanned block's own, traced) overrides its field when given; `step` is the
  training step the model was called with (for scheduled regularizers).

  Call it in the compact method of the model. Unscanned, block i is the submodule
  `names[i]` (its variables under that name, as without this helper). With
  `remat`, each block's activations are recomputed in the backward pass
  (`nn.remat`; Chen et al. 2016, "Training Deep Nets with Sublinear Memory
  Cost"). With `scan` (and more than one block), the blocks run under `nn.scan`
  as one submodule `scan_name` whose variables are stacked on a leading axis of
  len(names) (see `stack_blocks` / `unstack_blocks`), so tracing and compiling
  cost one block however deep the stage. Survival probabilities that differ
  between blocks are scanned over as traced scalars; `step` is broadcast.
  """
  if isinstance(block, functools.partial):   # a block class with some fields set
    block, kwargs = block.func, {**block.keywords, **kwargs}
  cls = nn.remat(block, static_argnums=(2,)) if remat else block
  if not scan or len(names) < 2:
    for name, p in zip(names, survival_probs):
      x = block_boundary(cls(survival_prob=p, name=name, **kwargs)(x, train, None, step))
    return x
  if not scan_name:
    raise ValueError("repeat_blocks: scan needs a scan_name for the stacked blocks")
  probs = [float(p) for p in survival_probs]
  static = len(set(probs)) == 1

  class ScanCell(cls):
    """The block as a scan body: (x, p) -> (block(x), None)."""

    def __call__(self, x, p, step):
      # this block's survival probability: a traced scalar when the blocks' differ
      with backend.tracing_control_flow():
        return cls.__call__(self, x, train, None if static else p, step), None

  scanned = nn.scan(ScanCell, variable_axes={"params": 0, "batch_stats": 0, "intermediates": 0},
                    split_rngs={"params": True, "dropout": True}, length=len(names),
                    in_axes=(0, nn.broadcast))
  x, _ = scanned(survival_prob=probs[0], name=scan_name, **kwargs)(
      x, jnp.asarray(probs, jnp.float32), step)
  return x


def stack_blocks(variables, groups):
  """Unscanned -> scanned layout: for each (scan_name, names) of `groups`, the
  variables of blocks `names` are stacked on a new leading axis under
  `scan_name`, in every collection."""
  out = {}
  for collection, tree in variables.items():
    tree = dict(tree)
    for scan_name, names in groups:
      parts = [tree.pop(n) for n in names if n in tree]
      if not parts:
        continue
      if len(parts) != len(names):
        raise ValueError(f"stack_blocks: {collection} has only some of the blocks {list(names)}")
      tree[scan_name] = jax.tree.map(lambda *a: jnp.stack(a), *parts)
    out[collection] = tree
  return out


def unstack_blocks(variables, groups):
  """Scanned -> unscanned layout, the inverse of `stack_blocks`."""
  out = {}
  for collection, tree in variables.items():
    tree = dict(tree)
    for scan_name, names in groups:
      if scan_name not in tree:
        continue
      stacked = tree.pop(scan_name)
      for i, n in enumerate(names):
        tree[n] = jax.tree.map(lambda a, i=i: a[i], stacked)
    out[collection] = tree
  return out
