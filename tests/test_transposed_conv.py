"""Transposed convolution is the transpose of a (strided) convolution.

A convolution is a linear map x -> y = C x. Its transpose C^T maps the output
space back to the input space; it is what backpropagation computes for the
input gradient, so jax.vjp of the forward `lax.conv_general_dilated` gives C^T
exactly. These tests show:

- flax `nn.ConvTranspose(..., transpose_kernel=True)` with a kernel K of the
  forward convolution's layout (kh, kw, in, out) computes C^T g exactly, for
  'VALID' and 'SAME' padding and strides 1 and 2, as long as the forward input
  size is the one the string padding implies (VALID: (n - 1) s + k, SAME: n s);
  for other sizes explicit transposed padding (`transpose_padding`) is exact;
- with the default `transpose_kernel=False`, which the U-Net's up-convolutions
  (flaxcnn/models/unet.py, `upconv*`: 2x2, stride 2, 'VALID') use, the kernel
  is read as the forward kernel flipped in space with its in/out axes swapped:
  the layer is still exactly the transpose of a convolution (of that flipped
  kernel); as the kernel is learned, both parameterizations give the same
  family of layers;
- output sizes as in the convolution-arithmetic animations of the lecture
  (Dumoulin & Visin 2016): 2x2 -> 4x4 (3x3 kernel, no padding, stride 1),
  2x2 -> 5x5 (stride 2), 5x5 -> 5x5 (half padding), 7x7 -> 5x5 (the transpose
  of full padding), 3x3 -> 5x5 (padding 1, stride 2), and the U-Net's 2x2
  stride-2 up-convolution doubling the size.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_default_matmul_precision", "highest")

DN = ("NHWC", "HWIO", "NHWC")


def conv(x, kernel, strides, padding):
  """The forward convolution y = C x (cross-correlation, as every CNN library)."""
  return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=DN,
                                      precision=jax.lax.Precision.HIGHEST)


def conv_transpose_by_vjp(g, kernel, x_shape, strides, padding):
  """C^T g: the input-gradient of the forward convolution (the definition)."""
  _, vjp = jax.vjp(lambda x: conv(x, kernel, strides, padding), jnp.zeros(x_shape))
  return vjp(g)[0]


def flax_transpose(g, kernel, strides, padding, transpose_kernel):
  layer = nn.ConvTranspose(kernel.shape[2] if transpose_kernel else kernel.shape[3],
                           kernel.shape[:2], strides=strides, padding=padding,
                           use_bias=False, transpose_kernel=transpose_kernel,
                           precision=jax.lax.Precision.HIGHEST)
  return layer.apply({"params": {"kernel": kernel}}, g)


def flip_swap(kernel):
  """The kernel a transpose_kernel=False layer needs to equal C^T of `kernel`."""
  return jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)


def transpose_padding(n, k, s, lo, hi):
  """Explicit padding of the transposed convolution of a forward convolution on
  n pixels with kernel k, stride s and padding (lo, hi): the dilated gradient is
  padded by k - 1 - lo before and k - 1 - hi (+ the rows the stride skipped) after."""
  skipped = (n + lo + hi - k) % s
  return (k - 1 - lo, k - 1 - hi + skipped)


def same_padding(n, k, s):
  out = -(-n // s)
  total = max((out - 1) * s + k - n, 0)
  return (total // 2, total - total // 2)


def random(key, shape):
  return jax.random.normal(jax.random.PRNGKey(key), shape, jnp.float32)


# ----------------------------------------------------------------------------- the identity

@pytest.mark.parametrize("padding", ["VALID", "SAME"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_conv_transpose_is_the_transpose_of_the_strided_conv(padding, stride, k):
  # The forward input size that the string padding's transposed output size implies.
  n_out = 4
  n = (n_out - 1) * stride + k if padding == "VALID" else n_out * stride
  x_shape = (2, n, n + stride if padding == "SAME" else n, 3)  # non-square too
  kernel = random(0, (k, k, 3, 5))                             # forward: 3 -> 5 channels
  y_shape = jax.eval_shape(lambda: conv(jnp.zeros(x_shape), kernel, (stride,) * 2, padding)).shape
  g = random(1, y_shape)
  expected = conv_transpose_by_vjp(g, kernel, x_shape, (stride,) * 2, padding)
  got = flax_transpose(g, kernel, (stride,) * 2, padding, transpose_kernel=True)
  assert got.shape == x_shape
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
  # The default (transpose_kernel=False, the U-Net's) is the transpose of the
  # convolution with the flipped, in/out-swapped kernel ...
  got_default = flax_transpose(g, flip_swap(kernel), (stride,) * 2, padding, transpose_kernel=False)
  np.testing.assert_allclose(got_default, expected, atol=1e-5, rtol=1e-5)
  # ... and not of the convolution with the kernel as stored.
  if k > 1:
    swapped = kernel.transpose(0, 1, 3, 2)
    plain = flax_transpose(g, swapped, (stride,) * 2, padding, transpose_kernel=False)
    assert not np.allclose(plain, expected, atol=1e-3)


def test_transpose_as_a_matrix():
  """The lecture's picture: unroll the 3x3 convolution of a 4x4 image into a
  4x16 matrix C; the transposed convolution multiplies by C^T (16x4)."""
  kernel = random(2, (3, 3, 1, 1))
  f = lambda x: conv(x.reshape(1, 4, 4, 1), kernel, (1, 1), "VALID").reshape(-1)  # noqa: E731
  C = jax.jacfwd(f)(jnp.zeros(16))
  assert C.shape == (4, 16)
  g = random(3, (4,))
  got = flax_transpose(g.reshape(1, 2, 2, 1), kernel, (1, 1), "VALID", True).reshape(-1)
  np.testing.assert_allclose(got, C.T @ g, atol=1e-6)
  # Each row of C holds the 9 kernel weights, at the positions the window covers.
  np.testing.assert_allclose(np.sort(np.asarray(C[0])[np.asarray(C[0]) != 0]),
                             np.sort(np.asarray(kernel).ravel()), atol=1e-7)


@pytest.mark.parametrize("n", [5, 6, 7, 8])
@pytest.mark.parametrize("padding", ["VALID", "SAME"])
@pytest.mark.parametrize("k,stride", [(3, 1), (3, 2), (2, 2), (5, 2)])
def test_explicit_transposed_padding_is_exact_for_every_size(n, padding, k, stride):
  """The string paddings fix the transposed output size (VALID: (m-1) s + k, SAME:
  m s); several forward sizes n share one output size m when s > 1, so for the
  others the padding is given explicitly: then C^T is exact for every n."""
  lo, hi = (0, 0) if padding == "VALID" else same_padding(n, k, stride)
  kernel = random(4, (k, k, 2, 3))
  x_shape = (1, n, n, 2)
  y = conv(jnp.zeros(x_shape), kernel, (stride, stride), [(lo, hi)] * 2)
  g = random(5, y.shape)
  expected = conv_transpose_by_vjp(g, kernel, x_shape, (stride, stride), [(lo, hi)] * 2)
  pad = transpose_padding(n, k, stride, lo, hi)
  got = flax_transpose(g, kernel, (stride, stride), [pad] * 2, transpose_kernel=True)
  assert got.shape == x_shape
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- sizes

# Dumoulin & Visin 2016, "A guide to convolution arithmetic" (the lecture's
# animations): forward convolution n -> m with kernel k, stride s, padding p on
# both sides; its transpose maps m -> n.
ANIMATIONS = [
    ("no padding, no strides", 4, 3, 1, 0, 2),
    ("arbitrary padding, no strides", 5, 4, 1, 2, 6),
    ("half padding, no strides", 5, 3, 1, 1, 5),
    ("full padding, no strides", 5, 3, 1, 2, 7),
    ("no padding, strides", 5, 3, 2, 0, 2),
    ("padding, strides", 5, 3, 2, 1, 3),
    ("padding, strides (odd)", 6, 3, 2, 1, 3),
    ("U-Net up-convolution", 6, 2, 2, 0, 3),
]


@pytest.mark.parametrize("name,n,k,stride,p,m", ANIMATIONS, ids=[a[0] for a in ANIMATIONS])
def test_output_sizes_as_in_the_animations(name, n, k, stride, p, m):
  kernel = random(7, (k, k, 1, 1))
  y = conv(jnp.zeros((1, n, n, 1)), kernel, (stride, stride), [(p, p)] * 2)
  assert y.shape[1:3] == (m, m)                  # the forward convolution: n -> m
  g = random(8, (1, m, m, 1))
  pad = transpose_padding(n, k, stride, p, p)
  out = flax_transpose(g, kernel, (stride, stride), [pad] * 2, transpose_kernel=True)
  assert out.shape[1:3] == (n, n)                # its transpose: m -> n
  expected = conv_transpose_by_vjp(g, kernel, (1, n, n, 1), (stride, stride), [(p, p)] * 2)
  np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("m,k,stride,padding,n", [
    (2, 3, 1, "VALID", 4), (2, 3, 2, "VALID", 5), (3, 2, 2, "VALID", 6),
    (5, 3, 1, "SAME", 5), (3, 3, 2, "SAME", 6), (4, 2, 2, "SAME", 8)])
def test_string_padding_output_sizes(m, k, stride, padding, n):
  """'VALID': m -> (m - 1) s + k; 'SAME': m -> m s (flax/lax conventions)."""
  out = flax_transpose(jnp.ones((1, m, m, 1)), jnp.ones((k, k, 1, 1)), (stride, stride),
                       padding, transpose_kernel=True)
  assert out.shape[1:3] == (n, n)


def test_each_output_of_a_stride_2_transposed_conv_sums_overlapping_windows():
  """With a 3x3 kernel of ones and stride 2, output pixels where two windows
  overlap get 2 (4 at the crossings): the uneven overlap behind checkerboard
  artifacts; the U-Net's 2x2/2 windows never overlap (all ones)."""
  out = flax_transpose(jnp.ones((1, 2, 2, 1)), jnp.ones((3, 3, 1, 1)), (2, 2), "VALID", True)
  np.testing.assert_array_equal(out[0, :, :, 0], np.array(
      [[1, 1, 2, 1, 1], [1, 1, 2, 1, 1], [2, 2, 4, 2, 2], [1, 1, 2, 1, 1], [1, 1, 2, 1, 1]]))
  out = flax_transpose(jnp.ones((1, 3, 3, 1)), jnp.ones((2, 2, 1, 1)), (2, 2), "VALID", True)
  np.testing.assert_array_equal(out, np.ones((1, 6, 6, 1)))


# ----------------------------------------------------------------------------- the U-Net's layer

def test_unet_upconv_is_the_transpose_of_a_2x2_stride_2_convolution():
  from flaxcnn import models
  model = models.create_model("unet_small", num_classes=3, base_features=4, depth=2)
  x = random(6, (2, 16, 16, 1))
  key = jax.random.key(0, impl="rbg")   # compiles much faster on CPU than threefry
  variables = jax.jit(lambda k: model.init(k, x, train=False))(key)
  _, state = jax.jit(lambda v, x: model.apply(v, x, train=False, capture_intermediates=True,
                                              mutable=["intermediates"]))(variables, x)
  inter = state["intermediates"]
  for i, source in ((2, "bottom"), (1, "up2")):   # upconv_i upsamples the stage below
    g = inter[source]["__call__"][0]
    up = inter[f"upconv{i}"]["__call__"][0]
    kernel = variables["params"][f"upconv{i}"]["kernel"]   # (2, 2, in, out), as stored
    bias = variables["params"][f"upconv{i}"]["bias"]
    assert up.shape[1:3] == (2 * g.shape[1], 2 * g.shape[2])
    # The forward convolution it is the transpose of: 2x2, stride 2, 'VALID',
    # from `out` channels (the skip's resolution) to `in` channels.
    forward_kernel = flip_swap(kernel)
    x_shape = up.shape
    expected = conv_transpose_by_vjp(g, forward_kernel, x_shape, (2, 2), "VALID") + bias
    np.testing.assert_allclose(up, expected, atol=1e-5, rtol=1e-5)
