"""Every ablation sweep (experiments/ablations/*.py) is runnable, variant by variant.

Per ablation file: the base config passes `config.validate` with the full-size
abstract model build, the sweep's variants have unique names, every override names
a real field, and `seeds=N` repeats every variant.

Per variant (all 139 of them):
1. the full-size config passes `config.validate`, constructing the full-size model
   (which checks every keyword value; the abstract full-size build is the file's);
2. it is shrunk -- the smallest depth of its family, synthetic 16x16 (32x32 for the
   ImageNet networks) images, batch 4, one step -- keeping every field that
   distinguishes the variant (the test checks they survive), and the shrunk config
   passes `config.validate` with its network built abstractly in *training* mode
   (init + forward with train=True, so dropout, stochastic depth and DropBlock run
   their training paths with the variant's values);
3. one real training step: the real jitted step of train.make_train_step (augment,
   forward, loss, backward, optimizer update) compiled and run on synthetic data,
   the loss finite and the parameters moved -- for the first variant of each
   distinct shrunk network: its family, its parameter tree with layer indices
   removed (the kinds of layers, not the depth or width) and its active
   regularizers/augmentations/optimizer. Other variants stop after step 2.

Why not a real step for every variant: compiling a step for all 139 variants takes ~15
minutes on 2 busy cores (a compile is 3-40 s here), so one real step runs per
distinct network (about 20) and the others are validated and built. The real step's
state is the abstract `train.create_state` filled on the host (He-normal kernels,
BN scale 1, running variance 1; optimizer state from tx.init) rather than the jitted
initializer, and both are compiled with XLA's cheapest CPU backend options.
digits_depth.py is left to its owner's tests (another helper's file).
"""
import copy
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT
from flaxcnn import config as config_lib, models
from flaxcnn import data as data_lib
from flaxcnn import sweep, train
from flaxcnn.models import get_preset

ABLATIONS = os.path.join(ROOT, "experiments", "ablations")
NOT_OURS = {"digits_depth.py"}
FILES = sorted(p for p in glob.glob(os.path.join(ABLATIONS, "*.py"))
               if not os.path.basename(p).startswith("_")
               and os.path.basename(p) not in NOT_OURS)

# Cheapest XLA CPU compilation (these steps run once; speed is irrelevant).
FAST_COMPILE = {"xla_backend_optimization_level": 0,
                "xla_llvm_disable_expensive_passes": True}

def _variants():
  out = []
  for path in FILES:
    for overrides in sweep.overrides_of(path):
      name = sweep.variant_name(overrides)
      out.append(pytest.param(path, name, overrides,
                              id=f"{os.path.basename(path)[:-3]}:{name}"))
  return out


VARIANTS = _variants()
_BASE = {}          # path -> base config
_RAN = {}           # shrunk network key -> variant that ran the real step


def _base(path):
  if path not in _BASE:
    _BASE[path] = sweep.load_module(path).get_config()
  return _BASE[path]


# ----------------------------------------------------------------------------- validate

def _model_only(config):
  """check_model's stand-in for variants: construct the model (every keyword value
  is checked in the constructors), without the abstract build."""
  models.build_model(config, config.data.num_classes or 10)


def validate_full(config, monkeypatch):
  """config.validate of the full-size variant. The abstract full-size build of
  check_model is done for each file's base config (test_every_ablation_file_...):
  it takes seconds for a 110-layer network; the variant's network is constructed at
  full size here and built abstractly (in training mode) once shrunk."""
  monkeypatch.setattr(models, "check_model", _model_only)
  config_lib.validate(config)
  monkeypatch.undo()


def _train_mode_check(config):
  """check_model in training mode: init and a forward pass with train=True, so every
  regularizer's training path (dropout, stochastic depth, DropBlock with its
  'schedule' variable) is traced with the variant's values."""
  model = models.build_model(config, config.data.num_classes or 10)
  size = config.data.image_size
  variables = jax.eval_shape(lambda: model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
      jnp.zeros((2, size, size, 3), jnp.float32), train=True))
  assert "params" in variables


def validate_small(config, monkeypatch):
  monkeypatch.setattr(models, "check_model", _train_mode_check)
  config_lib.validate(config)
  monkeypatch.undo()


# ----------------------------------------------------------------------------- shrink

def _constructor(config):
  return getattr(get_preset(config.model.name).constructor, "__name__", "")


def shrink(config):
  """A tiny copy of `config` that keeps what distinguishes its variant.

  Depth goes to the smallest the family allows (CIFAR ResNet 8 / 11 bottleneck,
  ImageNet ResNet 18 basic -- 50 for ResNeXt, whose groups need bottlenecks --,
  WRN one block per group, DenseNet one layer per block, PyramidNet 8 / 11,
  EfficientNet a two-stage table); widths that are the variant's subject (WRN k,
  PyramidNet alpha, ResNeXt C x d, EfficientNet width/depth multipliers, DenseNet
  bottleneck/compression) and every regularizer setting are kept.
  """
  c = copy.deepcopy(config)
  preset = get_preset(c.model.name)
  kw = c.model.kwargs
  merged = {**preset.kwargs, **dict(kw)}
  ctor = _constructor(c)
  size = 16
  if ctor in ("cifar_resnet", "cifar_resnext"):
    kw.depth = 11 if merged.get("bottleneck") or ctor == "cifar_resnext" else 8
    if ctor == "cifar_resnext":
      kw.stage_planes, kw.stem_width = (16, 32, 64), 16
  elif ctor in ("imagenet_resnet", "imagenet_resnext"):
    if ctor == "imagenet_resnet":
      kw.depth, kw.bottleneck = 18, False
      if "stride_in_1x1" in kw:   # a basic block has no 1x1 convolution to stride
        kw.stride_in_1x1 = False
    kw.stage_planes, kw.stem_width = (16, 32, 64, 128), 8
    size = 32
  elif ctor == "WideResNet":
    from flaxcnn.models.wide_resnet import parse_block_type
    kw.depth = 3 * len(parse_block_type(merged.get("block_type", (3, 3)))) + 4
  elif ctor == "densenet_cifar":
    kw.depth = 10 if merged.get("bottleneck", True) else 7
  elif ctor == "PyramidNet":
    kw.depth = 11 if merged.get("bottleneck") else 8
  elif ctor in ("EfficientNet", "EfficientNetV2"):
    fused = ctor == "EfficientNetV2"
    kw.stages = ((1, 3, 1, 8, 1, 0.0 if fused else 0.25, fused),
                 (4, 3, 2, 16, 1, 0.25, False))
    kw.stem_features, kw.head_features = 8, 32
    size = max(16, int(round((c.data.image_size or preset.image_size) * 32 / 224)))
  else:
    raise AssertionError(f"test_ablations.shrink: no rule for {c.model.name} ({ctor})")
  c.data.source = "synthetic"
  c.data.in_memory = True
  c.data.image_size = size
  c.data.num_classes = 10
  c.data.synthetic_size = c.data.validation_size = 8
  c.batch_size = 4
  c.eval_batch_size = 4
  c.num_steps = 1
  if c.progressive.stages:
    c.progressive.image_size = (size, size)
  return c


# ----------------------------------------------------------------------------- steps

def _key_name(k):
  return str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))


def _materialize(abstract, seed):
  """Host values for an abstract TrainState: He-normal kernels, BN scale 1 / bias 0,
  running variance 1, everything else zero; then the optimizer state from tx.init."""
  rng = np.random.RandomState(seed)

  def fill(path, s):
    names = [_key_name(k) for k in path]
    if names and names[-1] == "kernel":
      fan_in = int(np.prod(s.shape[:-1])) or 1
      return rng.normal(0.0, np.sqrt(2.0 / fan_in), s.shape).astype(s.dtype)
    if names and names[-1] in ("scale", "var"):
      return np.ones(s.shape, s.dtype)
    return np.zeros(s.shape, s.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def _network_key(abstract_state, config):
  """What makes a shrunk network a distinct program to compile: its family, its
  parameter tree with the indices taken out (so depth and width do not count, the
  kinds of layers do), and which regularizers are active."""
  import re
  paths = sorted({re.sub(r"\d+", "#", jax.tree_util.keystr(p)) for p, _ in
                  jax.tree_util.tree_flatten_with_path(abstract_state.params)[0]})
  kw = config.model.kwargs
  active = (kw.get("dropout", 0) > 0, kw.get("stochastic_depth", 1.0) < 1,
            kw.get("dropblock_keep_prob", 1.0) < 1 and bool(kw.get("dropblock_stages", ())),
            config.augment.cutout > 0, config.augment.mixup_alpha > 0,
            config.augment.randaugment_layers > 0, config.optimizer.name,
            config.ema_decay > 0)
  return (_constructor(config), tuple(paths), active)


def prepare(config):
  dataset = data_lib.load(config)
  run = train.setup(config, dataset)
  abstract = jax.eval_shape(lambda: train.create_state(run, dataset.image_shape))
  return dataset, run, abstract


def real_step(config, dataset, run, abstract):
  """One real training step (train.make_train_step) on the synthetic data."""
  step = train.make_train_step(run)
  split = dataset.splits["train"]
  images = jax.device_put(split.images, run.replicated)
  labels = jax.device_put(split.labels, run.replicated)
  perm = jax.device_put(np.arange(len(split), dtype=np.int32), run.replicated)
  state = _materialize(abstract, config.seed)
  params = jax.device_put(state.params, run.replicated)
  opt_state = jax.jit(run.tx.init).lower(params).compile(FAST_COMPILE)(params)
  # The TF references' warm-up ("linear_from_zero") trains at rate 0 at step 0.
  first = int(bool(config.schedule.warmup_epochs) and config.schedule.warmup == "linear_from_zero")
  state = jax.device_put(state.replace(rng=np.asarray(jax.random.PRNGKey(config.seed + 1)),
                                       step=np.asarray(first, np.int32),
                                       lr_scale=np.ones((), np.float32),
                                       plateau_best=np.asarray(np.inf, np.float32)),
                         run.replicated).replace(opt_state=opt_state, params=params)
  before = jax.tree.map(np.asarray, state.params)
  compiled = step.lower(state, images, labels, perm).compile(FAST_COMPILE)
  new_state, metrics = compiled(state, images, labels, perm)
  metrics = jax.device_get(metrics)
  assert np.isfinite(metrics["loss"]), metrics
  assert int(new_state.step) == first + 1
  assert jax.tree.structure(new_state.params) == jax.tree.structure(abstract.params)
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(np.asarray(b) != a)),
                                       before, new_state.params))
  assert any(moved), "one SGD step changed no parameter"
  return metrics


# ----------------------------------------------------------------------------- tests

def test_every_ablation_file_declares_a_documented_sweep():
  assert len(FILES) >= 13, FILES
  for path in FILES:
    module = sweep.load_module(path)
    assert module.__doc__ and "Ablation" in module.__doc__.split("\n")[0], path
    assert callable(module.get_config) and callable(module.get_sweep), path
    base = module.get_config("")
    config_lib.validate(base)     # with the full-size abstract build (check_model)
    names = [n for n, _ in sweep.variants(path)]
    assert len(names) >= 2 and len(set(names)) == len(names), path
    # Every override names an existing field (apply_overrides is strict).
    for ov in sweep.overrides_of(path):
      sweep.apply_overrides(base, ov)


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(p)[:-3] for p in FILES])
def test_seeds_argument_repeats_every_variant(path):
  one = sweep.overrides_of(path)
  three = sweep.overrides_of(path, "seeds=3")
  assert len(three) == 3 * len(one)
  assert {ov["seed"] for ov in three} == {0, 1, 2}


ARGS = [("resnet_shortcuts.py", "cifar"), ("wrn_block_types.py", "cifar100"),
        ("wrn_width.py", "cifar100"), ("wrn_dropout.py", "cifar100,seeds=2"),
        ("stochastic_depth.py", "cifar100"), ("densenet_variants.py", "cifar100"),
        ("pyramidnet_widening.py", "cifar100"), ("resnext_cardinality.py", "101")]


@pytest.mark.parametrize("filename,arg", ARGS)
def test_ablation_arguments(filename, arg, monkeypatch):
  """The files' other settings (dataset, depth) give valid sweeps of the same shape."""
  path = os.path.join(ABLATIONS, filename)
  base = sweep.variants(path)
  other = sweep.variants(path, arg)
  seeds = int(arg.split("seeds=")[1]) if "seeds=" in arg else 1
  assert len(other) == seeds * len(base)
  monkeypatch.setattr(models, "check_model", _model_only)
  for _, config in other:
    config_lib.validate(config)
  config = other[0][1]
  if "cifar100" in arg:
    assert config.data.name == "cifar100"
  if filename == "pyramidnet_widening.py":
    assert config.optimizer.lr == pytest.approx(0.5)      # the paper's CIFAR-100 rate
  if filename == "resnext_cardinality.py":
    assert {c.model.name for _, c in other} == {
        f"resnext101_{c}x{d}d" for c, d in ((1, 64), (2, 40), (4, 24), (8, 14), (32, 4))}
  if filename == "resnet_shortcuts.py":
    assert config.data.name == "cifar10" and config.model.name == "resnet32_cifar"


@pytest.mark.parametrize("path,name,overrides", VARIANTS)
def test_variant_validates_and_trains_one_step(path, name, overrides, monkeypatch):
  config = sweep.apply_overrides(_base(path), overrides)
  for field, value in overrides.items():   # the variant's fields really are set
    node = config
    for part in field.split("."):
      node = node[part]
    assert node == (tuple(value) if isinstance(value, list) else value), field
  validate_full(config, monkeypatch)

  small = shrink(config)
  for field, value in overrides.items():   # shrinking kept what makes the variant
    if field in ("data.image_size", "augment.scale_range", "model.kwargs.depth"):
      continue
    node = small
    for part in field.split("."):
      node = node[part]
    assert node == (tuple(value) if isinstance(value, list) else value), field
  validate_small(small, monkeypatch)

  dataset, run, abstract = prepare(small)
  key = _network_key(abstract, small)
  if key not in _RAN:
    _RAN[key] = name
    real_step(small, dataset, run, abstract)


def test_resolution_variants_keep_their_order_when_shrunk():
  path = os.path.join(ABLATIONS, "efficientnet_scaling.py")
  pairs = sorted((cfg.data.image_size, shrink(cfg).data.image_size)
                 for _, cfg in sweep.variants(path))
  small = [s for _, s in pairs]
  assert small == sorted(small) and small[0] == 32 and small[-1] == 80, pairs
