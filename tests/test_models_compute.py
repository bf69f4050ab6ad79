"""Compute-saving model options and the paper's v1 bottleneck:
per-mini-batch stochastic depth that skips dropped blocks, remat, scanned blocks and
their parameter layout conversion, ResNet v1 (stride in the first 1x1)."""
import functools
import os
import platform

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxcnn import backend, hugepages
from flaxcnn.models import create_model, layers, summary
from flaxcnn.models import efficientnet as E
from flaxcnn.models.pyramidnet import PyramidBlock
from flaxcnn.models.regularization import gather
from flaxcnn.models.resnet import PostActBlock, PreActBlock, residual_block
from flaxcnn.models.wide_resnet import WideBlock

KEY = jax.random.PRNGKey(0)
TINY_EFFNET = dict(stages=(E.Stage(1, 3, 1, 8, 1, fused=True, se_ratio=0.0),
                           E.Stage(4, 3, 2, 8, 4, fused=True, se_ratio=0.0),
                           E.Stage(2, 3, 1, 8, 3)), stem_features=8, head_features=16)
RESNET = dict(depth=20, stage_planes=(4, 8, 8), stem_width=4)          # 3 blocks per stage
FAMILIES = {   # tiny nets with >= 3 blocks per stage
    "resnet": ("resnet20_cifar", RESNET),
    "preact": ("preact_resnet110_cifar", RESNET),
    "wrn": ("wrn16_4", dict(depth=22, widen_factor=1)),
    "pyramidnet": ("pyramidnet110_a48", dict(depth=14, alpha=4)),
    "resnext": ("resnext29_8x64d", dict(depth=20, stage_planes=(4, 8, 8), stem_width=4,
                                        cardinality=2, width=32)),
    "efficientnet": ("efficientnet_b0", TINY_EFFNET),
}
BLOCKS = (PostActBlock, PreActBlock, WideBlock, PyramidBlock, E.MBConv)


def _block(cls, **kwargs):
  """A block of class (or factory) `cls`, regularizer settings given flat."""
  return cls(**gather(kwargs))


def _x(n=4, size=16, seed=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(n, size, size, 3)), jnp.float32)


def _init(model, x):
  return jax.jit(lambda: model.init({"params": KEY, "dropout": KEY}, x))()


# ----------------------------------------------------------------------------- per-batch SD

BLOCK_CASES = {   # identity-shortcut blocks of every family (input 8 channels)
    "resnet_preact": (residual_block, dict(planes=8, placement="full_preact")),
    "resnext": (residual_block, dict(planes=2, bottleneck=True, groups=2, width_per_group=32,
                                    placement="full_preact")),
    "wrn": (WideBlock, dict(features=8, dropout=0.3)),
    "pyramidnet": (PyramidBlock, dict(features=12)),     # zero-padded identity 8 -> 12
    "mbconv": (E.MBConv, dict(features=8, expand_ratio=2)),
    "fused_mbconv": (E.MBConv, dict(features=8, expand_ratio=2, fused=True, se_ratio=0.0)),
}


@pytest.mark.parametrize("case", sorted(BLOCK_CASES))
def test_per_batch_block_is_its_shortcut_or_its_scaled_branch(case):
  """One draw for the whole batch: the output is the shortcut (BN stats untouched)
  or shortcut + F(x) / p (BN stats updated exactly as without stochastic depth)."""
  cls, kwargs = BLOCK_CASES[case]
  x = jax.random.normal(KEY, (2, 6, 6, 8))
  make = functools.partial(_block, cls, stochastic_depth_per="batch", **kwargs)
  variables = make().init({"params": KEY, "dropout": KEY}, x, train=False)
  rngs = {"dropout": jax.random.PRNGKey(5)}
  full, full_stats = make(dropout=0.0) if case == "wrn" else make(), None
  full, full_stats = full.apply(variables, x, train=True, mutable=["batch_stats"], rngs=rngs)
  sc = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, full.shape[-1] - 8)))
  kw = dict(dropout=0.0) if case == "wrn" else {}
  step = jax.jit(lambda v, k: make(survival_prob=0.5, **kw).apply(
      v, x, train=True, mutable=["batch_stats"], rngs={"dropout": k}))
  # Gradients (the kept branch saves only its conv outputs and recomputes the rest).
  r = jax.random.normal(jax.random.PRNGKey(9), full.shape)
  def loss(m, params, k):
    out, _ = m.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"],
                     rngs={"dropout": k})
    return jnp.sum(out * r)
  grad = jax.jit(jax.grad(functools.partial(loss, make(survival_prob=0.5, **kw)), argnums=0))
  full_grad = jax.jit(jax.grad(functools.partial(loss, make(**kw))))(variables["params"], KEY)
  scale = max(float(np.abs(leaf).max()) for leaf in jax.tree.leaves(full_grad))
  outcomes = []
  for seed in range(10):
    out, stats = step(variables, jax.random.PRNGKey(seed))
    g = grad(variables["params"], jax.random.PRNGKey(seed))
    dropped = bool(np.array_equal(out, sc))
    outcomes.append(dropped)
    if dropped:
      jax.tree.map(np.testing.assert_array_equal, stats["batch_stats"], variables["batch_stats"])
      assert not any(np.any(leaf) for leaf in jax.tree.leaves(g))
    else:
      np.testing.assert_allclose(out, sc + 2.0 * (full - sc), rtol=1e-4, atol=1e-5)
      jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7),
                   stats["batch_stats"], full_stats["batch_stats"])
      jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-5 * scale),
                   g, jax.tree.map(lambda b: 2.0 * b, full_grad))
  assert 0 < sum(outcomes) < 10
  # Inference with the 'inference_scale' form: the branch times p.
  inf = make(survival_prob=0.5, stochastic_depth_mode="inference_scale")
  ref = make().apply(variables, x, train=False)
  np.testing.assert_allclose(inf.apply(variables, x, train=False), sc + 0.5 * (ref - sc),
                             rtol=1e-5, atol=1e-6)


def _cond_residuals(case):
  """(the block's per-batch cond's activation-shaped outputs, whether the jaxpr
  of its gradient has reduce_precision ops)."""
  cls, kwargs = {**BLOCK_CASES, "resnet": (residual_block, dict(planes=8))}[case]   # + post-act
  x = jax.random.normal(KEY, (2, 6, 6, 8))
  make = functools.partial(_block, cls, stochastic_depth_per="batch", **kwargs)
  variables = make().init({"params": KEY, "dropout": KEY}, x, train=False)

  def loss(params):
    out, _ = make(survival_prob=0.5).apply({**variables, "params": params}, x, train=True,
                                           mutable=["batch_stats"], rngs={"dropout": KEY})
    return out.sum()
  jaxpr = jax.make_jaxpr(jax.grad(loss))(variables["params"]).jaxpr
  forward = next(e for e in jaxpr.eqns if e.primitive.name == "cond")
  activations = [v for v in forward.outvars if v.aval.shape[:3] == x.shape[:3]]
  return len(activations), "reduce_precision" in str(jaxpr)


@pytest.mark.parametrize("case,convs", [("resnet", 2), ("resnet_preact", 2), ("mbconv", 3)])
def test_per_batch_block_carries_only_conv_outputs_to_the_backward_pass(case, convs, monkeypatch):
  """Untuned, the cond of a kept/dropped block returns its output, its input and
  one residual per convolution (remat: BN and activations are recomputed in the
  backward pass): a dropped block zero-fills those few slots instead of every
  intermediate."""
  monkeypatch.setitem(backend._state, "tuned", False)
  count, _ = _cond_residuals(case)
  assert 2 <= count <= 2 + convs


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU tuning")
@pytest.mark.parametrize("case", ["resnet", "resnet_preact", "mbconv"])
def test_tuned_per_batch_block_keeps_bn_inputs_without_remat_copies(case, monkeypatch):
  """With the CPU tuning, the branch runs without remat (whose reduce_precision
  copies of every saved output cost a pass over memory each on XLA:CPU), and
  BatchNorm's closed-form VJP keeps fewer residual slots than flax's would."""
  count, has_reduce_precision = _cond_residuals(case)
  assert not has_reduce_precision
  monkeypatch.setattr(layers, "BatchNorm", nn.BatchNorm)
  assert count < _cond_residuals(case)[0]


def _block_outputs(model, variables, x, key):
  """Train-mode outputs of every block (in order) and the updated batch stats."""
  def run(v, x, k):
    return model.apply(v, x, train=True, rngs={"dropout": k},
                       mutable=["batch_stats", "intermediates"],
                       capture_intermediates=lambda m, name: isinstance(m, BLOCKS)
                       and name == "__call__")
  logits, state = jax.jit(run)(variables, x, key)
  flat = jax.tree_util.tree_flatten_with_path(state["intermediates"])[0]
  outs = {jax.tree_util.keystr(p[:-2]): v for p, v in flat}
  return logits, outs, state["batch_stats"]


@pytest.mark.parametrize("family", ["resnet"])
def test_per_batch_stochastic_depth_skips_whole_blocks_of_a_network(family):
  name, kwargs = FAMILIES[family]
  model = create_model(name, num_classes=3, stochastic_depth=0.5, stochastic_depth_decay="constant",
                       stochastic_depth_per="batch", **kwargs)
  x = _x(n=2, size=8)
  variables = _init(model, x)
  dropped_counts = []
  for seed in range(4):
    logits, outs, stats = _block_outputs(model, variables, x, jax.random.PRNGKey(seed))
    assert np.isfinite(logits).all()
    names = list(outs)
    dropped = 0
    for prev, cur in zip(names, names[1:]):
      a, b = np.asarray(outs[prev]), np.asarray(outs[cur])
      if a.shape[:3] != b.shape[:3] or (family != "pyramidnet" and a.shape != b.shape):
        continue                 # a downsampling / widening block: its shortcut changes x
      block = cur.strip("[]'").split("']['")[0]
      old, new = variables["batch_stats"][block], stats[block]
      same = [np.array_equal(u, v) for u, v in zip(jax.tree.leaves(old), jax.tree.leaves(new))]
      # identity shortcut (zero-padded channels in PyramidNet)
      passes = np.array_equal(b[..., :a.shape[-1]], a) and not b[..., a.shape[-1]:].any()
      assert all(same) == passes and (all(same) or not any(same)), (block, same)
      dropped += passes
    dropped_counts.append(dropped)
  assert sum(dropped_counts) > 0 and len(set(dropped_counts)) > 1


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_per_batch_stochastic_depth_is_one_cond_per_residual_block(family):
  name, kwargs = FAMILIES[family]
  x = jnp.zeros((1, 8, 8, 3))
  counts = []
  for per in ("example", "batch"):
    model = create_model(name, num_classes=3, stochastic_depth=0.5, stochastic_depth_per=per,
                         **kwargs)
    v = jax.eval_shape(lambda: model.init({"params": KEY, "dropout": KEY}, x))
    jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x, train=True, rngs={"dropout": KEY},
                                                 mutable=["batch_stats"]))(v)
    counts.append(str(jaxpr).count(" cond["))
  residual = {"resnet": 9, "preact": 9, "wrn": 9, "pyramidnet": 6, "resnext": 6,
              "efficientnet": 6}[family]   # (block 1 has p = 1)
  assert counts == [0, residual]


def _convolutions_by_place(hlo: str):
  """(convolutions outside every conditional branch, [convolutions of each
  conditional's branches]) of a compiled HLO module's text."""
  bodies, name = {}, None
  for line in hlo.splitlines():
    if line and not line.startswith(" ") and "{" in line and "(" in line:
      name = line.split()[1] if line.startswith("ENTRY") else line.split()[0]
      bodies[name.lstrip("%")] = 0
    elif name and " convolution(" in line:
      bodies[name.lstrip("%")] += 1
  branches = []
  for line in hlo.splitlines():
    if " conditional(" in line:
      names = line.split("branch_computations={")[1].split("}")[0].split(",")
      branches.append([bodies[n.strip().lstrip("%")] for n in names])
  inside = {n.strip().lstrip("%") for line in hlo.splitlines() if " conditional(" in line
            for n in line.split("branch_computations={")[1].split("}")[0].split(",")}
  return sum(c for n, c in bodies.items() if n not in inside), branches


@pytest.mark.parametrize("scan", [False, True])
def test_a_dropped_blocks_convolutions_run_only_inside_its_branch(scan):
  """The compiled training gradient of a per-batch stochastic-depth ResNet: every
  block with p < 1 is a conditional (forward and backward) whose skip branch has no
  convolution, and the convolutions outside the conditionals plus those of the
  run branches are exactly the convolutions of the same net without stochastic
  depth: no branch is computed outside its conditional (and so for a dropped block)."""
  x, y = _x(n=2, size=8), jnp.array([0, 1])

  def convolutions(**kwargs):
    model = create_model("resnet20_cifar", num_classes=3, scan_blocks=scan, **RESNET,
                         **kwargs)
    v = _init(model, x)

    def loss(params, key):
      logits, _ = model.apply({**v, "params": params}, x, train=True, rngs={"dropout": key},
                              mutable=["batch_stats"])
      return -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1).sum()
    hlo = jax.jit(jax.grad(loss), compiler_options=backend.compiler_options()).lower(
        v["params"], KEY).compile().as_text()
    return _convolutions_by_place(hlo)

  plain, no_branches = convolutions()
  outside, branches = convolutions(stochastic_depth=0.5, stochastic_depth_per="batch")
  assert not no_branches and branches
  assert all(len(b) == 2 and min(b) == 0 and max(b) > 0 for b in branches), branches
  assert outside + sum(max(b) for b in branches) == plain


@pytest.mark.parametrize("kwargs", [dict(shortcut="none", stochastic_depth=0.5,
                                         stochastic_depth_per="batch"),
                                    dict(stochastic_depth_per="mini-batch")])
def test_per_batch_stochastic_depth_config_errors(kwargs):
  with pytest.raises(ValueError, match="stochastic_depth_per"):
    create_model("resnet20_cifar", **kwargs)


# ----------------------------------------------------------------------------- scan and remat

def _loss(model, variables, x, params):
  logits, _ = model.apply({**variables, "params": params}, x, train=True,
                          mutable=["batch_stats"], rngs={"dropout": KEY})
  return jnp.mean(logits ** 2)


def _nparams(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


@pytest.mark.parametrize("family", ["resnet", "wrn", "efficientnet"])
def test_scanned_blocks_match_unscanned_with_converted_weights(family):
  name, kwargs = FAMILIES[family]
  if family == "efficientnet":   # no randomness: the two layouts draw differently
    kwargs = dict(kwargs, stochastic_depth=1.0, dropout=0.0)
  plain = create_model(name, num_classes=3, **kwargs)
  scanned = create_model(name, num_classes=3, scan_blocks=True, **kwargs)
  x = _x(n=2, size=8)
  v_plain = _init(plain, x)
  v_scan = _init(scanned, x)
  groups = scanned.scan_groups
  assert groups and all(g[0] in v_scan["params"] for g in groups)
  assert _nparams(v_scan["params"]) == _nparams(v_plain["params"])
  # The layouts convert both ways, exactly.
  converted = layers.stack_blocks(v_plain, groups)
  assert jax.tree.structure(converted) == jax.tree.structure(v_scan)
  back = layers.unstack_blocks(converted, groups)
  jax.tree.map(np.testing.assert_array_equal, back, v_plain)
  assert jax.tree.structure(layers.unstack_blocks(v_scan, groups)) == jax.tree.structure(v_plain)
  # Same logits (inference and training) and gradients.
  np.testing.assert_allclose(scanned.apply(converted, x), plain.apply(v_plain, x),
                             rtol=1e-5, atol=1e-5)
  g_plain = jax.jit(jax.grad(functools.partial(_loss, plain, v_plain, x)))(v_plain["params"])
  g_scan = jax.jit(jax.grad(functools.partial(_loss, scanned, converted, x)))(converted["params"])
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-5),
               layers.unstack_blocks({"params": g_scan}, groups)["params"], g_plain)


def test_scanned_blocks_take_per_block_survival_probabilities():
  """Linear decay under scan: each block keeps its own p_l (inference_scale shows it)."""
  kw = dict(RESNET, num_classes=3, stochastic_depth=0.5, stochastic_depth_mode="inference_scale")
  plain, scanned = (create_model("resnet20_cifar", scan_blocks=s, **kw) for s in (False, True))
  x = _x(n=2, size=8)
  v = _init(plain, x)
  np.testing.assert_allclose(scanned.apply(layers.stack_blocks(v, scanned.scan_groups), x),
                             plain.apply(v, x), rtol=1e-5, atol=1e-5)
  # Per-batch stochastic depth runs under scan too.
  sd = create_model("resnet20_cifar", scan_blocks=True, stochastic_depth_per="batch", **kw)
  out, _ = jax.jit(lambda v: sd.apply(v, x, train=True, rngs={"dropout": KEY},
                                      mutable=["batch_stats"]))(_init(sd, x))
  assert np.isfinite(out).all()


@pytest.mark.parametrize("family", ["resnet", "pyramidnet"])
def test_remat_gives_the_same_gradients(family):
  name, kwargs = FAMILIES[family]
  plain = create_model(name, num_classes=3, **kwargs)
  remat = create_model(name, num_classes=3, remat=True, **kwargs)
  x = _x(n=2, size=8)
  v = _init(plain, x)
  assert jax.tree.structure(_init(remat, x)) == jax.tree.structure(v)
  g = [jax.jit(jax.grad(functools.partial(_loss, m, v, x)))(v["params"]) for m in (plain, remat)]
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), *g)


def test_pyramidnet_cannot_scan():
  with pytest.raises(ValueError, match="scan_blocks"):
    create_model("pyramidnet110_a48", scan_blocks=True)


# ----------------------------------------------------------------------------- ResNet v1

def test_resnet50_v1_strides_the_first_1x1_and_has_the_papers_macs():
  v1, v15 = create_model("resnet50_v1"), create_model("resnet50")
  assert v1.stride_in_1x1 and not v15.stride_in_1x1
  assert summary.count_params(v1, 224) == summary.count_params(v15, 224)
  # He et al. 2015, Table 1 prints "3.8 x 10^9 FLOPs" (multiply-adds); v1.5 has 4.1 G.
  assert summary.count_macs(v1, 224) < 0.95 * summary.count_macs(v15, 224)


# He et al. 2015, Table 1, "FLOPs" (multiply-adds) of the v1 nets. The printed figures
# are two significant digits and not one rounding rule (our exact counts: 1.814,
# 3.664, 3.858, 7.570, 11.282 G), so each is pinned within 2%: the largest gap is
# ResNet-34's 1.8%, and the v1.5 ResNet-50 (4.09 G) is 7.7% away.
TABLE1_MACS = {"resnet18": 1.8e9, "resnet34": 3.6e9, "resnet50_v1": 3.8e9,
               "resnet101_v1": 7.6e9, "resnet152_v1": 11.3e9}


@pytest.mark.parametrize("name", TABLE1_MACS)
def test_imagenet_resnet_macs_match_table1(name):
  assert summary.count_macs(create_model(name), 224) == pytest.approx(TABLE1_MACS[name], rel=0.02)


# Hu et al. 2018, Table 2, GFLOPs (multiply-adds) of the nets its rows are bound to
# (experiments/imagenet.py): the authors' prototxts stride the first 1x1 (3.86 G for
# ResNet-50; the 3x3-strided layout has 4.09 G, 6% more).
SENET_T2_GFLOPS = {"ResNet-50": 3.86, "SE-ResNet-50": 3.87, "ResNet-101": 7.58,
                   "SE-ResNet-101": 7.60, "ResNet-152": 11.30, "SE-ResNet-152": 11.32}


def test_the_senet_and_he2016_table_rows_are_bound_to_the_authors_stride_layout():
  import os
  from conftest import ROOT
  from flaxcnn import papers
  rows = papers.load_config_module(os.path.join(ROOT, "experiments", "imagenet.py")).PAPER
  bound = {(r.table.source, r.label): r.match["model.name"] for r in rows}
  for label, gflops in SENET_T2_GFLOPS.items():
    model = create_model(bound["hu2018", label])
    assert model.stride_in_1x1, label
    assert summary.count_macs(model, 224) == pytest.approx(gflops * 1e9, rel=0.01), label
  for label in ("ResNet-152 original", "ResNet-152 pre-act", "ResNet-200 original",
                "ResNet-200 pre-act"):   # the authors' code; the torch row is fb.resnet.torch's
    assert create_model(bound["he2016", label]).stride_in_1x1, label
  assert not create_model(bound["he2016", "ResNet-200 pre-act, scale+aspect ratio"]
                          ).stride_in_1x1


def test_v1_bottleneck_moves_the_stride():
  x = jnp.zeros((1, 8, 8, 16))
  for stride_in_1x1, strides in ((True, [2, 1, 1]), (False, [1, 2, 1])):
    block = residual_block(planes=4, strides=2, bottleneck=True, stride_in_1x1=stride_in_1x1)
    seen = []

    def spy(next_fun, args, kwargs, context):
      # the block's own convolutions (the projection shortcut strides in both forms)
      if isinstance(context.module, nn.Conv) and len(context.module.path) == 1:
        seen.append(context.module.strides[0])
      return next_fun(*args, **kwargs)
    with nn.intercept_methods(spy):
      jax.eval_shape(lambda: block.init(KEY, x, train=False))
    assert seen == strides
  # The authors' pre-activation ResNet-164/1001 (resnet-1k-layers) stride the 1x1 too.
  assert create_model("preact_resnet164_cifar_v1").stride_in_1x1
  assert create_model("preact_resnet1001_cifar_v1").stride_in_1x1
  with pytest.raises(ValueError, match="stride_in_1x1"):
    create_model("resnet18", stride_in_1x1=True)


def test_weight_import_into_scanned_blocks():
  """pretrained.convert fills a scan_blocks model: the torch layout maps to the
  unscanned names, then the repeated blocks are stacked."""
  from flaxcnn import pretrained
  model = create_model("resnet34", scan_blocks=True)
  kmap = pretrained._key_map(model.clone(scan_blocks=False))
  rng = np.random.default_rng(0)
  sd = {k: rng.normal(size=shape).astype(np.float32) for k, (_, _, shape) in kmap.items()}
  v = pretrained.convert("resnet34", sd, scan_blocks=True)
  shapes = jax.eval_shape(lambda: model.init(KEY, jnp.zeros((1, 32, 32, 3))))
  assert jax.tree.map(jnp.shape, v) == jax.tree.map(lambda s: s.shape, dict(shapes))
  # Block 2 of stage 1 (stage1_block2) is row 0 of stage1_scan: torch layer1.1.
  np.testing.assert_array_equal(v["params"]["stage1_scan"]["conv1"]["kernel"][0],
                                sd["layer1.1.conv1.weight"].transpose(2, 3, 1, 0))


CONV_CASES = [   # input, kernel, strides, padding, groups
    ((2, 9, 9, 8), (3, 3, 8, 6), (1, 1), "SAME", 1),
    ((2, 9, 9, 8), (3, 3, 8, 6), (2, 2), "SAME", 1),
    ((2, 8, 8, 8), (3, 3, 8, 6), (2, 2), "SAME", 1),
    ((2, 8, 8, 8), (1, 1, 8, 6), (2, 2), "VALID", 1),         # 1x1: a matmul on the CPU
    ((2, 8, 8, 8), (1, 1, 8, 6), (1, 1), "SAME", 1),
    ((2, 8, 8, 8), (3, 3, 2, 8), (1, 1), "SAME", 4),          # grouped (ResNeXt)
    ((2, 8, 8, 8), (5, 5, 1, 8), (2, 2), "SAME", 8),          # depthwise (MBConv)
    ((2, 7, 8, 8), (3, 3, 8, 6), (2, 1), ((1, 2), (0, 1)), 1),
    ((2, 10, 10, 8), (7, 7, 8, 4), (2, 2), ((3, 3), (3, 3)), 1),   # ImageNet stem
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[1]}s{c[2][0]}g{c[4]}")
def test_conv_gradients_equal_lax(case):
  xs, ws, strides, padding, groups = case
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=xs), jnp.float32)
  w = jnp.asarray(rng.normal(size=ws), jnp.float32)
  dn = ("NHWC", "HWIO", "NHWC")

  def loss(conv, x, w):
    y = conv(x, w, strides, padding, dimension_numbers=dn, feature_group_count=groups)
    return (y * jnp.cos(y)).sum()

  ref = jax.grad(functools.partial(loss, jax.lax.conv_general_dilated), (0, 1))(x, w)
  ours = jax.jit(jax.grad(functools.partial(loss, layers.conv_general_dilated), (0, 1)))(x, w)
  assert loss(layers.conv_general_dilated, x, w) == pytest.approx(float(loss(
      jax.lax.conv_general_dilated, x, w)), rel=1e-5)
  for a, b in zip(ref, ours):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * float(jnp.abs(a).max()))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU layout property")
@pytest.mark.parametrize("nested", ["cond", "scan"])
def test_gradient_convolutions_inside_cond_and_scan_keep_the_fast_layout(nested):
  """XLA:CPU runs only NHWC/HWIO convolutions (dim_labels b01f_01io->b01f) fast;
  JAX's own gradient convolutions inside a cond/scan stayed in other layouts and
  ran 10-30x slower (per-batch stochastic depth, scan_blocks)."""
  conv = layers.Conv(8, (3, 3), strides=(2, 2))
  w = conv.init(KEY, jnp.zeros((2, 8, 8, 8)))

  def loss(w, x, pred):
    if nested == "cond":
      y = jax.lax.cond(pred, lambda x: conv.apply(w, x), lambda x: x[:, ::2, ::2], x)
    else:
      y = jax.lax.scan(lambda c, _: (c, conv.apply(w, x)), 0.0, None, length=2)[1]
    return (y ** 2).sum()

  hlo = jax.jit(jax.grad(loss, (0, 1))).lower(w, jnp.ones((2, 8, 8, 8)), True).compile().as_text()
  labels = [line.split("dim_labels=")[1].split(",")[0] for line in hlo.splitlines()
            if " convolution(" in line]
  assert len(labels) >= 3 and set(labels) == {"b01f_01io->b01f"}, labels


@pytest.mark.parametrize("env, expected", [
    ({}, backend.YNN_FLAG),
    ({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
     "--xla_force_host_platform_device_count=2 " + backend.YNN_FLAG),
    ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=x"},
     "--xla_cpu_experimental_ynn_fusion_type=x"),
    ({"FLAXCNN_KEEP_XLA_DEFAULTS": "1"}, ""),
])
def test_configure_turns_off_cpu_ynn_fusions_unless_told(env, expected):
  # YNNPACK fusions made XLA:CPU training steps up to 2x slower (RESULTS.md).
  if not backend.jaxlib_knows(backend.YNN_FLAG):
    expected = env.get("XLA_FLAGS", "")
  assert _fresh_python("import os, flaxcnn.backend as b; b.configure(); "
                       "print(os.environ.get('XLA_FLAGS', ''))", env) == expected


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_huge_pages_are_asked_of_malloc_only_where_the_kernel_gives_them_on_request(tmp_path):
  modes = {}
  for name, text in (("madvise", "always [madvise] never"), ("always", "[always] madvise never"),
                     ("never", "always madvise [never]")):
    modes[name] = tmp_path / name
    modes[name].write_text(text + "\n")
  env = {"PATH": "/usr/bin", "GLIBC_TUNABLES": "glibc.pthread.rseq=0"}
  on = hugepages.environment_with_huge_pages(env, str(modes["madvise"]))
  assert on == {**env, "GLIBC_TUNABLES": "glibc.pthread.rseq=0:" + hugepages.TUNABLE}
  assert hugepages.environment_with_huge_pages({}, str(modes["madvise"]))["GLIBC_TUNABLES"] == (
      hugepages.TUNABLE)
  for mode in ("always", "never"):        # huge pages everywhere already, or none to ask for
    assert hugepages.environment_with_huge_pages(env, str(modes[mode])) is None
  for told in ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, on,
               {"FLAXCNN_KEEP_MALLOC_DEFAULTS": "1"}, {"JAX_PLATFORMS": "cuda"}):
    assert hugepages.environment_with_huge_pages(told, str(modes["madvise"])) is None


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_launch_restarts_itself_with_huge_pages_and_the_tests_run_with_them():
  """launch.py's first line re-executes the command with glibc's huge-page tunable
  (same pid); conftest gives it to the test workers and every process they start."""
  code = ("import os; from flaxcnn import hugepages\n"
          "hugepages.restart_with_huge_pages()\n"
          "print(os.environ.get('GLIBC_TUNABLES'))")
  expected = hugepages.TUNABLE if hugepages.thp_on_request() else "None"
  assert _fresh_python(code) == expected
  assert (hugepages.TUNABLE in os.environ.get("GLIBC_TUNABLES", "")) == hugepages.thp_on_request()


def _fresh_python(code: str, env=None) -> str:
  import subprocess
  import sys
  base = {k: v for k, v in os.environ.items()
          if k not in ("XLA_FLAGS", "FLAXCNN_KEEP_XLA_DEFAULTS", "GLIBC_TUNABLES")}
  out = subprocess.run([sys.executable, "-c", code], env={**base, **(env or {})},
                       capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return out.stdout.strip()


def test_importing_flaxcnn_and_its_models_changes_nothing_in_jax_until_configured():
  """A user who imports a model into their own code gets plain JAX/XLA: the same
  XLA_FLAGS, no barriers, no compiler options, jax.lax's convolution gradients."""
  code = ("import os, jax, jax.numpy as jnp, flaxcnn, flaxcnn.train, flaxcnn.models as m\n"
          "from flaxcnn import backend\n"
          "model = m.create_model('resnet20_cifar', depth=8, num_classes=10)\n"
          "x = jnp.ones((2, 8, 8, 3))\n"
          "v = model.init(jax.random.PRNGKey(0), x)\n"
          "def hlo():\n"
          "  f = lambda p: model.apply({**v, 'params': p}, x).sum()\n"
          "  return jax.jit(jax.grad(f)).lower(v['params']).as_text()\n"
          "print(repr(os.environ.get('XLA_FLAGS', '')), backend.tuned(), "
          "backend.compiler_options(), 'optimization_barrier' in hlo())\n"
          "backend.configure()\n"
          "print(backend.tuned(), backend.compiler_options() is not None, "
          "'optimization_barrier' in hlo())\n")
  before, after = _fresh_python(code).splitlines()[-2:]
  assert before == "'' False None False"
  assert after == "True True True"


def _train_step_temp_bytes(monkeypatch, keep_barriers: bool, **model_kwargs) -> int:
  """XLA temporary memory of the trainer's compiled ResNet-14 step (batch 8; two
  blocks a stage, so that remat has blocks to recompute)."""
  from flaxcnn import config as config_lib, train
  from flaxcnn.data import Dataset, Split
  if not keep_barriers:
    monkeypatch.setattr(train.steps, "compiler_options", lambda run: None)
  c = config_lib.default_config()
  c.model.name = "resnet20_cifar"
  c.model.kwargs.update(model_kwargs, depth=14)
  c.batch_size, c.num_steps = 8, 10
  images, labels = np.zeros((8, 32, 32, 3), np.uint8), np.zeros((8,), np.int32)
  data = Dataset("synthetic", 10, {"train": Split(images, labels)}, (0.5,) * 3, (0.25,) * 3)
  run = train.setup(c, data)
  state = jax.eval_shape(lambda: train.create_state(run, data.image_shape))
  x = jax.ShapeDtypeStruct(images.shape, jnp.uint8, sharding=run.batch_sharding)
  y = jax.ShapeDtypeStruct(labels.shape, jnp.int32, sharding=run.batch_sharding)
  compiled = train.make_batch_train_step(run).lower(state, x, y).compile()
  return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the pass is XLA:CPU's")
def test_trainer_keeps_remat_on_the_cpu(monkeypatch):
  # XLA:CPU's cse_barrier_expander deletes remat's barriers and CSE then undoes the
  # recomputation (the step without the trainer's option keeps every activation);
  # the trainer's compiler options keep them for models with remat on.
  plain = _train_step_temp_bytes(monkeypatch, True)
  assert _train_step_temp_bytes(monkeypatch, True, remat=True) < 0.8 * plain
  assert _train_step_temp_bytes(monkeypatch, False, remat=True) > 0.9 * plain


def _largest_fusion(compiled_text: str) -> int:
  """The most operands of any fusion in a compiled XLA module."""
  import re
  return max(m.group(1).count("%") for m in re.finditer(r"= \S+ fusion\((.*?)\), kind", compiled_text))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU fusion property")
def test_block_boundaries_stop_the_residual_chain_from_fusing_into_later_blocks():
  # Without the block boundaries XLA:CPU recomputed relu(bn(conv) + shortcut) of
  # every earlier block of a stage inside each later block's fusions (fusions of up
  # to 96 operands): 2.4x the step time of an unscanned ResNet-110.
  model = create_model("resnet20_cifar", num_classes=3, **dict(RESNET, depth=26))  # 4 blocks/stage
  x = _x(n=2, size=8)
  v = _init(model, x)
  grad = jax.jit(jax.grad(functools.partial(_loss, model, v, x)),
                 compiler_options=backend.compiler_options())
  assert _largest_fusion(grad.lower(v["params"]).compile().as_text()) <= 16   # 11
  chained = jax.jit(jax.grad(functools.partial(_loss, model, v, x)))   # barriers deleted
  assert _largest_fusion(chained.lower(v["params"]).compile().as_text()) > 30  # 46


@pytest.mark.parametrize("shape", [(4, 5, 5, 8), (3, 7, 16), (6, 3)])
def test_batch_norm_closed_form_vjp_equals_the_derivative_of_its_forward(shape):
  """`backend.batch_norm_train`'s VJP, through y and the returned batch mean and
  variance, equals JAX's derivative of the same forward, to float32 rounding of
  sums over the m reduced elements."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(1.0, 3.0, shape), jnp.float32)
  scale = jnp.asarray(rng.uniform(0.5, 2.0, shape[-1]), jnp.float32)
  bias = jnp.asarray(rng.normal(size=shape[-1]), jnp.float32)
  w = jnp.asarray(rng.normal(size=shape), jnp.float32)

  def loss(bn, x, scale, bias):
    y, mean, var = bn(x, scale, bias, 1e-5)
    return jnp.vdot(jnp.tanh(y), w) + (jnp.sin(mean) + 0.1 * var).sum()

  derived = jax.grad(functools.partial(loss, lambda *a: backend._bn_forward(*a)[0]),
                     (0, 1, 2))(x, scale, bias)
  closed = jax.jit(jax.grad(functools.partial(loss, backend.batch_norm_train), (0, 1, 2)))(
      x, scale, bias)
  m = x.size // shape[-1]
  tol = 16 * np.finfo(np.float32).eps * np.sqrt(m)
  for a, b in zip(closed, derived):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * float(jnp.abs(b).max()))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU fusion property")
def test_the_weight_gradient_transposes_the_stored_input_not_a_recomputation():
  """The tuned convolution's weight gradient transposes its input x as the forward
  pass wrote it: XLA:CPU would otherwise recompute x's producer (here a ReLU)
  inside the transpose, in strided order (2.5x slower). Not so for a convolution
  traced in a conditional's branch or a scan body, where the pin costs copies."""
  import re

  def loss(w, z, g):
    x = jax.nn.relu(z * 2.0 - 1.0)
    y = backend.conv_general_dilated(x, w, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.vdot(y, g)

  def transposes():
    z = jnp.ones((4, 8, 8, 16))
    text = jax.jit(jax.value_and_grad(loss), compiler_options=backend.compiler_options()).lower(
        jnp.ones((3, 3, 16, 16)), z, z).compile().as_text()
    bodies = dict(re.findall(r"\n(%[\w.-]+) \([^\n]*\{\n(.*?)\n\}", text, re.S))
    return [bodies[c] for c in re.findall(r"f32\[16,8,8,4\]\S* fusion\(.*?calls=(%[\w.-]+)",
                                          text)]

  pinned = transposes()
  assert pinned and not any(" maximum(" in body for body in pinned)
  with backend.tracing_control_flow():
    assert any(" maximum(" in body for body in transposes())


@pytest.mark.parametrize("shape", [(4, 4, 4, 16), (2, 2, 2, 100), (2, 3, 3, 16),
                                   (3, 3, 3, 16), (8, 600)])
def test_channel_sum_is_the_sum_over_all_axes_but_the_last(shape):
  """backend.channel_sum (rows of k pixels, k = 8, 4, 2 or 1 as the shape allows)
  equals the plain sum, to float32 rounding of a sum of m terms."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
  m = x.size // shape[-1]
  tol = 4 * np.finfo(np.float32).eps * np.sqrt(m)
  expected = np.asarray(x, np.float64).reshape(m, -1).sum(0)
  np.testing.assert_allclose(jax.jit(backend.channel_sum)(x), expected, rtol=tol,
                             atol=tol * float(jnp.abs(x).sum(tuple(range(x.ndim - 1))).max()))


def test_tuned_batch_norm_is_flax_batch_norm(monkeypatch):
  """layers.BatchNorm with the CPU tuning: the same variables, outputs and
  running statistics as flax's nn.BatchNorm; gradients equal to rounding."""
  x = jax.random.normal(KEY, (4, 6, 6, 8)) * 2.0 + 0.5
  w = jax.random.normal(jax.random.PRNGKey(1), x.shape)
  results = []
  for tuned in (True, False):
    monkeypatch.setitem(backend._state, "tuned", tuned and jax.default_backend() == "cpu")
    bn = layers.batch_norm(True, scale_init=nn.initializers.constant(1.5))
    v = bn.init(KEY, x)

    def loss(params, x):
      y, state = bn.apply({**v, "params": params}, x, mutable=["batch_stats"])
      return jnp.vdot(jax.nn.relu(y), w), (y, state)
    grads, (y, state) = jax.jit(jax.grad(loss, (0, 1), has_aux=True))(v["params"], x)
    results.append((jax.tree.map(jnp.shape, v), y, state, grads))
  (shapes, y, state, grads), (shapes0, y0, state0, grads0) = results
  assert shapes == shapes0
  # the statistics are sums of m elements, in another order: float32 rounding of those
  tol = 16 * np.finfo(np.float32).eps * np.sqrt(x.size // x.shape[-1])
  np.testing.assert_allclose(y, y0, rtol=tol, atol=tol)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=tol), state, state0)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads0)):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * float(jnp.abs(b).max()))
