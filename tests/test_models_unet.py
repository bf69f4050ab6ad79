"""U-Net (Ronneberger et al. 2015) with 'SAME' padding and BatchNorm."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxcnn.models import registry, summary
from flaxcnn.models.regularization import Regularization, gather
from flaxcnn.models.unet import UNet


def unet_params(in_channels, num_classes, base=64, depth=4, norm=True):
  """Parameter count by hand: 3x3 convs (no bias + BN scale/bias, or bias),
  2x2 transposed convs with bias, and the 1x1 classifier with bias."""
  conv3 = lambda cin, cout: 9 * cin * cout + (2 * cout if norm else cout)  # noqa: E731
  widths = [base * 2 ** i for i in range(depth + 1)]
  total, cin = 0, in_channels
  for c in widths:                                    # contracting path + bottom
    total += conv3(cin, c) + conv3(c, c)
    cin = c
  for c, below in zip(widths[:-1], widths[1:]):       # expansive path
    total += 4 * below * c + c                        # up-convolution
    total += conv3(2 * c, c) + conv3(c, c)            # after concatenating the skip
  return total + widths[0] * num_classes + num_classes


def random_variables(module, x, seed=0):
  """N(0, 0.1^2) params, BN statistics mean 0 / var 1 (no `init` compilation)."""
  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), x, train=False))
  rng = np.random.default_rng(seed)
  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if "batch_stats" in name:
      return jnp.ones(s.shape) if "var" in name else jnp.zeros(s.shape)
    return jnp.asarray(rng.normal(0.0, 0.1, s.shape), jnp.float32)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def test_parameter_counts():
  # Our U-Net (BN, no conv biases) on RGB inputs with 2 classes.
  unet = registry.create_model("unet")
  assert registry.get_preset("unet").num_classes == 2
  assert summary.count_params(unet, 32, channels=3) == unet_params(3, 2) == 31_037_698
  small = registry.create_model("unet_small")
  assert summary.count_params(small, 32) == unet_params(3, 2, base=16, depth=3)
  # The paper's configuration (BN-free convolutions with biases, 1 input channel,
  # 2 classes; padding does not change the count): about 31.0M parameters.
  paper = UNet(num_classes=2, norm=False)
  count = summary.count_params(paper, 32, channels=1)
  assert count == unet_params(1, 2, norm=False) == 31_030_658
  assert round(count / 1e6, 1) == 31.0


def test_up_convolution_and_skip_shapes():
  shapes = jax.eval_shape(lambda: UNet(2, base_features=8, depth=2).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)), train=False))["params"]
  assert shapes["upconv2"]["kernel"].shape == (2, 2, 32, 16)    # 2x2, halves channels
  assert shapes["upconv1"]["kernel"].shape == (2, 2, 16, 8)
  assert shapes["up1"]["conv1"]["conv"]["kernel"].shape == (3, 3, 16, 8)  # 8 skip + 8 up
  assert shapes["head"]["kernel"].shape == (1, 1, 8, 2)


@pytest.mark.parametrize("size", [(64, 64), (32, 96), (256, 256)])
def test_output_restores_input_resolution(size):
  model = registry.create_model("unet_small" if size != (256, 256) else "unet")
  x = jax.ShapeDtypeStruct((2, *size, 3), jnp.float32)
  out = jax.eval_shape(lambda x: model.init_with_output(
      jax.random.PRNGKey(0), x, train=False)[0], x)
  assert out.shape == (2, *size, 2) and out.dtype == jnp.float32


def test_tiny_forward_train_eval_bf16():
  model = UNet(num_classes=3, base_features=4, depth=2, regularization=Regularization(dropout=0.5))
  bf16 = model.clone(dtype=jnp.bfloat16)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)), jnp.float32)
  variables = random_variables(model, x)

  @jax.jit
  def run(v, x):
    train = model.apply(v, x, train=True, mutable=["batch_stats"],
                        rngs={"dropout": jax.random.PRNGKey(1)})
    return train, model.apply(v, x, train=False), bf16.apply(v, x, train=False)

  (logits, state), e1, e_bf16 = run(variables, x)
  assert logits.shape == e1.shape == e_bf16.shape == (2, 16, 16, 3)
  assert logits.dtype == e1.dtype == e_bf16.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
  assert not np.allclose(logits, e1)            # batch statistics and dropout
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                                          variables["batch_stats"], state["batch_stats"])))
  np.testing.assert_array_equal(e1, run(variables, x)[1])
  np.testing.assert_allclose(e_bf16, e1, atol=0.05 * float(jnp.abs(e1).max()) + 0.05)


def test_bad_input_size_raises_naming_the_size():
  model = registry.create_model("unet_small")   # depth 3: sides divisible by 8
  x = jax.ShapeDtypeStruct((1, 30, 32, 3), jnp.float32)
  with pytest.raises(ValueError, match="30x32"):
    jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0), x)


@pytest.mark.parametrize("kwargs,field", [
    (dict(depth=0), "depth"), (dict(base_features=0), "base_features"),
    (dict(num_classes=0), "num_classes"), (dict(dropout=1.0), "dropout"),
])
def test_config_errors(kwargs, field):
  with pytest.raises(ValueError, match=field):
    UNet(**gather({"num_classes": 2, **kwargs}))
