"""Regularizers do what their papers say, measured statistically (not just shapes).

Cutout (DeVries & Taylor 2017), DropBlock (Ghiasi et al. 2018), stochastic depth
(Huang et al. 2016) and mixup (Zhang et al. 2018): what is dropped or mixed, how
much, how it is rescaled, that evaluation is the identity, and that a fixed RNG key
gives a fixed result.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxcnn import augment
from flaxcnn.models import create_model, layers
from flaxcnn.models.regularization import Regularization

KEY = jax.random.PRNGKey(0)


# ----------------------------------------------------------------------------- Cutout

def _zero_box(mask2d):
  """(y0, y1, x0, x1) of the zero pixels if they form one axis-aligned box, else None."""
  ys, xs = np.nonzero(mask2d)
  if len(ys) == 0:
    return None
  y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
  box = np.zeros_like(mask2d)
  box[y0:y1, x0:x1] = True
  return (y0, y1, x0, x1) if np.array_equal(box, mask2d) else None


def _centres(lo, hi, size, extent):
  """Every centre c in [0, extent) whose clipped square [c - size//2, +size) is [lo, hi)."""
  return [c for c in range(extent)
          if max(c - size // 2, 0) == lo and min(c - size // 2 + size, extent) == hi]


@pytest.mark.parametrize("size", [1, 4, 5, 16])
def test_cutout_zeroes_exactly_one_clipped_square(size):
  n, h, w, c = 512, 12, 10, 3
  x = jax.random.uniform(KEY, (n, h, w, c), minval=1.0, maxval=2.0)   # no zeros
  out = np.asarray(augment.cutout(jax.random.PRNGKey(1), x, size))
  x = np.asarray(x)
  zero = out == 0
  assert np.array_equal(zero, np.repeat(zero[..., :1], c, axis=-1)), "channels differ"
  assert np.array_equal(out[~zero], x[~zero]), "pixels outside the square changed"
  centres_y, centres_x = [], []
  for i in range(n):
    box = _zero_box(zero[i, :, :, 0])
    assert box is not None, f"image {i}: zeros are not one square"
    y0, y1, x0, x1 = box
    cy, cx = _centres(y0, y1, size, h), _centres(x0, x1, size, w)
    assert cy and cx, f"image {i}: {box} is not a clipped {size}x{size} square"
    centres_y += cy if len(cy) == 1 else []
    centres_x += cx if len(cx) == 1 else []
  # Centres are uniform over the image (the square may leave it, then it is clipped);
  # checked where every centre is identifiable from its square (size < extent).
  for centres, extent in ((centres_y, h), (centres_x, w)):
    if len(centres) == n:
      counts = np.bincount(centres, minlength=extent) / len(centres)
      assert np.all(np.abs(counts - 1 / extent) < 0.06), counts


def test_cutout_off_and_deterministic():
  x = jax.random.normal(KEY, (8, 16, 16, 3))
  assert augment.cutout(KEY, x, 0) is x
  a = augment.cutout(jax.random.PRNGKey(3), x, 8)
  b = augment.cutout(jax.random.PRNGKey(3), x, 8)
  c = augment.cutout(jax.random.PRNGKey(4), x, 8)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(np.asarray(a), np.asarray(c))
  assert a.dtype == x.dtype


# ----------------------------------------------------------------------------- DropBlock

def _dropblock(x, keep_prob, block_size, key=KEY, strength=None, per_channel=False,
               train=True):
  module = layers.DropBlock(keep_prob, block_size, per_channel)
  extra = {} if strength is None else {"strength": jnp.float32(strength)}
  return module.apply({}, x, train=train, rngs={"dropout": key}, **extra)


def _expected_drop(h, w, keep_prob, block_size, strength=1.0):
  """Exact expected dropped fraction of the implementation's sampling: seeds with
  probability gamma (the paper's formula, which ignores overlaps) on the valid
  centres; a pixel is dropped if any of the seeds whose block covers it fires."""
  bs = min(block_size, h, w)
  gamma = (1 - keep_prob) * strength / bs ** 2 * h * w / ((h - bs + 1) * (w - bs + 1))
  valid = np.zeros((h, w))
  valid[(bs - 1) // 2:h - bs // 2, (bs - 1) // 2:w - bs // 2] = 1
  # covering[p] = number of valid seeds whose block (same padding as the layer) covers p.
  covering = np.zeros((h, w))
  for dy in range(-(bs // 2), (bs - 1) // 2 + 1):
    for dx in range(-(bs // 2), (bs - 1) // 2 + 1):
      covering += np.roll(np.roll(np.pad(valid, bs), dy, 0), dx, 1)[bs:-bs, bs:-bs]
  return float(np.mean(1 - (1 - gamma) ** covering))


def test_dropblock_drops_about_one_minus_keep_prob_on_large_maps():
  """The paper's gamma counts every seed's block as entirely new, so overlapping
  blocks make the dropped fraction smaller than 1 - keep_prob, by about
  (1 - keep_prob) / 2 relative. On 64x64 maps with block 7 the implementation's exact
  expectation is 0.0947 for keep_prob 0.9 (5% under 0.1) and 0.1796 for 0.8 (10%
  under 0.2). We assert the measurement equals that expectation within sampling
  error (256 maps with ~8 seeds each: std ~0.0016 for 0.9, 8 runs averaged gave
  0.0942 +- 0.0006), and lies between 85% and 100% of 1 - keep_prob (the overlap
  deficit plus 3-4 standard deviations)."""
  x = jnp.ones((256, 64, 64, 1))
  for keep_prob in (0.9, 0.8):
    out = np.asarray(_dropblock(x, keep_prob, 7))
    dropped = float(np.mean(out == 0))
    expected = _expected_drop(64, 64, keep_prob, 7)
    assert abs(dropped - expected) < 0.008, (keep_prob, dropped, expected)
    assert 0.85 * (1 - keep_prob) < dropped < 1 - keep_prob, (keep_prob, dropped)
    assert 0.85 * (1 - keep_prob) < expected < 1 - keep_prob


def _opening(mask, bs):
  """Morphological opening of a 2-D boolean mask by a bs x bs square: the union of
  all bs x bs windows that are entirely inside the mask."""
  h, w = mask.shape
  out = np.zeros_like(mask)
  for y in range(h - bs + 1):
    for x in range(w - bs + 1):
      if mask[y:y + bs, x:x + bs].all():
        out[y:y + bs, x:x + bs] = True
  return out


@pytest.mark.parametrize("block_size", [3, 4, 7])
def test_dropblock_drops_whole_blocks(block_size):
  x = jnp.ones((6, 24, 24, 4))
  out = np.asarray(_dropblock(x, 0.8, block_size, key=jax.random.PRNGKey(block_size)))
  dropped = out == 0
  assert dropped.any()
  # Shared mask: every channel of a position is dropped together.
  assert np.array_equal(dropped, np.repeat(dropped[..., :1], 4, axis=-1))
  for i in range(len(out)):
    mask = dropped[i, :, :, 0]
    # Every dropped pixel lies in a fully dropped block_size x block_size square.
    np.testing.assert_array_equal(_opening(mask, block_size), mask)


def test_dropblock_per_channel_masks_are_independent():
  x = jnp.ones((64, 32, 32, 8))
  out = np.asarray(_dropblock(x, 0.7, 3, per_channel=True))
  dropped = out == 0
  for i in range(2):   # still blocks, per channel
    np.testing.assert_array_equal(_opening(dropped[i, :, :, 0], 3), dropped[i, :, :, 0])
  assert not np.array_equal(dropped[..., 0], dropped[..., 1])
  # Independent channels: P(both dropped) = P(a) P(b).
  a, b = dropped[..., 0].ravel(), dropped[..., 1].ravel()
  joint, product = np.mean(a & b), np.mean(a) * np.mean(b)
  assert abs(joint - product) < 0.25 * product, (joint, product)
  shared = np.asarray(_dropblock(x, 0.7, 3, per_channel=False)) == 0
  assert np.array_equal(shared[..., 0], shared[..., 1])


def test_dropblock_is_identity_at_eval():
  x = jax.random.normal(KEY, (4, 16, 16, 3))
  np.testing.assert_array_equal(_dropblock(x, 0.5, 3, train=False), x)
  np.testing.assert_array_equal(_dropblock(x, 0.5, 3, train=False, strength=1.0), x)
  np.testing.assert_array_equal(_dropblock(x, 1.0, 3), x)   # keep_prob 1: off


def test_dropblock_follows_the_schedule_strength():
  """The strength s it is called with scales the drop rate: keep_prob goes from 1
  (s = 0) to its target (s = 1), linearly in the drop rate."""
  x = jnp.ones((256, 48, 48, 1))
  np.testing.assert_array_equal(_dropblock(x, 0.8, 5, strength=0.0), x)
  fractions = {}
  for s in (0.25, 0.5, 1.0):
    fractions[s] = float(np.mean(np.asarray(_dropblock(x, 0.8, 5, strength=s)) == 0))
    expected = _expected_drop(48, 48, 0.8, 5, strength=s)
    assert abs(fractions[s] - expected) < 0.012, (s, fractions[s], expected)
  assert fractions[0.25] < fractions[0.5] < fractions[1.0]
  assert abs(fractions[0.5] / fractions[1.0] - 0.5) < 0.1
  # Without a strength (the default) the target applies.
  default = float(np.mean(np.asarray(_dropblock(x, 0.8, 5)) == 0))
  assert abs(default - fractions[1.0]) < 0.012


def test_a_model_ramps_dropblock_from_the_step_it_is_given():
  """Ghiasi et al.'s schedule: with dropblock_ramp_steps=R the strength is
  min(step / R, 1); at step 0 a training pass drops nothing, as without DropBlock."""
  reg = Regularization(dropblock_keep_prob=0.8, dropblock_stages=(2,), dropblock_ramp_steps=100)
  assert [float(reg.dropblock_strength(s)) for s in (0, 25, 100, 400)] == [0.0, 0.25, 1.0, 1.0]
  assert float(reg.override(dropblock_ramp_steps=0).dropblock_strength(5)) == 1.0
  kwargs = dict(depth=8, stage_planes=(4, 8, 8), stem_width=4)
  plain = create_model("resnet20_cifar", **kwargs)
  ramped = create_model("resnet20_cifar", dropblock_keep_prob=0.5, dropblock_size=3,
                        dropblock_stages=(2, 3), dropblock_ramp_steps=100, **kwargs)
  x = jax.random.normal(KEY, (2, 16, 16, 3))
  variables = plain.init({"params": KEY, "dropout": KEY}, x, train=False)

  def train(model, step):
    return model.apply(variables, x, train=True, step=step, mutable=["batch_stats"],
                       rngs={"dropout": KEY})[0]
  np.testing.assert_array_equal(train(ramped, jnp.int32(0)), train(plain, jnp.int32(0)))
  assert not np.allclose(train(ramped, jnp.int32(100)), train(plain, jnp.int32(100)))


def test_dropblock_renormalization_preserves_the_mean():
  # Constant input: the batch mean is preserved exactly (scale = count / kept).
  ones = jnp.ones((16, 32, 32, 2))
  out = np.asarray(_dropblock(ones, 0.7, 5))
  assert (out == 0).mean() > 0.15
  assert abs(out.mean() - 1.0) < 1e-5
  kept = out[out != 0]
  np.testing.assert_allclose(kept, kept[0], rtol=1e-6)   # one scale for every kept unit
  # Random input: preserved in expectation.
  x = 1.0 + jax.random.uniform(KEY, (64, 32, 32, 4))
  means = [float(np.mean(np.asarray(_dropblock(x, 0.8, 5, key=jax.random.PRNGKey(k)))))
           for k in range(8)]
  assert abs(np.mean(means) - float(jnp.mean(x))) < 0.01, (np.mean(means), float(jnp.mean(x)))


def test_dropblock_is_deterministic_for_a_key():
  x = jax.random.normal(KEY, (4, 16, 16, 3))
  a = _dropblock(x, 0.7, 3, key=jax.random.PRNGKey(5))
  b = _dropblock(x, 0.7, 3, key=jax.random.PRNGKey(5))
  c = _dropblock(x, 0.7, 3, key=jax.random.PRNGKey(6))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(np.asarray(a), np.asarray(c))


# ----------------------------------------------------------------------------- stochastic depth

def _sd(branch, p, mode, key=KEY, train=True):
  return layers.StochasticDepth(p, mode).apply({}, branch, train=train,
                                               rngs={"dropout": key})


@pytest.mark.parametrize("mode", ["train_scale", "inference_scale"])
@pytest.mark.parametrize("p", [0.5, 0.8])
def test_stochastic_depth_training_mean_matches_inference(mode, p):
  n = 100_000
  branch = 1.0 + jax.random.uniform(KEY, (n, 3))
  train_out = np.asarray(_sd(branch, p, mode, key=jax.random.PRNGKey(1)))
  test_out = np.asarray(_sd(branch, p, mode, train=False))
  branch = np.asarray(branch)
  # Whole examples are kept or dropped.
  kept = np.all(train_out != 0, axis=1)
  assert np.array_equal(kept, np.any(train_out != 0, axis=1))
  assert abs(kept.mean() - p) < 0.01
  scale = 1 / p if mode == "train_scale" else 1.0
  np.testing.assert_allclose(train_out[kept], branch[kept] * scale, rtol=1e-6)
  # Inference: identity (train_scale) or x p (the paper's inference_scale).
  np.testing.assert_allclose(test_out, branch * (1.0 if mode == "train_scale" else p),
                             rtol=1e-6)
  # The mean over the Bernoulli gate equals the inference output.
  ratio = train_out.mean(axis=0) / test_out.mean(axis=0)
  np.testing.assert_allclose(ratio, 1.0, atol=0.02)


def test_stochastic_depth_off_and_deterministic():
  x = jax.random.normal(KEY, (64, 4))
  np.testing.assert_array_equal(_sd(x, 1.0, "train_scale"), x)
  np.testing.assert_array_equal(_sd(x, 1.0, "inference_scale", train=False), x)
  a = _sd(x, 0.5, "train_scale", key=jax.random.PRNGKey(2))
  b = _sd(x, 0.5, "train_scale", key=jax.random.PRNGKey(2))
  np.testing.assert_array_equal(a, b)


def test_survival_probability_linear_rule():
  L, p_L = 54, 0.5
  probs = [layers.survival_probability(l, L, p_L, "linear") for l in range(1, L + 1)]
  np.testing.assert_allclose(probs, [1 - l / L * (1 - p_L) for l in range(1, L + 1)])
  assert probs[-1] == pytest.approx(p_L) and layers.survival_probability(0, L, p_L) == 1.0
  assert all(a > b for a, b in zip(probs, probs[1:]))
  assert all(layers.survival_probability(l, L, 0.7, "constant") == 0.7 for l in range(1, L + 1))
  with pytest.raises(ValueError):
    layers.survival_probability(1, L, 0.0)


def _survival_probs_of(model, x):
  """The survival_prob of every StochasticDepth module a forward pass calls, in order."""
  seen = []

  def interceptor(next_fun, args, kwargs, context):
    if isinstance(context.module, layers.StochasticDepth) and context.method_name == "__call__":
      seen.append(context.module.survival_prob)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    jax.eval_shape(lambda: model.init({"params": KEY, "dropout": KEY}, x, train=False))
  return seen


def test_models_apply_the_linear_rule_over_all_blocks():
  x = jnp.zeros((1, 32, 32, 3))
  # ResNet-110: blocks l = 1..54 over the whole network (Huang et al. 2016).
  probs = _survival_probs_of(create_model("resnet110_cifar", stochastic_depth=0.5), x)
  assert len(probs) == 54
  np.testing.assert_allclose(probs, [1 - l / 54 * 0.5 for l in range(1, 55)])
  probs = _survival_probs_of(create_model("resnet110_cifar", stochastic_depth=0.5,
                                          stochastic_depth_decay="constant"), x)
  np.testing.assert_allclose(probs, [0.5] * 54)
  # WRN-16-4 (6 blocks) and PyramidNet: the same rule.
  probs = _survival_probs_of(create_model("wrn16_4", stochastic_depth=0.8), x)
  np.testing.assert_allclose(probs, [1 - l / 6 * 0.2 for l in range(1, 7)])
  # EfficientNet: the reference's drop connect, block i = 0..N-1 of all N blocks.
  model = create_model("efficientnet_b0", stochastic_depth=0.8)
  n = len(model.blocks)
  np.testing.assert_allclose(model.block_survival_probs, [1 - i / n * 0.2 for i in range(n)])


# A real residual block whose branch is always dropped returns its shortcut.
def _apply_block(block, x, params=None, train=True):
  if params is None:
    params = block.init({"params": KEY, "dropout": KEY}, x, train=False)
  out, _ = block.apply(params, x, train=train, mutable=["batch_stats"],
                       rngs={"dropout": jax.random.PRNGKey(9)})
  return out, params


def _number(name):
  """The layer number of conv3, bn2, ..."""
  return int(name.lstrip("abcdefghijklmnopqrstuvwxyz_"))


def _zero_last_kernel(variables, name_filter):
  """A copy of the variables with the residual branch's last convolution zeroed."""
  params = variables["params"]
  convs = [k for k in params if name_filter(k)]
  last = sorted(convs, key=_number)[-1]
  params = dict(params)
  params[last] = jax.tree.map(jnp.zeros_like, params[last])
  return {**variables, "params": params}


@pytest.mark.parametrize("placement,strides,features", [
    ("full_preact", 1, 8), ("full_preact", 2, 16), ("original", 1, 8), ("original", 2, 16)])
def test_stochastic_depth_never_drops_the_shortcut_of_a_resnet_block(placement, strides,
                                                                      features):
  from flaxcnn.models.resnet import residual_block
  x = jax.random.normal(KEY, (4, 8, 8, 8))
  make = functools.partial(residual_block, placement, planes=features, strides=strides,
                           shortcut="B")
  dropped, variables = _apply_block(make(survival_prob=1e-7), x)
  # The same block with its branch's output forced to zero (last conv kernel = 0,
  # and no BN after it in full pre-activation; 'original' ends conv-BN whose
  # scale we also zero) and no stochastic depth: only the shortcut is left.
  ref_vars = _zero_last_kernel(variables, lambda k: k.startswith("conv"))
  if placement == "original":
    bns = sorted((k for k in ref_vars["params"] if k.startswith("bn")), key=_number)
    p = dict(ref_vars["params"])
    last_bn = bns[-1]            # (a projection keeps its BN inside `shortcut`)
    p[last_bn] = {"scale": jnp.zeros_like(p[last_bn]["scale"]),
                  "bias": jnp.zeros_like(p[last_bn]["bias"])}
    ref_vars = {**ref_vars, "params": p}
  kept_shortcut, _ = _apply_block(make(survival_prob=1.0), x, ref_vars)
  np.testing.assert_allclose(dropped, kept_shortcut, rtol=1e-5, atol=1e-6)
  if strides == 1:   # identity shortcut: the block passes x through (ReLU'd if original)
    expected = x if placement == "full_preact" else jax.nn.relu(x)
    np.testing.assert_allclose(dropped, expected, rtol=1e-6)
  # At inference nothing is dropped.
  test_out, _ = _apply_block(make(survival_prob=1e-7), x, variables, train=False)
  assert not np.allclose(test_out, dropped)


def test_stochastic_depth_passes_the_identity_in_other_families():
  from flaxcnn.models.efficientnet import MBConv
  from flaxcnn.models.wide_resnet import WideBlock
  x = jax.random.normal(KEY, (4, 8, 8, 16))
  for block in (WideBlock(16, survival_prob=1e-7),
                MBConv(16, expand_ratio=4, survival_prob=1e-7)):
    out, _ = _apply_block(block, x)
    np.testing.assert_allclose(out, x, rtol=1e-6)


# ----------------------------------------------------------------------------- mixup

def test_mixup_is_a_convex_combination_with_one_lambda():
  n = 10
  x = jax.random.normal(KEY, (n, 6, 6, 3))
  y = jax.nn.one_hot(jnp.arange(n), n)          # every example its own class
  for seed in range(5):
    mixed, targets = augment.mixup(jax.random.PRNGKey(seed), x, y, 0.4)
    mixed, targets, xs = map(np.asarray, (mixed, targets, x))
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    lams = []
    for i in range(n):
      row = targets[i]
      partner = [j for j in np.nonzero(row > 1e-7)[0] if j != i]
      assert len(partner) <= 1
      lam = row[i]
      if partner:
        j = partner[0]
        assert row[j] == pytest.approx(1 - lam, abs=1e-6)
      else:                                     # paired with itself, or lam = 1
        j = i
      lams.append(lam if partner else None)
      np.testing.assert_allclose(mixed[i], lam * xs[i] + (1 - lam) * xs[j],
                                 rtol=1e-5, atol=1e-5)
    lams = [l for l in lams if l is not None]
    assert lams and np.allclose(lams, lams[0]) and 0 <= lams[0] <= 1


def test_mixup_lambda_follows_beta_alpha_alpha():
  alpha = 0.2
  x = jnp.zeros((2, 1, 1, 1))
  y = jax.nn.one_hot(jnp.array([0, 1]), 2)

  def lam(key):
    # Example 0's own-class mass is lam, or 1 when the permutation keeps it in place.
    _, t = augment.mixup(key, x, y, alpha)
    return t[0, 0], t[0, 1]

  own, other = jax.vmap(lam)(jax.random.split(KEY, 20000))
  own, other = np.asarray(own), np.asarray(other)
  # Swapped pairs (permutation (1, 0), half of the keys) show lam; lam within float32
  # rounding of 1 (about 2% for alpha 0.2) cannot be told from "not swapped", which
  # biases the mean by about -0.01 and the variance by about -0.005.
  swapped = other > 0
  samples = own[swapped]
  assert 0.45 < swapped.mean() < 0.55
  var = 1 / (4 * (2 * alpha + 1))               # Beta(a, a): mean 1/2, variance 1/(4(2a+1))
  assert abs(samples.mean() - 0.5) < 0.025, samples.mean()
  assert abs(samples.var() - var) < 0.015, (samples.var(), var)
  assert (samples < 0.1).mean() > 0.2 and (samples > 0.9).mean() > 0.2   # U-shaped


def test_mixup_off_and_deterministic():
  x = jax.random.normal(KEY, (8, 4, 4, 3))
  y = jax.nn.one_hot(jnp.arange(8) % 3, 3)
  same_x, same_y = augment.mixup(KEY, x, y, 0.0)
  assert same_x is x and same_y is y
  a = augment.mixup(jax.random.PRNGKey(7), x, y, 1.0)
  b = augment.mixup(jax.random.PRNGKey(7), x, y, 1.0)
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)
