"""CPU tuning, in one place and opt-in: `flaxcnn.backend.configure()`.

Importing flaxcnn or a model changes nothing in JAX or XLA. A program that wants
the tuned CPU path (the command line, the benchmarks and the tests do) calls,
before its first JAX computation:

    import flaxcnn.backend
    flaxcnn.backend.configure()

On a GPU or TPU it changes nothing but the compiler options it returns (None).
On the CPU it turns on five things, each measured in benchmarks/RESULTS.md:

1. XLA flag: YNNPACK fusions off (`--xla_cpu_experimental_ynn_fusion_type=`,
   jaxlib 0.10+): BatchNorm's reductions ran up to 2x slower through them
   (ResNet-20 batch 128: 1.60 vs 0.79 s/step). Added to XLA_FLAGS unless it
   already names the flag or FLAXCNN_KEEP_XLA_DEFAULTS=1; it only takes effect
   when configure() runs before JAX starts its CPU backend.
2. Convolution gradients as NHWC/HWIO convolutions (`conv_general_dilated`):
   XLA:CPU brings convolutions into its fast form only in the top-level
   computation, so the gradient convolutions JAX derives inside a `lax.cond`
   (per-batch stochastic depth) or a `scan` body (`scan_blocks=True`) ran as
   naive loops, 10-30x slower. 1x1 convolutions become matmuls. Outside
   conditionals and scans (`tracing_control_flow`) the weight gradient transposes
   the stored input, not a recomputation of it.
3. Block barriers (`block_boundary`): an optimization barrier on each residual
   block's output stops XLA:CPU from recomputing the whole residual chain inside
   later blocks' fusions (2x the step time of an unscanned ResNet-110).
4. Compiler options (`compiler_options`): keep those barriers, and remat's,
   through XLA:CPU's `cse_barrier_expander` pass (without it remat and the
   memory-efficient DenseNet save no memory on the CPU).
5. BatchNorm's training step with a closed-form VJP (`batch_norm_train`, used
   by `models.layers.BatchNorm`): its backward pass is two channel sums and one
   elementwise pass instead of the derivative of each forward step (XLA:CPU
   runs each unfused channel reduction as a separate pass over memory), and a
   per-batch stochastic-depth branch then needs no remat (whose no-op
   reduce_precision copies of every saved output XLA:CPU does not remove).
   Its four channel sums (`channel_sum`) read the [N, H, W, C] activations as
   rows of 8 pixels ([N*H*W/8, 8*C]), which XLA:CPU reduces 3-5x faster than
   16-64 channel columns (BN + ReLU forward and backward: 1.8-2.2x faster).
The values are the same with or without it, to float rounding (tests compare them).
"""
import contextlib
import functools
import importlib.util
import mmap
import os
import platform
from typing import Optional

import jax
import jax.numpy as jnp
from absl import logging

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="
_NHWC = ("NHWC", "HWIO", "NHWC")
_state = {"tuned": False, "in_control_flow": False}


def configure(cpu_tuning: bool = True) -> None:
  """Turns the CPU tuning on (or off with cpu_tuning=False) for this process."""
  _state["tuned"] = bool(cpu_tuning)
  if cpu_tuning:
    _set_xla_flags()


def tuned() -> bool:
  """Whether configure() turned the tuning on and the default backend is the CPU."""
  return _state["tuned"] and jax.default_backend() == "cpu"


def host_description() -> str:
  """'CPU model, N cores' of this machine (the cores this process may use), as the
  benchmarks and the lecture's pages record it."""
  model = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return f"{model}, {cores} cores"


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge   # no public way to ask this
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):
    return False


def jaxlib_knows(flag: str) -> bool:
  """Whether the installed jaxlib defines an XLA flag (an unknown one in XLA_FLAGS
  aborts the process), read from its library's string table without loading it."""
  spec = importlib.util.find_spec("jaxlib")
  if spec is None or not spec.submodule_search_locations:
    return False
  path = os.path.join(list(spec.submodule_search_locations)[0], "libjax_common.so")
  try:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
      return m.find(flag.strip("-=").encode() + b"\0") >= 0
  except (OSError, ValueError):
    return False


def _set_xla_flags() -> None:
  flags = os.environ.get("XLA_FLAGS", "")
  if os.environ.get("FLAXCNN_KEEP_XLA_DEFAULTS", "0") not in ("", "0"):
    return
  if "xla_cpu_experimental_ynn_fusion_type" in flags or not jaxlib_knows(YNN_FLAG):
    return
  if _backends_started():
    logging.warning("flaxcnn.backend.configure() ran after JAX started its backends: "
                    "the XLA flag %s takes effect only in a new process", YNN_FLAG)
  os.environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}".strip()


def compiler_options(platform: Optional[str] = None) -> Optional[dict]:
  """XLA options for compiling a model's steps on `platform` (default backend):
  with the tuning on the CPU, keep optimization barriers (`block_boundary`, and
  remat's, which CSE would otherwise merge back into the forward pass)."""
  if _state["tuned"] and (platform or jax.default_backend()) == "cpu":
    return {"xla_disable_hlo_passes": "cse_barrier_expander"}
  return None


@contextlib.contextmanager
def tracing_control_flow():
  """Marks the tracing of a `lax.cond` branch or a scan body: the convolutions traced
  inside do not pin their input for the weight gradient (item 2), which costs copies
  of the conditional's and the loop's operands there."""
  before = _state["in_control_flow"]
  _state["in_control_flow"] = True
  try:
    yield
  finally:
    _state["in_control_flow"] = before


def block_boundary(x):
  """A residual block's output, kept as one array when tuned on the CPU (item 3)."""
  return jax.lax.optimization_barrier(x) if tuned() else x


# ----------------------------------------------------------------------------- convolutions

@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv_nhwc(x, w, strides, pads, rhs_dilation, groups, pin_input):
  return jax.lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=rhs_dilation,
                                      dimension_numbers=_NHWC, feature_group_count=groups)


def _conv_nhwc_fwd(x, w, strides, pads, rhs_dilation, groups, pin_input):
  return _conv_nhwc(x, w, strides, pads, rhs_dilation, groups, pin_input), (x, w)


def _conv_nhwc_bwd(strides, pads, rhs_dilation, groups, pin_input, residuals, dy):
  """Both gradients as NHWC/HWIO convolutions (XLA:CPU's fast layout)."""
  x, w = residuals
  if pin_input:
    # The weight gradient transposes x as the forward pass wrote it: without the
    # barrier XLA:CPU recomputes x's producer (BatchNorm, ReLU) inside the
    # transpose, in strided order, 2.5x slower than the copy.
    x = jax.lax.optimization_barrier(x)
  kh, kw, cig, cout = w.shape
  dy = dy.astype(x.dtype)
  span = [(k - 1) * d + 1 for k, d in zip((kh, kw), rhs_dilation)]
  geometry = list(zip(x.shape[1:3], span, strides, dy.shape[1:3], pads))
  # Input gradient: the stride-dilated dy convolved with the flipped kernel,
  # input and output features swapped within each group.
  w_t = (w[::-1, ::-1].reshape(kh, kw, cig, groups, cout // groups)
         .transpose(0, 1, 4, 3, 2).reshape(kh, kw, cout // groups, groups * cig))
  dx_pads = [(k - lo - 1, n - (o - 1) * s - 1 + lo) for n, k, s, o, (lo, _) in geometry]
  dx = jax.lax.conv_general_dilated(dy, w_t, (1, 1), dx_pads, lhs_dilation=strides,
                                    rhs_dilation=rhs_dilation, dimension_numbers=_NHWC,
                                    feature_group_count=groups)
  # Weight gradient: batch and features swapped (x as [C, H, W, N], dy as
  # [h, w, N, C']), the stride as the kernel dilation, one group per batch group.
  dw_pads = [(lo, (o - 1) * s + k - n - lo) for n, k, s, o, (lo, _) in geometry]
  dw = jax.lax.conv_general_dilated(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3),
                                    rhs_dilation, dw_pads, rhs_dilation=strides,
                                    dimension_numbers=_NHWC, batch_group_count=groups)
  return dx, dw.transpose(1, 2, 0, 3).astype(w.dtype)


_conv_nhwc.defvjp(_conv_nhwc_fwd, _conv_nhwc_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """`jax.lax.conv_general_dilated`; when tuned on the CPU, 2-D NHWC convolutions
  get a VJP that writes both gradients as NHWC/HWIO convolutions (same values),
  and 1x1 convolutions are matmuls over the channels (item 2)."""
  nd = lhs.ndim - 2
  rhs_dilation = tuple(rhs_dilation or (1,) * nd)
  if (not tuned() or nd != 2 or batch_group_count != 1
      or precision is not None or preferred_element_type is not None
      or any(d != 1 for d in (lhs_dilation or ()))
      or jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
      != jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)):
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count, precision, preferred_element_type)
  if isinstance(padding, str):
    span = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:2], rhs_dilation)]
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], span, window_strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  if rhs.shape[:2] == (1, 1) and feature_group_count == 1 and not any(sum(pads, ())):
    # A 1x1 convolution is a matmul over the channels (of every s-th pixel when
    # strided); XLA:CPU runs it and its gradients as dots 2-4x faster than as
    # convolutions, without transposed copies of the input (DenseNet's bottlenecks).
    x = lhs[:, ::window_strides[0], ::window_strides[1]]
    return jax.lax.dot_general(x, rhs[0, 0], (((3,), (0,)), ((), ())))
  return _conv_nhwc(lhs, rhs, tuple(window_strides), pads, rhs_dilation, feature_group_count,
                    not _state["in_control_flow"])


# ----------------------------------------------------------------------------- batch norm

@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x, scale, bias, epsilon):
  """Training-mode BatchNorm over all axes but the last: (y, batch mean, batch
  variance), the forward as flax's `nn.BatchNorm` computes it (float32 statistics,
  Var = E[x^2] - E[x]^2 clipped at 0; its sums in another order, `channel_sum`).
  Its VJP is the closed form (two channel sums and one elementwise pass) instead
  of the derivative of each step of the forward, and it keeps only x and two
  channel vectors for the backward pass (item 5)."""
  return _bn_forward(x, scale, bias, epsilon)[0]


def channel_sum(x):
  """x summed over all axes but the last, as rows of `k` pixels' channels: XLA:CPU
  reduces a [M, C] array over M several times slower when C is small (16-64)
  than the same data as [M / k, k * C] followed by a [k, C] sum (item 5)."""
  c = x.shape[-1]
  m = x.size // c
  k = next(k for k in (8, 4, 2, 1) if (m % k == 0 and k * c <= 512) or k == 1)
  return x.reshape(m // k, k * c).sum(0).reshape(k, c).sum(0)


def _bn_forward(x, scale, bias, epsilon):
  xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  m = x.size // x.shape[-1]
  mean = channel_sum(xf) / m
  var = jnp.maximum(0.0, channel_sum(jax.lax.square(xf)) / m - jax.lax.square(mean))
  rstd = jax.lax.rsqrt(var + epsilon)
  y = (x - mean) * (rstd * scale) + bias
  out_dtype = jnp.result_type(x, scale, bias)
  return (y.astype(out_dtype), mean, var), (x, mean, rstd, scale)


def _bn_backward(epsilon, residuals, cotangents):
  x, mean, rstd, scale = residuals
  dy, dmean, dvar = cotangents
  m = x.size // x.shape[-1]
  dy = dy.astype(mean.dtype)
  xhat = (x - mean) * rstd
  dbias = channel_sum(dy)
  dscale = channel_sum(dy * xhat)
  dx = (rstd * scale) * (dy - dbias / m - xhat * (dscale / m))
  dx = dx + dmean / m + (dvar * 2.0 / m) * (x - mean)   # through the returned statistics
  return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(scale.dtype)


batch_norm_train.defvjp(_bn_forward, _bn_backward)
