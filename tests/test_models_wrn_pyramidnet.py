"""Wide ResNets (Zagoruyko & Komodakis 2016) and PyramidNets (Han et al. 2017)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxcnn.models import registry, summary
from flaxcnn.models.pyramidnet import PyramidBlock, PyramidNet, block_widths, pyramid_shortcut
from flaxcnn.models.regularization import Regularization
from flaxcnn.models.wide_resnet import WideBlock, WideResNet

RNGS = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}


def _images(n=2, size=16, key=0):
  return jax.random.normal(jax.random.PRNGKey(key), (n, size, size, 3))


def _init(module, x, seed=0):
  """Variables of `module` for input `x`, drawn with numpy: He-scaled normal kernels,
  BN scale 1 / offset 0, running mean 0 / variance 1. Unlike `module.init`, this
  does not compile a random-number kernel per parameter shape, which would
  dominate the run time of these tests on a CPU."""
  shapes = jax.eval_shape(lambda: module.init(RNGS, x, train=False))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name in ("scale", "var"):
      return jnp.ones(leaf.shape, leaf.dtype)
    if name in ("bias", "mean"):
      return jnp.zeros(leaf.shape, leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1]))
    return jnp.asarray(rng.normal(0, math.sqrt(2 / fan_in), leaf.shape), leaf.dtype)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def _forward(model, train=False):
  """A jitted forward pass (one compilation; eager mode compiles every op shape)."""
  def run(variables, x, key=jax.random.PRNGKey(0)):
    if train:
      return model.apply(variables, x, train=True, mutable=["batch_stats"],
                         rngs={"dropout": key})[0]
    return model.apply(variables, x, train=False)
  return jax.jit(run)


def _params(name):
  preset = registry.get_preset(name)
  return summary.count_params(registry.create_model(name), preset.image_size)


# --------------------------------------------------------------------- WRN

def test_wrn28_10_parameter_count_is_exact():
  # The official code's WRN-28-10 for CIFAR-10 (10 classes): 36,479,194.
  assert _params("wrn28_10") == 36_479_194


# Published sizes in millions (CIFAR-10 heads): Table 4 (width/depth grid),
# Table 6 (WRN-16-4), Table 2 (block types, k = 2) and Table 3 (WRN-40-2 with
# l = 1, 3, 4 convolutions per block, all 2.2M).
WRN_PUBLISHED = {
    "wrn40_1": 0.6, "wrn40_2": 2.2, "wrn40_4": 8.9, "wrn40_8": 35.7,
    "wrn28_10": 36.5, "wrn28_12": 52.5, "wrn22_8": 17.2, "wrn22_10": 26.8,
    "wrn16_8": 11.0, "wrn16_10": 17.1, "wrn16_4": 2.7, "wrn28_10_dropout": 36.5,
    "wrn28_2": 1.5, "wrn40_2_b131": 1.4, "wrn40_2_b31": 1.2, "wrn40_2_b13": 1.3,
    "wrn40_2_b311": 1.3, "wrn22_2_b313": 1.1,
    "wrn40_2_b3": 2.2, "wrn40_2_b333": 2.2, "wrn40_2_b3333": 2.2,
}


@pytest.mark.parametrize("name", sorted(WRN_PUBLISHED))
def test_wrn_published_parameter_counts(name):
  # The paper rounds to 0.1M: the count must round to the published figure.
  assert abs(_params(name) / 1e6 - WRN_PUBLISHED[name]) <= 0.05


def test_wrn28_10_multiply_adds():
  macs = summary.count_macs(registry.create_model("wrn28_10"), 32)
  assert abs(macs / 5.25e9 - 1) < 0.03


def test_wrn_presets_are_cifar_and_leave_wrn50_2_to_resnet():
  names = [n for n in registry.list_models("wrn")
           if registry.get_preset(n).constructor is WideResNet]
  assert "wrn50_2" not in names and "wrn28_10" in names
  assert all(registry.get_preset(n).image_size == 32 for n in names)
  assert registry.create_model("wrn28_10_dropout").regularization.dropout == 0.3


def test_wrn_projection_only_where_the_shape_changes():
  variables = summary.init_shapes(WideResNet(10, depth=16, widen_factor=1), 32)["params"]
  assert "shortcut" not in variables["group1_block1"]      # 16 -> 16, stride 1
  assert "shortcut" in variables["group2_block1"]          # 16 -> 32, stride 2
  assert "shortcut" not in variables["group2_block2"]
  variables = summary.init_shapes(WideResNet(10, depth=16, widen_factor=2), 32)["params"]
  assert "shortcut" in variables["group1_block1"]          # 16 -> 32
  assert variables["group3_block1"]["shortcut"]["kernel"].shape == (1, 1, 64, 128)


def test_wrn_dropout_only_in_branch_and_only_in_training():
  x16 = jnp.tile(_images(2, 8), (1, 1, 1, 6))[..., :16]
  block = WideBlock(16, regularization=Regularization(dropout=1.0))
  v = _init(block, x16)
  # Everything before the last convolution is dropped: the identity path is untouched.
  np.testing.assert_array_equal(_forward(block, train=True)(v, x16), x16)
  # At inference dropout is off: the branch contributes, deterministically.
  y_eval = _forward(block)(v, x16)
  assert not np.allclose(y_eval, x16)
  np.testing.assert_array_equal(y_eval, _forward(block)(v, x16))

  # With a projection shortcut, dropout=1 makes the output independent of the last
  # conv, and the projection still contributes.
  proj = WideBlock(32, strides=2, regularization=Regularization(dropout=1.0))
  v = _init(proj, x16)
  changed = jax.tree_util.tree_map(lambda a: a, v)
  changed["params"]["conv2"]["kernel"] = changed["params"]["conv2"]["kernel"] + 1.0
  run = _forward(proj, train=True)
  np.testing.assert_array_equal(run(v, x16), run(changed, x16))
  assert not np.allclose(run(v, x16), 0)

  # With dropout 0.5 a training pass is random, an inference pass is not.
  block = WideBlock(16, regularization=Regularization(dropout=0.5))
  v = _init(block, x16)
  train = _forward(block, train=True)
  assert not np.allclose(train(v, x16, jax.random.PRNGKey(1)), train(v, x16, jax.random.PRNGKey(2)))


@pytest.mark.parametrize("block_type", [(3, 3), (3, 1, 3), (1, 3, 1), (1, 3), (3, 1),
                                        (3, 1, 1), "3,1,3", "B(1,3)"])
def test_wrn_block_types_build_and_run(block_type):
  m = len(block_type) if isinstance(block_type, tuple) else block_type.count(",") + 1
  model = WideResNet(10, depth=3 * m + 4, widen_factor=1, block_type=block_type)
  x = _images(2, 8)
  v = _init(model, x)
  logits = _forward(model)(v, x)
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert np.isfinite(logits).all()
  # Each block holds one conv per kernel, with the kernel sizes asked for.
  kernels = [v["params"]["group1_block1"][f"conv{i + 1}"]["kernel"].shape[0] for i in range(m)]
  assert tuple(kernels) == (tuple(block_type) if isinstance(block_type, tuple) else
                            tuple(int(c) for c in block_type.strip("B()").split(",")))


def test_wrn_config_errors_name_the_field():
  with pytest.raises(ValueError, match=r"^depth: .*6n\+4.*got 27"):
    WideResNet(10, depth=27)
  with pytest.raises(ValueError, match="^depth:"):
    WideResNet(10, depth=28, block_type="3,1,3")                # 9n+4 needed
  with pytest.raises(ValueError, match="^depth:"):
    registry.create_model("wrn28_10", depth=30)
  with pytest.raises(ValueError, match="^block_type:"):
    WideResNet(10, depth=28, block_type="3x3")
  with pytest.raises(ValueError, match="^dropout:"):
    WideResNet(10, regularization=Regularization(dropout=1.5))
  with pytest.raises(ValueError, match="^dropblock_stages:"):
    WideResNet(10, regularization=Regularization(dropblock_stages=(4,)))
  for preset in ("wrn28_10", "pyramidnet110_a48"):
    with pytest.raises(ValueError, match="^dropblock_keep_prob=0.8 applies to no stage"):
      registry.create_model(preset, dropblock_keep_prob=0.8)


def test_wrn_bf16_forward_returns_float32_logits():
  x = _images(2, 8)
  model = WideResNet(10, depth=10, widen_factor=1, dtype=jnp.bfloat16)
  v = _init(model, x)
  logits = _forward(model)(v, x)
  assert logits.dtype == jnp.float32 and np.isfinite(logits).all()
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v["params"]))


def test_wrn_stochastic_depth_touches_only_training():
  x = _images(2, 8)
  model = WideResNet(10, depth=10, widen_factor=1,
                     regularization=Regularization(stochastic_depth=0.2))
  v = _init(model, x)
  train = _forward(model, train=True)
  outs = [train(v, x, jax.random.PRNGKey(k)) for k in range(4)]
  assert any(not np.allclose(outs[0], o) for o in outs[1:])
  plain = WideResNet(10, depth=10, widen_factor=1)             # no randomness at all
  ref = _forward(plain, train=True)
  np.testing.assert_array_equal(ref(v, x, jax.random.PRNGKey(0)), ref(v, x, jax.random.PRNGKey(1)))
  np.testing.assert_array_equal(_forward(model)(v, x), _forward(plain)(v, x))


# --------------------------------------------------------------- PyramidNet

def _reference_widths(alpha, num_blocks, start=16, widening="additive"):
  """The official code's widening: accumulate the float width, round per block."""
  width, out = float(start), []
  for _ in range(num_blocks):
    width = width + alpha / num_blocks if widening == "additive" else width * alpha ** (1 / num_blocks)
    out.append(math.floor(width + 0.5))
  return out


def _pyramid_params(depth, alpha, bottleneck=False, widening="additive", stem="cifar",
                    num_classes=10, batch_norm=True):
  """Parameters of a PyramidNet, counted by hand from its widths."""
  if stem == "cifar":
    num_blocks, start, k = 3 * ((depth - 2) // (9 if bottleneck else 6)), 16, 3
  else:
    num_blocks = {200: 66, 18: 8}[depth]
    start, k = 64, 7
  bn = (lambda c: 2 * c) if batch_norm else (lambda c: 0)
  total, c_in = k * k * 3 * start + bn(start), start
  for d in _reference_widths(alpha, num_blocks, start, widening):
    if bottleneck:    # BN, 1x1, BN, 3x3, BN, 1x1 (4d), BN; the shortcut is free
      c_out = 4 * d
      total += bn(c_in) + c_in * d + bn(d) + 9 * d * d + bn(d) + d * c_out + bn(c_out)
    else:             # BN, 3x3, BN, 3x3, BN
      c_out = d
      total += bn(c_in) + 9 * c_in * d + bn(d) + 9 * d * d + bn(d)
    c_in = c_out
  return total + bn(c_in) + c_in * num_classes + num_classes


@pytest.mark.parametrize("kwargs", [
    dict(depth=20, alpha=12),
    dict(depth=29, alpha=24, bottleneck=True),
    dict(depth=20, alpha=3.0, widening="multiplicative"),
    dict(depth=18, alpha=30, stem="imagenet"),
])
def test_pyramid_parameter_count_matches_hand_count(kwargs):
  # Ties the model to the hand count used for the large presets below.
  model = PyramidNet(10, **kwargs)
  assert summary.count_params(model, 32) == _pyramid_params(**kwargs)


def test_pyramid_preset_parameter_count_direct():
  assert _params("pyramidnet110_a48") == _pyramid_params(110, 48)


# (depth, alpha, bottleneck, widening, stem, classes) -> published millions and the
# final feature width ("Output feat. dimension" of github.com/jhkim89/PyramidNet).
PYRAMID_PUBLISHED = {
    "pyramidnet110_a48": (1.7, 64), "pyramidnet110_a84": (3.8, 100),
    "pyramidnet110_a270": (28.3, 286), "pyramidnet110_mul_a4_75": (1.7, 76),
    "pyramidnet110_mul_a8": (3.8, 128), "pyramidnet110_mul_a27": (28.3, 432),
    "pyramidnet164_a48_bottleneck": (1.7, 256), "pyramidnet164_a84_bottleneck": (3.8, 400),
    "pyramidnet164_a270_bottleneck": (27.0, 1144), "pyramidnet200_a240_bottleneck": (26.6, 1024),
    "pyramidnet236_a220_bottleneck": (26.8, 944), "pyramidnet272_a200_bottleneck": (26.0, 864),
    "pyramidnet200_a300_imagenet": (62.1, 1456), "pyramidnet200_a450_imagenet": (116.4, 2056),
}


@pytest.mark.parametrize("name", sorted(PYRAMID_PUBLISHED))
def test_pyramid_published_sizes(name):
  preset = registry.get_preset(name)
  kw = dict(preset.kwargs)
  millions, final_width = PYRAMID_PUBLISHED[name]
  layout = dict(depth=kw["depth"], alpha=kw["alpha"], bottleneck=kw.get("bottleneck", False),
                widening=kw.get("widening", "additive"), stem=kw.get("stem", "cifar"))
  num_blocks = {"cifar": 3 * ((layout["depth"] - 2) // (9 if layout["bottleneck"] else 6)),
                "imagenet": 66}[layout["stem"]]
  widths = block_widths(layout["alpha"], num_blocks, 16 if layout["stem"] == "cifar" else 64,
                        layout["widening"])
  assert widths[-1] * (4 if layout["bottleneck"] else 1) == final_width
  # The authors count conv and dense weights (no BN affine parameters): that gives
  # the large nets within 0.5%. The small CIFAR nets are published as matched
  # budgets (1.7M / 3.8M for basic, bottleneck, additive, multiplicative alike).
  params = _pyramid_params(**layout, num_classes=preset.num_classes, batch_norm=False)
  tolerance = 0.005 if millions > 10 else 0.04
  assert abs(params / 1e6 / millions - 1) <= tolerance


def test_pyramid_widths_grow_by_the_rule():
  for widening, alpha in (("additive", 14), ("multiplicative", 3.0)):
    model = PyramidNet(10, depth=20, alpha=alpha, widening=widening)
    params = summary.init_shapes(model, 32)["params"]
    got = [params[f"stage{s}_block{b}"]["conv2"]["kernel"].shape[-1]
           for s in (1, 2, 3) for b in (1, 2, 3)]
    assert got == _reference_widths(alpha, 9, widening=widening)
    assert got == sorted(got) and got[-1] == round(16 + alpha if widening == "additive" else 16 * alpha)
  params = summary.init_shapes(PyramidNet(10, depth=29, alpha=24, bottleneck=True), 32)["params"]
  inner = [params[f"stage{s}_block{b}"]["conv1"]["kernel"].shape[-1]
           for s in (1, 2, 3) for b in (1, 2, 3)]
  outer = [params[f"stage{s}_block{b}"]["conv3"]["kernel"].shape[-1]
           for s in (1, 2, 3) for b in (1, 2, 3)]
  assert inner == _reference_widths(24, 9) and outer == [4 * d for d in inner]


@pytest.mark.parametrize("widening,alpha", [("additive", 12), ("multiplicative", 2.0)])
def test_pyramid_tiny_forward(widening, alpha):
  model = PyramidNet(10, depth=8, alpha=alpha, widening=widening)
  x = _images(2, 16)
  v = _init(model, x)
  logits = _forward(model)(v, x)
  assert logits.shape == (2, 10) and np.isfinite(logits).all()
  logits = _forward(model, train=True)(v, x)
  assert logits.shape == (2, 10) and np.isfinite(logits).all()


def test_pyramid_shortcut_is_free_pooled_and_zero_padded():
  x = _images(2, 7)                                        # odd size: ceil like the conv
  block = PyramidBlock(5, strides=2)
  v = _init(block, x)
  assert set(v["params"]) == {"bn1", "conv1", "bn2", "conv2", "bn3"}
  branch_only = 2 * 3 + 9 * 3 * 5 + 2 * 5 + 9 * 5 * 5 + 2 * 5
  assert sum(p.size for p in jax.tree.leaves(v["params"])) == branch_only
  assert jax.eval_shape(lambda: block.apply(v, x, train=False)).shape == (2, 4, 4, 5)

  s = pyramid_shortcut(x, 5, 2)
  assert s.shape == (2, 4, 4, 5)
  np.testing.assert_allclose(s[:, 0, 0, :3], x[:, :2, :2].mean(axis=(1, 2)), rtol=1e-6)
  np.testing.assert_allclose(s[:, 3, 3, :3], x[:, 6, 6], rtol=1e-6)   # edge: valid pixels only
  np.testing.assert_array_equal(s[..., 3:], 0)


def test_pyramid_block_has_no_relu_after_the_addition():
  x = 0.01 * jnp.abs(_images(4, 8, key=5))
  x = jnp.concatenate([x, x], axis=-1)                      # 6 channels, all >= 0
  for block, channels in ((PyramidBlock(8), 8), (PyramidBlock(4, bottleneck=True), 16)):
    y = _forward(block, train=True)(_init(block, x), x)
    assert y.shape == (4, 8, 8, channels)
    assert float(y.min()) < 0                               # a ReLU would forbid this


def test_pyramid_bf16_forward_returns_float32_logits():
  model = PyramidNet(10, depth=8, alpha=12, dtype=jnp.bfloat16)
  x = _images(2, 16)
  v = _init(model, x)
  logits = _forward(model)(v, x)
  assert logits.dtype == jnp.float32 and np.isfinite(logits).all()
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v["params"]))


def test_pyramid_stochastic_depth_touches_only_training():
  model = PyramidNet(10, depth=8, alpha=12, regularization=Regularization(stochastic_depth=0.2))
  x = _images(2, 8)
  v = _init(model, x)
  train = _forward(model, train=True)
  outs = [train(v, x, jax.random.PRNGKey(k)) for k in range(4)]
  assert any(not np.allclose(outs[0], o) for o in outs[1:])
  plain = PyramidNet(10, depth=8, alpha=12)
  np.testing.assert_array_equal(_forward(model)(v, x), _forward(plain)(v, x))


def test_pyramid_config_errors_name_the_field():
  with pytest.raises(ValueError, match=r"^depth: .*6n\+2.*got 111"):
    PyramidNet(10, depth=111)
  with pytest.raises(ValueError, match=r"^depth: .*9n\+2.*got 26"):
    PyramidNet(10, depth=26, bottleneck=True)
  with pytest.raises(ValueError, match="^depth: ImageNet"):
    PyramidNet(10, depth=110, bottleneck=True, stem="imagenet")
  with pytest.raises(ValueError, match="^widening:"):
    PyramidNet(10, widening="exponential")
  with pytest.raises(ValueError, match="^alpha:"):
    PyramidNet(10, alpha=0.5, widening="multiplicative")
  with pytest.raises(ValueError, match="^stem:"):
    PyramidNet(10, stem="tiny")
  with pytest.raises(ValueError, match="^depth:"):
    registry.create_model("pyramidnet110_a48", depth=100)
