"""Tests of the ResNet family (resnet.py) and ResNeXt (resnext.py).

Parameter counts are compared with published figures: exact for torchvision /
timm models (ImageNet, 1000 classes); the papers' rounded numbers for the CIFAR
networks (CIFAR-10, 10 classes, as the papers report them).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxcnn.models import create_model, layers, summary
from flaxcnn.models.resnet import (PLACEMENTS, SHORTCUT_VARIANTS, ResNet, Shortcut,
                                   cifar_resnet, residual_block)
from flaxcnn.models.resnext import cifar_resnext

RNGS = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}


TINY = dict(num_classes=10, stage_planes=(4, 8, 8), stem_width=4)  # tiny CIFAR nets


def _shapes(model, size=32):
  return summary.init_shapes(model, size)


def _random_variables(shapes, seed=0):
  """Variables of the given shapes filled on the host (numpy): random weights,
  unit BN scale/variance, zero biases/means. Much cheaper than `model.init`,
  which runs an extra forward pass op by op on the (shared, slow) test CPU."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path[-1:])
    if "scale" in name or "var" in name or "strength" in name:
      return jnp.ones(leaf.shape, leaf.dtype)
    if "bias" in name or "mean" in name:
      return jnp.zeros(leaf.shape, leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1])) or 1
    return jnp.asarray(rng.normal(size=leaf.shape) * np.sqrt(2.0 / fan_in), leaf.dtype)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def _init(model, size=16, batch=2):
  x = jnp.asarray(np.random.default_rng(2).normal(size=(batch, size, size, 3)), jnp.float32)
  return _random_variables(summary.init_shapes(model, size)), x


def _train_apply(model, variables, x, seed=3):
  y, _ = model.apply(variables, x, train=True, mutable=["batch_stats"],
                     rngs={"dropout": jax.random.PRNGKey(seed)})
  return y


# --- Published parameter counts and multiply-adds -------------------------------

EXACT = {  # torchvision (resnet*, resnext50_32x4d, resnext101_32x8d) and timm counts
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "se_resnet50": 28_088_024,            # timm seresnet50
    "resnext50_32x4d": 25_028_904, "resnext101_32x8d": 88_791_336,
    "resnext101_32x4d": 44_177_704,       # timm
    "se_resnext50_32x4d": 27_559_896,     # timm seresnext50_32x4d
    "wrn50_2": 68_883_240,                # torchvision wide_resnet50_2
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_imagenet_param_counts_exact(name):
  assert summary.count_params(create_model(name), 224) == EXACT[name]


ROUNDED = {  # (millions as printed in the paper, paper)
    "resnet20_cifar": 0.27, "resnet32_cifar": 0.46, "resnet44_cifar": 0.66,
    "resnet56_cifar": 0.85, "resnet110_cifar": 1.7, "resnet1202_cifar": 19.4,  # He 2015
    "preact_resnet164_cifar": 1.7, "preact_resnet1001_cifar": 10.2,            # He 2016
    "resnext29_8x64d": 34.4, "resnext29_16x64d": 68.1,                         # Xie 2017
}


def _cifar_param_count(name):
  """Parameters of a CIFAR preset. Tracing the 1202- and 1001-layer nets takes
  ~10 s each on the test CPU, so for stages of n > 20 identical blocks the count
  is extrapolated exactly from the same net with 1 and 2 blocks per stage: every
  block after the first of a stage has the same parameters, so P(n) is affine in n.
  (`python -m flaxcnn.models.summary NAME` counts the full nets.)"""
  model = create_model(name)
  n = model.stage_sizes[0]
  if n <= 20:
    return summary.count_params(model)
  assert model.stage_sizes == (n, n, n)
  p1, p2 = (summary.count_params(model.clone(stage_sizes=(k, k, k))) for k in (1, 2))
  return p1 + (n - 1) * (p2 - p1)


def test_cifar_param_count_extrapolation_is_exact():
  model = create_model("resnet110_cifar")  # n = 18
  p1, p2 = (summary.count_params(model.clone(stage_sizes=(k, k, k))) for k in (1, 2))
  assert summary.count_params(model) == p1 + 17 * (p2 - p1)


@pytest.mark.parametrize("name", sorted(ROUNDED))
def test_cifar_param_counts_rounded(name):
  # Within half a unit of the printed digit, or 0.5%: ResNeXt-29 16x64d counts
  # 68.16M (68.05M without its BatchNorm parameters); preact ResNet-1001 counts
  # 10.33M (10.18M without BatchNorm), so those two figures seem to leave out BN.
  millions = ROUNDED[name]
  decimals = len(str(millions).split(".")[1])
  count = _cifar_param_count(name)
  tolerance = max(0.5 * 10 ** -decimals, 0.015 * millions * (name == "preact_resnet1001_cifar"),
                  0.005 * millions) + 1e-9
  assert abs(count / 1e6 - millions) <= tolerance, count


MACS = {"resnet18": 1.8e9, "resnet34": 3.6e9, "resnet50": 4.09e9,  # torchvision / He 2015
        "resnet101": 7.8e9, "resnet152": 11.5e9,
        "resnext50_32x4d": 4.2e9}                                   # Xie 2017, Table 3


@pytest.mark.parametrize("name", sorted(MACS))
def test_multiply_adds(name):
  assert summary.count_macs(create_model(name), 224) == pytest.approx(MACS[name], rel=0.03)


# --- Shortcuts ------------------------------------------------------------------

def test_option_a_adds_no_parameters():
  a = summary.count_params(create_model("resnet20_cifar", shortcut="A"))
  b = summary.count_params(create_model("resnet20_cifar", shortcut="B"))
  plain = summary.count_params(create_model("plain20_cifar"))
  # B differs only by the two projections (16->32 and 32->64, stride 2, 1x1 conv + BN).
  projections = 0
  for cin, cout in ((16, 32), (32, 64)):
    x = jnp.zeros((1, 8, 8, cin))
    v = jax.eval_shape(lambda: Shortcut(cout, 2, kind="B").init(RNGS, x, x, train=False))
    projections += sum(int(np.prod(p.shape)) for p in jax.tree.leaves(v["params"]))
  assert projections == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
  assert b - a == projections
  assert a == plain  # option A's shortcut is parameter-free, like no shortcut at all


def test_option_c_projects_every_block():
  count = lambda v: sum(1 for k, block in v["params"].items()
                        if k.startswith("stage") and "shortcut" in block)
  assert count(_shapes(create_model("resnet20_cifar", shortcut="B"))) == 2
  assert count(_shapes(create_model("resnet20_cifar", shortcut="C"))) == 9
  assert count(_shapes(create_model("resnet20_cifar", shortcut="A"))) == 0


def test_dropout_shortcut_is_half_the_shortcut_in_expectation():
  """He et al. 2016, Section 3.1: dropout 0.5 on the shortcut, read as lambda = 0.5
  constant scaling in expectation: training keeps or zeroes x (not 2x), inference 0.5x."""
  x = jnp.ones((64, 4, 4, 8))
  shortcut = Shortcut(8, 1, kind="B", variant="dropout_shortcut")
  train, _ = shortcut.apply({}, x, x, train=True, rngs={"dropout": jax.random.PRNGKey(0)})
  assert set(np.unique(np.asarray(train))) == {0.0, 1.0}
  assert abs(float(train.mean()) - 0.5) < 0.02       # 8,192 Bernoulli(0.5) draws: sd 0.006
  test, factor = shortcut.apply({}, x, x, train=False)
  np.testing.assert_array_equal(test, 0.5 * x)
  assert factor is None


def test_option_a_shortcut_is_zero_padded_identity():
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 4, 4, 2))
  y = layers.shortcut_a(x, 5, 2)
  np.testing.assert_array_equal(y[..., :2], x[:, ::2, ::2, :])
  np.testing.assert_array_equal(y[..., 2:], 0)


# --- Pre-activation and placements ------------------------------------------------

def _block_with_zero_last_conv(placement):
  block = residual_block(placement, planes=4)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 4)), jnp.float32)
  v = _random_variables(jax.eval_shape(lambda: block.init(RNGS, x, train=False)))
  return block, v, x


def test_full_preact_block_ends_with_conv():
  block, v, x = _block_with_zero_last_conv("full_preact")
  y = block.apply(v, x, train=False)
  assert (y < 0).any()                                  # no activation at the output
  assert not np.allclose(y, jax.nn.relu(y))
  assert sorted(v["params"]) == ["bn1", "bn2", "conv1", "conv2"]   # each BN before a conv
  # The last op of the branch is a conv: zeroing its kernel makes the block an
  # exact identity mapping (He et al. 2016), while the original block gives relu(x).
  params = dict(v["params"])
  params["conv2"] = {"kernel": jnp.zeros_like(params["conv2"]["kernel"])}
  np.testing.assert_allclose(block.apply({**v, "params": params}, x, train=False), x,
                             atol=1e-6)
  block, v, x = _block_with_zero_last_conv("original")
  params = dict(v["params"])
  params["conv2"] = {"kernel": jnp.zeros_like(params["conv2"]["kernel"])}
  params["bn2"] = {"scale": jnp.zeros(4), "bias": jnp.zeros(4)}
  np.testing.assert_allclose(block.apply({**v, "params": params}, x, train=False),
                             jax.nn.relu(x), atol=1e-6)


def test_full_preact_network_has_final_bn_relu():
  params = _shapes(create_model("preact_resnet110_cifar", depth=8, **TINY))["params"]
  # The stem is a bare conv (the first block starts with BN-ReLU); after the last
  # block, whose output is a conv's, comes the network's final BN (+ ReLU).
  assert [k for k in params if k.endswith("bn")] == ["final_bn"]
  original = _shapes(create_model("resnet110_cifar", depth=8, **TINY))["params"]
  assert [k for k in original if k.endswith("bn")] == ["stem_bn"]


def test_every_identity_mapping_variant_runs():
  # He et al. 2016 Table 1 (shortcuts) and Figure 4 (placements), on a depth-8 net.
  nets = [dict(shortcut_variant=v, shortcut="B") for v in SHORTCUT_VARIANTS]
  nets += [dict(placement=p) for p in PLACEMENTS]
  for kwargs in nets:
    model = cifar_resnet(8, **TINY, **kwargs)
    v, x = _init(model)
    y = _train_apply(model, v, x)
    assert y.shape == (2, 10) and bool(jnp.isfinite(y).all()), kwargs
    gated = "gate" in v["params"]["stage1_block1"].get("shortcut", {})
    assert gated == ("gating" in kwargs.get("shortcut_variant", "")), kwargs


# --- Squeeze-and-excitation -------------------------------------------------------

def test_squeeze_excite_is_a_per_channel_gate():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 5, 32)) + 1.0, jnp.float32)
  se = layers.SqueezeExcite(hidden=2)
  v = _random_variables(jax.eval_shape(lambda: se.init(RNGS, x)))
  gate = se.apply(v, x) / x
  np.testing.assert_allclose(gate, jnp.broadcast_to(gate[:, :1, :1, :], gate.shape), rtol=1e-4)
  assert bool(((gate > 0) & (gate < 1)).all())


def test_se_resnet_block_has_squeeze_excite_before_addition():
  block = residual_block(planes=16, bottleneck=True, se_reduction=16)
  v = jax.eval_shape(lambda: block.init(RNGS, jnp.ones((1, 4, 4, 64)), train=False))
  se = v["params"]["se"]
  assert se["reduce"]["kernel"].shape == (1, 1, 64, 4)      # C / 16 hidden units
  assert se["expand"]["kernel"].shape == (1, 1, 4, 64)


# --- ResNeXt --------------------------------------------------------------------

def test_resnext_grouped_bottleneck_widths():
  # ResNeXt-29 (Xie et al. 2017), 4x2d, one block per stage: bottleneck width C*d = 8
  # for the 64 planes of stage 1, output 4 * 64 = 256.
  model = cifar_resnext(depth=11, cardinality=4, width=2, num_classes=10)
  block = _shapes(model)["params"]["stage1_block1"]
  assert block["conv2"]["kernel"].shape == (3, 3, 2, 8)   # 4 groups of 2 channels
  assert block["conv3"]["kernel"].shape == (1, 1, 8, 256)
  stage3 = _shapes(model)["params"]["stage3_block1"]
  assert stage3["conv2"]["kernel"].shape == (3, 3, 8, 32)  # width doubles per stage
  with pytest.raises(ValueError, match="width_per_group"):
    cifar_resnext(depth=11, cardinality=4, width=2, num_classes=10, stage_planes=(8, 16, 32))


def test_imagenet_stem_tiny_forward_any_size():
  # ImageNet stem, bottleneck with groups, SE, full pre-activation, gates; 36x36 input.
  model = ResNet(num_classes=7, stage_sizes=(1, 1), stage_planes=(16, 16),
                 stem_width=8, bottleneck=True, groups=2, width_per_group=8, se_reduction=4,
                 placement="full_preact", shortcut_variant="exclusive_gating")
  v, x = _init(model, size=36)
  y = _train_apply(model, v, x)
  assert y.shape == (2, 7) and bool(jnp.isfinite(y).all())


# --- dtype, config errors, regularizers ---------------------------------------------

def test_bf16_forward_returns_float32_logits():
  model = cifar_resnet(8, **TINY, dtype=jnp.bfloat16)
  v, x = _init(model)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v["params"]))
  y = model.apply(v, x, train=False)
  assert y.dtype == jnp.float32 and bool(jnp.isfinite(y).all())


@pytest.mark.parametrize("kwargs, field", [
    (dict(depth=21), "depth"),
    (dict(shortcut="D"), "shortcut"),
    (dict(placement="post"), "placement"),
    (dict(shortcut_variant="gating"), "shortcut_variant"),
    (dict(dropblock_stages=(4,)), "dropblock_stages"),
    # DropBlock on no stage would silently train without it.
    (dict(dropblock_keep_prob=0.9), "dropblock_keep_prob=0.9 applies to no stage"),
    (dict(groups=4), "groups"),
    (dict(stochastic_depth=0.0), "stochastic_depth"),
])
def test_config_errors_name_the_field(kwargs, field):
  with pytest.raises(ValueError, match=field):
    create_model("resnet20_cifar", **kwargs)


def test_bottleneck_cifar_depth_and_imagenet_depth_errors():
  with pytest.raises(ValueError, match=r"depth.*9n\+2"):
    create_model("preact_resnet164_cifar", depth=30)
  with pytest.raises(ValueError, match="depth"):
    create_model("resnet50", depth=42)
  with pytest.raises(ValueError, match="unknown model preset"):
    create_model("resnet51")


def test_stochastic_depth_changes_train_not_eval_outputs():
  plain = cifar_resnet(8, **TINY)
  sd = cifar_resnet(8, stochastic_depth=0.5, **TINY)  # p_L = 0.5, linear decay
  v, x = _init(plain, batch=4)
  np.testing.assert_array_equal(plain.apply(v, x, train=False), sd.apply(v, x, train=False))
  assert not np.allclose(_train_apply(plain, v, x), _train_apply(sd, v, x))
  # inference_scale: the branch is multiplied by p_l at test time instead.
  sd_inf = cifar_resnet(8, stochastic_depth=0.5, stochastic_depth_mode="inference_scale",
                        **TINY)
  assert not np.allclose(plain.apply(v, x, train=False), sd_inf.apply(v, x, train=False))


def test_dropblock_only_in_selected_stages():
  plain = cifar_resnet(8, **TINY)
  db = cifar_resnet(8, dropblock_keep_prob=0.5, dropblock_size=3, dropblock_stages=(2, 3), **TINY)
  v, x = _init(plain)
  np.testing.assert_array_equal(plain.apply(v, x, train=False), db.apply(v, x, train=False))
  assert not np.allclose(_train_apply(plain, v, x), _train_apply(db, v, x))
  # DropBlock sits in stages 2 and 3 only, after each conv unit and the shortcut.
  called = []

  def record(f, args, kwargs, context):
    if isinstance(context.module, layers.DropBlock):
      called.append("/".join(context.module.path))
    return f(*args, **kwargs)
  with nn.intercept_methods(record):
    _train_apply(db, v, x)
  assert sorted(called) == [f"stage{s}_block1/{d}" for s in (2, 3)
                            for d in ("dropblock1", "dropblock2", "shortcut_dropblock")]


def test_cifar_resnet_train_step_shapes():
  model = create_model("resnet20_cifar", depth=8, **TINY)
  v, x = _init(model)
  y, state = model.apply(v, x, train=True, mutable=["batch_stats"])
  assert y.shape == (2, 10) and y.dtype == jnp.float32
  changed = jax.tree.map(lambda a, b: bool((a != b).any()), v["batch_stats"],
                         state["batch_stats"])
  assert all(jax.tree.leaves(changed))
