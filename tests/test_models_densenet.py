"""Tests of DenseNet (Huang et al. 2017): published sizes, channel growth, variants."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxcnn import backend
from flaxcnn.models import densenet, registry, summary
from flaxcnn.models.densenet import DenseNet, densenet_cifar
from flaxcnn.models.regularization import gather

KEYS = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}


@functools.lru_cache(maxsize=None)
def preset_params(name: str) -> int:
  preset = registry.get_preset(name)
  return summary.count_params(registry.create_model(name), preset.image_size)


def closed_form_params(block_sizes, growth_rate, bottleneck, compression, stem,
                       stem_features, num_classes, bottleneck_width=4):
  """Parameter count of a DenseNet written out layer by layer, independently of
  the module code (convs without bias, BN scale+bias, dense with bias)."""
  k, c = growth_rate, stem_features
  total = 7 * 7 * 3 * c + 2 * c if stem == "imagenet" else 3 * 3 * 3 * c
  for i, n in enumerate(block_sizes):
    for _ in range(n):
      if bottleneck:
        wide = bottleneck_width * k
        total += 2 * c + c * wide + 2 * wide + 9 * wide * k
      else:
        total += 2 * c + 9 * c * k
      c += k
    if i < len(block_sizes) - 1:
      out = int(np.floor(compression * c))
      total += 2 * c + c * out
      c = out
  return total + 2 * c + c * num_classes + num_classes


# torchvision's DenseNet*_Weights.IMAGENET1K_V1 meta: exact 'num_params' and
# '_ops' (GFLOPS, which torchvision counts as multiply-adds) at 224x224.
TORCHVISION = {
    "densenet121": (7_978_856, 2.834),
    "densenet169": (14_149_480, 3.360),
    "densenet201": (20_013_928, 4.291),
    "densenet161": (28_681_000, 7.728),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_imagenet_params_match_torchvision_exactly(name):
  assert preset_params(name) == TORCHVISION[name][0]


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_imagenet_multiply_adds_match_torchvision(name):
  macs = summary.count_macs(registry.create_model(name), 224)
  # Same to all 3 published decimals (far inside the 3% the zoo asks for).
  assert round(macs / 1e9, 3) == TORCHVISION[name][1]


# Table 2 of the paper gives parameters to 0.1M; they agree with 10 classes
# (C10; with 100 classes DenseNet-40-12 would be 1.06M and 100-12 7.08M).
TABLE2 = {
    "densenet_40_12": 1.0, "densenet_100_12": 7.0, "densenet_100_24": 27.2,
    "densenet_bc_100_12": 0.8, "densenet_bc_250_24": 15.3, "densenet_bc_190_40": 25.6,
}


@pytest.mark.parametrize("name", sorted(TABLE2))
def test_cifar_params_match_table2(name):
  assert registry.get_preset(name).num_classes == 10
  assert round(preset_params(name) / 1e6, 1) == TABLE2[name]


@pytest.mark.parametrize("name", registry.list_models("densenet"))
def test_params_match_closed_form(name):
  # DenseNet-264 has no published count (Table 1 gives only its layout, Table 3
  # its error); this checks it, and every other preset, against the layout.
  preset = registry.get_preset(name)
  model = registry.create_model(name)
  expected = closed_form_params(model.block_sizes, model.growth_rate, model.bottleneck,
                                model.compression, model.stem, model.num_stem_features,
                                preset.num_classes, model.bottleneck_width)
  assert preset_params(name) == expected


def test_densenet264_is_the_table1_layout():
  model = registry.create_model("densenet264")
  assert (model.block_sizes, model.growth_rate, model.num_stem_features) == ((6, 12, 64, 48), 32, 64)
  assert model.bottleneck and model.compression == 0.5


@pytest.mark.parametrize("name, depth", [("densenet121", 121), ("densenet169", 169),
                                         ("densenet201", 201), ("densenet161", 161)])
def test_imagenet_depth_counts_stem_convs_transitions_and_classifier(name, depth):
  # 1 stem conv + 2 convs per bottleneck layer + 3 transitions + classifier. By
  # the same count Table 1's DenseNet-264 blocks (6, 12, 64, 48) give 265 layers;
  # the preset keeps the paper's (and its Lua code's) block sizes.
  model = registry.create_model(name)
  assert 1 + 2 * sum(model.block_sizes) + 3 + 1 == depth


def test_imagenet_stem_has_64_channels():
  variables = summary.init_shapes(registry.create_model("densenet121"), 224)
  params = variables["params"]
  assert params["stem_conv"]["kernel"].shape == (7, 7, 3, 64)
  # The first bottleneck sees the 64 stem channels and widens to 4k = 128.
  layer1 = params["block1"]["layer1"]
  assert layer1["conv1"]["kernel"].shape == (1, 1, 64, 128)
  assert layer1["conv2"]["kernel"].shape == (3, 3, 128, 32)


def _block_outputs(model, size=32):
  """Shapes of the outputs of the dense blocks and transitions (no compute)."""
  x = jnp.zeros((1, size, size, 3))
  def run():
    variables = model.init(KEYS, x, train=False)
    return model.apply(variables, x, train=False, capture_intermediates=True,
                       mutable=["intermediates"])[1]["intermediates"]
  inter = jax.eval_shape(run)
  return {name: v["__call__"][0].shape for name, v in inter.items()
          if name.startswith(("block", "transition"))}


@pytest.mark.parametrize("compression", [1.0, 0.5, 0.3])
def test_channels_grow_by_k_per_layer_and_transitions_compress(compression):
  k, sizes, c0 = 5, (3, 4, 2), 11
  model = DenseNet(num_classes=10, block_sizes=sizes, growth_rate=k, bottleneck=True,
                   compression=compression, stem="cifar", stem_features=c0)
  shapes = _block_outputs(model)
  c, hw = c0, 32
  for i, n in enumerate(sizes):
    c += n * k
    assert shapes[f"block{i + 1}"] == (1, hw, hw, c)
    if i < len(sizes) - 1:
      c, hw = int(np.floor(compression * c)), hw // 2
      assert shapes[f"transition{i + 1}"] == (1, hw, hw, c)
  assert "transition3" not in shapes


def test_dense_layers_see_all_preceding_channels():
  k, c0 = 4, 16
  params = summary.init_shapes(densenet_cifar(40, k, bottleneck=False, compression=1.0), 32)["params"]
  for l in range(1, 13):
    kernel = params["block1"][f"layer{l}"]["conv1"]["kernel"]
    assert kernel.shape == (3, 3, c0 + (l - 1) * k, k)


def test_plain_b_c_bc_variants_differ_as_in_the_paper():
  def variant(bottleneck, compression):
    model = densenet_cifar(16, 12, bottleneck=bottleneck, compression=compression)
    return model, summary.init_shapes(model, 32)["params"]

  plain, p_plain = variant(False, 1.0)
  b, p_b = variant(True, 1.0)
  c, p_c = variant(False, 0.5)
  bc, p_bc = variant(True, 0.5)
  # Layers per block: (L-4)/3 single-conv layers, (L-4)/6 bottleneck layers.
  assert plain.block_sizes == c.block_sizes == (4, 4, 4)
  assert b.block_sizes == bc.block_sizes == (2, 2, 2)
  # Stem: 16 channels, 2k for DenseNet-BC.
  assert [m.num_stem_features for m in (plain, b, c, bc)] == [16, 16, 16, 24]
  # B adds a 1x1 conv to 4k channels in front of every 3x3 conv.
  assert set(p_plain["block1"]["layer1"]) == {"norm1", "conv1"}
  assert p_b["block1"]["layer1"]["conv1"]["kernel"].shape == (1, 1, 16, 48)
  assert p_b["block1"]["layer1"]["conv2"]["kernel"].shape == (3, 3, 48, 12)
  # C halves the channels in the transitions; without it they are kept.
  m = 16 + 4 * 12
  assert p_plain["transition1"]["conv"]["kernel"].shape == (1, 1, m, m)
  assert p_c["transition1"]["conv"]["kernel"].shape == (1, 1, m, m // 2)
  m_bc = 24 + 2 * 12
  assert p_bc["transition1"]["conv"]["kernel"].shape == (1, 1, m_bc, m_bc // 2)
  count = lambda p: sum(int(np.prod(v.shape)) for v in jax.tree.leaves(p))
  assert count(p_c) < count(p_plain) and count(p_bc) < count(p_b)


# Forward passes are jitted (one compilation each, instead of one per eager op)
# and use the 'rbg' PRNG, which compiles much faster on CPU than threefry.
def _key(seed):
  return jax.random.key(seed, impl="rbg")


def _init(model, x):
  return jax.jit(lambda x: model.init({"params": _key(0)}, x, train=False))(x)


def _apply(model, variables, x, train, seed=0):
  if not train:
    return jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  return jax.jit(lambda v, x, key: model.apply(
      v, x, train=True, mutable=["batch_stats"], rngs={"dropout": key}))(variables, x, _key(seed))


def _tiny(**kwargs):
  return densenet_cifar(10, 4, num_classes=10, **kwargs)  # DenseNet-BC, 1 layer per block


@pytest.fixture(scope="module")
def tiny_inputs():
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 16, 16, 3))
  return x, _init(_tiny(), x)


def test_tiny_forward_train_and_eval(tiny_inputs):
  x, variables = tiny_inputs
  model = _tiny(dropout=0.2)   # dropout adds no parameters: same variables
  logits = _apply(model, variables, x, train=False)
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  # Dropout is the identity at inference.
  np.testing.assert_allclose(_apply(_tiny(), variables, x, train=False), logits, rtol=1e-5)

  train = jax.jit(lambda v, x, key: model.apply(
      v, x, train=True, mutable=["batch_stats"], rngs={"dropout": key}))
  out1, updates = train(variables, x, _key(3))
  out2, _ = train(variables, x, _key(4))
  assert out1.shape == (2, 10) and np.all(np.isfinite(out1))
  assert not np.allclose(out1, out2)          # dropout is active in training
  assert not np.allclose(out1, logits)        # batch statistics in training
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b),
                       updates["batch_stats"], variables["batch_stats"])
  assert all(jax.tree.leaves(moved))          # every BN updates its running stats


def test_bfloat16_forward_returns_float32_logits(tiny_inputs):
  x, variables = tiny_inputs
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  logits, _ = _apply(_tiny(dtype=jnp.bfloat16), variables, x, train=True)
  assert logits.dtype == jnp.float32 and np.all(np.isfinite(logits))


def test_imagenet_stem_tiny_forward_on_odd_input_size():
  model = DenseNet(num_classes=7, block_sizes=(1, 1), growth_rate=4)
  x = jnp.ones((2, 45, 45, 3))   # 45 -> 23 (7x7/2 conv) -> 12 (max pool) -> 6
  variables = _init(model, x)
  assert _apply(model, variables, x, train=False).shape == (2, 7)


@pytest.mark.parametrize("depth, bottleneck", [(41, False), (37, True), (40 + 3, True), (4, False)])
def test_invalid_depth_raises(depth, bottleneck):
  with pytest.raises(ValueError, match="depth"):
    densenet_cifar(depth, 12, bottleneck=bottleneck)


def test_invalid_depth_through_registry():
  with pytest.raises(ValueError, match="depth"):
    registry.create_model("densenet_bc_100_12", depth=101)
  # Same depth, plain layers: (100-4)/3 = 32 per block.
  assert registry.create_model("densenet_bc_100_12", bottleneck=False).block_sizes == (32, 32, 32)


@pytest.mark.parametrize("kwargs, field", [
    (dict(compression=0.0), "compression"), (dict(compression=1.5), "compression"),
    (dict(stem="tiny"), "stem"), (dict(block_sizes=()), "block_sizes"),
    (dict(growth_rate=0), "growth_rate"), (dict(dropout=1.0), "dropout"),
    (dict(bottleneck_width=0), "bottleneck_width"), (dict(remat_policy="all"), "remat_policy"),
])
def test_invalid_config_raises(kwargs, field):
  with pytest.raises(ValueError, match=field):
    DenseNet(num_classes=10, **gather(kwargs))


# Memory-efficient DenseNet (Pleiss et al. 2017): recomputing the concatenation,
# BN and ReLU (or the whole layer) in the backward pass changes nothing computed.
def _loss_and_grads(model, variables, x):
  def loss(params):
    logits, updates = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                  x, train=True, mutable=["batch_stats"],
                                  rngs={"dropout": _key(7)})
    return jnp.sum(logits ** 2), (logits, updates["batch_stats"])
  return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])


def _relative_error(tree, reference) -> float:
  """The largest, over the leaves, of max|a - ref| / max|ref|."""
  return max(float(np.abs(np.float64(a) - b).max() / max(np.abs(b).max(), 1e-30))
             for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(reference)))


@pytest.mark.parametrize("bottleneck", [True, False])
def test_memory_efficient_gives_identical_outputs_and_gradients(bottleneck):
  """Outputs, loss, gradients and BN statistics of the recomputing variants equal the
  plain model's up to float32 rounding. The tolerance comes from this computation on
  this machine: a float64 evaluation of the plain model is the reference, and each
  float32 variant must land within 4x the plain float32 model's own largest relative
  error of it (sums in another order; a fixed atol tuned on one CPU failed on another)."""
  with jax.enable_x64(True):   # every variant draws the same dropout masks
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 8, 3), jnp.float32)
    # two dense blocks of two layers (a concatenation of several inputs, a transition)
    base = DenseNet(num_classes=10, block_sizes=(2, 2), growth_rate=4, bottleneck=bottleneck,
                    compression=0.5, stem="cifar", **gather(dict(dropout=0.2)))
    variables = _init(base, x)
    reference = _loss_and_grads(base.clone(dtype=jnp.float64),
                                jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables),
                                x.astype(jnp.float64))
    plain = _loss_and_grads(base, variables, x)
    bound = 4 * max(_relative_error(plain, reference), float(np.finfo(np.float32).eps))
    for kwargs in (dict(memory_efficient=True), dict(remat=True, remat_policy="nothing")):
      ours = _loss_and_grads(base.clone(**kwargs), variables, x)
      assert jax.tree.structure(ours) == jax.tree.structure(plain)
      assert _relative_error(ours, reference) <= bound, kwargs


def _saved_residual_bytes(model, x):
  """Bytes the backward pass keeps: the leaves of the VJP closure (shapes only)."""
  variables = jax.eval_shape(lambda: model.init({"params": _key(0)}, x, train=False))
  def residuals(params, batch_stats):
    loss = lambda p: jnp.sum(model.apply({"params": p, "batch_stats": batch_stats}, x,
                                         train=True, mutable=["batch_stats"])[0])
    return jax.vjp(loss, params)[1]
  vjp = jax.eval_shape(residuals, variables["params"], variables["batch_stats"])
  return sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in jax.tree.leaves(vjp))


def test_memory_efficient_keeps_feature_maps_linear_in_depth():
  # Without recomputation each layer keeps its concatenated input (c0 + l*k
  # channels): quadratic in the layers per block. Memory-efficient layers keep
  # only their conv outputs (4k + k channels): linear.
  x = jnp.zeros((2, 8, 8, 3))
  variants = {"plain": {}, "convs": dict(memory_efficient=True),
              "nothing": dict(remat=True, remat_policy="nothing")}
  kept = {(v, depth): _saved_residual_bytes(densenet_cifar(depth, 4, **kwargs), x)
          for v, kwargs in variants.items() for depth in (22, 40)}   # 3, 6 layers per block
  growth = {v: kept[v, 40] / kept[v, 22] for v in variants}
  assert growth["plain"] > 2.2 and growth["convs"] < 2.0 and growth["nothing"] < 2.0
  assert kept["nothing", 40] < kept["convs", 40] < 0.4 * kept["plain", 40]


def test_memory_efficient_keeps_parameter_names():
  shapes = lambda m: jax.tree.map(lambda a: a.shape, summary.init_shapes(m, 8))
  assert shapes(_tiny(memory_efficient=True)) == shapes(_tiny())
  assert registry.create_model("densenet_bc_100_12", remat=True).remat


def _compiled_gradient_temp_bytes(num_layers, x):
  """XLA temporary memory of a dense block's compiled gradient (memory-efficient).
  Compiled with the trainer's CPU options (`backend.compiler_options`), which keep
  the barriers that XLA:CPU's cse_barrier_expander pass would delete."""
  block = densenet.DenseBlock(num_layers, 4, remat_policy="convs")
  v = block.init({"params": _key(0)}, x, train=False)
  def loss(p):
    y, _ = block.apply({"params": p, "batch_stats": v["batch_stats"]}, x, train=True,
                       mutable=["batch_stats"])
    return jnp.sum(y ** 2)
  compiled = jax.jit(jax.grad(loss), compiler_options=backend.compiler_options()).lower(
      v["params"]).compile()
  return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the pass is XLA:CPU's")
def test_memory_efficient_peak_memory_is_linear_in_depth():
  # Kept residuals alone are not the peak: XLA fused every layer's BN/ReLU backward
  # into the gradient sums at the block's end, which kept every recomputed
  # concatenation alive (x2.55 for twice the layers, as the plain block's x2.65).
  # Materializing each layer's gradient share at once keeps the peak linear. From 4
  # to 8 layers (a fifth of the compile time of 6 to 12, the same verdict): x1.71,
  # where the plain block's peak grows x2.37.
  x = jnp.zeros((8, 16, 16, 8))
  growth = _compiled_gradient_temp_bytes(8, x) / _compiled_gradient_temp_bytes(4, x)
  assert growth < 2.1, growth
