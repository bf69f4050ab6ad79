"""Every experiment recipe (experiments/*.py) loads, validates, and states its paper's
numbers.

Each file's get_config() passes config.validate (with the abstract build of the
full-size network); each recipe's arguments build valid configs; the key numbers of
each recipe are asserted against the paper (and, where the paper is silent, the
authors' code) as cited in the recipe's docstring.
"""
import glob
import math
import os

import jax
import jax.numpy as jnp
import pytest

from conftest import ROOT
from flaxcnn import config as config_lib, models, optim, papers
from flaxcnn import sweep
from flaxcnn.models import get_preset

EXPERIMENTS = os.path.join(ROOT, "experiments")
FILES = sorted(glob.glob(os.path.join(EXPERIMENTS, "*.py")))


def load(name, arg=""):
  module = sweep.load_module(os.path.join(EXPERIMENTS, name))
  return module.get_config(arg) if arg else module.get_config()


def _model_only(config):
  models.build_model(config, config.data.num_classes or 10)


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(p)[:-3] for p in FILES])
def test_recipe_loads_and_validates(path):
  module = sweep.load_module(path)
  assert module.__doc__, f"{path}: the recipe needs a docstring citing its paper"
  config = module.get_config()
  config_lib.validate(config)         # includes the abstract build of the model
  assert config.model.name
  assert config.optimizer.lr > 0 and config.batch_size > 0


# Arguments each recipe accepts (validated with the model constructed; its abstract
# build is covered by the default config above and by the model tests).
ARGS = {
    "resnet50_imagenet.py": ["18", "34", "101", "152", "50,ten_crop", "34,multiscale"],
    "efficientnet_b0.py": [f"b{i}" for i in range(8)] + ["b0,batch=1024"],
    "efficientnetv2_s.py": ["s", "m", "l", "s,batch=512"],
    "densenet_bc_100_12.py": ["250_24", "190_40", "cifar100"],
    "pyramidnet.py": ["272_a200_bottleneck", "110_mul_a8", "cifar100"],
    "resnext29.py": ["16x64d", "cifar100", "preact", "16x64d,cifar100,preact"],
    "imagenet.py": ["densenet121,ten_crop", "preact_resnet200,torch,320", "se_resnet50",
                    "resnext101_64x4d,320", "pyramidnet200_a450_imagenet", "wrn50_2"],
    "stochastic_depth_resnet110.py": ["1202", "cifar100"],
    "cutout_wrn.py": ["cifar100", "resnet18"],
    "preact_resnet.py": ["110", "1001", "cifar100"],
}


@pytest.mark.parametrize("name,arg", [(n, a) for n, args in ARGS.items() for a in args])
def test_recipe_arguments_validate(name, arg, monkeypatch):
  monkeypatch.setattr(models, "check_model", _model_only)
  config_lib.validate(load(name, arg))


@pytest.mark.parametrize("name", sorted(ARGS))
def test_unknown_argument_is_rejected(name):
  with pytest.raises(ValueError, match="unknown argument"):
    load(name, "no_such_option")


def assert_sgd(c, lr, momentum, nesterov, wd):
  assert c.optimizer.name == "sgd"
  assert c.optimizer.lr == pytest.approx(lr)
  assert c.optimizer.momentum == momentum and c.optimizer.nesterov is nesterov
  assert c.optimizer.weight_decay == pytest.approx(wd)


def assert_piecewise(c, epochs, boundaries, factor, batch):
  assert c.num_epochs == epochs and c.batch_size == batch
  assert c.schedule.name == "piecewise" and c.schedule.factor == pytest.approx(factor)
  assert tuple(c.schedule.boundaries) == tuple(boundaries)


# ----------------------------------------------------------------------------- ImageNet

@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_resnet_imagenet_recipe(depth):
  c = load("resnet50_imagenet.py", str(depth))
  assert c.model.name == f"resnet{depth}"
  assert_sgd(c, 0.1, 0.9, False, 1e-4)
  assert c.batch_size == 256
  assert c.schedule.name == "plateau" and c.schedule.factor == pytest.approx(0.1)
  assert c.num_epochs == 120          # 60e4 iterations x 256 / 1.28M images
  assert c.data.source == "tfds" and c.data.name == "imagenet2012"
  assert c.data.in_memory is False and c.data.image_size == 224
  assert tuple(c.augment.scale_range) == (256, 480) and c.augment.flip
  assert c.label_smoothing == 0 and c.augment.mixup_alpha == 0 and c.augment.cutout == 0
  model = models.build_model(c, 1000)
  assert model.regularization.dropout == 0.0 and model.shortcut == "B"
  assert model.bottleneck is (depth >= 50)
  assert c.eval_mode == "center"
  assert load("resnet50_imagenet.py", f"{depth},ten_crop").eval_mode == "ten_crop"
  m = load("resnet50_imagenet.py", f"{depth},multiscale")
  assert m.eval_mode == "multiscale" and tuple(m.eval_scales) == (224, 256, 384, 480, 640)


@pytest.mark.parametrize("variant,size,dropout", [
    ("b0", 224, 0.2), ("b1", 240, 0.2), ("b2", 260, 0.3), ("b3", 300, 0.3),
    ("b4", 380, 0.4), ("b5", 456, 0.4), ("b6", 528, 0.5), ("b7", 600, 0.5)])
def test_efficientnet_recipe(variant, size, dropout):
  c = load("efficientnet_b0.py", variant)
  assert c.model.name == f"efficientnet_{variant}"
  assert c.optimizer.name == "rmsprop_tf"
  assert c.optimizer.rms_decay == 0.9 and c.optimizer.momentum == 0.9
  assert c.optimizer.eps == pytest.approx(1e-3)
  assert c.optimizer.weight_decay == pytest.approx(1e-5)
  assert c.batch_size == 4096 and c.optimizer.lr == pytest.approx(0.256)
  assert c.schedule.name == "exponential"
  assert c.schedule.decay_rate == 0.97 and c.schedule.decay_epochs == 2.4
  assert c.schedule.warmup_epochs == 5 and c.num_epochs == 350
  assert c.label_smoothing == pytest.approx(0.1) and c.ema_decay == pytest.approx(0.9999)
  assert c.data.image_size == size == get_preset(c.model.name).image_size
  # AutoAugment's ImageNet policy, as the paper (`:randaugment`: tests/test_autoaugment.py)
  assert c.augment.autoaugment == "v0" and c.augment.randaugment_layers == 0   # the paper's
  assert c.schedule.decay_begin == "start" and not c.optimizer.decay_all
  model = models.build_model(c, 1000)
  reg = model.regularization
  assert model.act == "swish" and reg.dropout == pytest.approx(dropout)
  assert reg.stochastic_depth == pytest.approx(0.8)
  assert reg.stochastic_depth_decay == "linear"
  assert model.bn_momentum == pytest.approx(0.99) and model.bn_epsilon == pytest.approx(1e-3)


def test_efficientnet_learning_rate_scales_linearly_with_the_batch():
  for batch in (256, 1024, 2048):
    c = load("efficientnet_b0.py", f"b0,batch={batch}")
    assert c.batch_size == batch
    assert c.optimizer.lr == pytest.approx(0.256 * batch / 4096)
  assert load("efficientnetv2_s.py", "s,batch=1024").optimizer.lr == pytest.approx(0.064)


def test_efficientnet_uses_the_references_random_resized_crop():
  # The reference's crop (area 8%-100%, aspect 3/4-4/3; its statistics are pinned in
  # tests/test_streaming.py), at the preset's own resolution.
  for variant, size in (("b0", 224), ("b4", 380)):
    c = load("efficientnet_b0.py", variant)
    assert c.augment.train_crop == "inception"
    assert c.data.image_size == size


# EfficientNetV2 paper, Table 6.
V2_TABLE6 = {
    "s": dict(image_size=(128, 300), randaugment=(5, 15), mixup=(0, 0), dropout=(0.1, 0.3)),
    "m": dict(image_size=(128, 380), randaugment=(5, 20), mixup=(0, 0.2), dropout=(0.1, 0.4)),
    "l": dict(image_size=(128, 380), randaugment=(5, 25), mixup=(0, 0.4), dropout=(0.1, 0.5)),
}


@pytest.mark.parametrize("size", ["s", "m", "l"])
def test_efficientnetv2_progressive_recipe(size):
  c = load("efficientnetv2_s.py", size)
  table = V2_TABLE6[size]
  assert c.model.name == f"efficientnetv2_{size}"
  assert c.progressive.stages == 4
  assert tuple(c.progressive.image_size) == table["image_size"]
  # TF levels as the paper's table, not capped (the references' RandAugment)
  assert c.augment.randaugment_ops == "tf"
  assert tuple(c.progressive.randaugment_magnitude) == pytest.approx(table["randaugment"])
  assert c.augment.randaugment_magnitude == c.progressive.randaugment_magnitude[1]
  assert c.schedule.decay_begin == "start"
  assert tuple(c.progressive.mixup_alpha) == pytest.approx(table["mixup"])
  assert tuple(c.progressive.dropout) == pytest.approx(table["dropout"])
  assert c.data.image_size == {"s": 384, "m": 480, "l": 480}[size]    # evaluation size
  assert c.optimizer.name == "rmsprop_tf" and c.optimizer.lr == pytest.approx(0.256)
  assert c.optimizer.weight_decay == pytest.approx(1e-5)
  assert c.schedule.decay_rate == 0.97 and c.schedule.decay_epochs == 2.4
  assert c.num_epochs == 350 and c.ema_decay == pytest.approx(0.9999)
  assert c.augment.randaugment_layers == 2
  assert models.build_model(c, 1000).regularization.stochastic_depth == pytest.approx(0.8)


def test_efficientnetv2_table6_matches_the_model_module():
  """The model module's EFFICIENTNETV2_PROGRESSIVE (what the presets document)
  agrees with the paper's Table 6 as encoded in the recipe."""
  from flaxcnn.models.efficientnet import EFFICIENTNETV2_PROGRESSIVE
  for size, table in V2_TABLE6.items():
    module = EFFICIENTNETV2_PROGRESSIVE[f"efficientnetv2_{size}"]
    assert tuple(module["image_size"]) == table["image_size"]
    assert tuple(module["randaugment"]) == pytest.approx(table["randaugment"])
    assert tuple(module["mixup"]) == pytest.approx(table["mixup"])
    assert tuple(module["dropout"]) == pytest.approx(table["dropout"])


# ----------------------------------------------------------------------------- CIFAR

def test_densenet_bc_recipe():
  c = load("densenet_bc_100_12.py")
  assert c.model.name == "densenet_bc_100_12"
  model = models.build_model(c, 10)
  assert model.growth_rate == 12 and model.bottleneck and model.compression == 0.5
  assert tuple(model.block_sizes) == (16, 16, 16)          # (100 - 4) / 6
  assert_piecewise(c, 300, (150, 225), 0.1, 64)
  assert tuple(c.schedule.boundaries) == (0.5 * c.num_epochs, 0.75 * c.num_epochs)
  assert_sgd(c, 0.1, 0.9, True, 1e-4)
  assert c.augment.crop_padding == 4 and c.augment.flip
  assert model.regularization.dropout == 0.0               # C10+: augmentation, no dropout


@pytest.mark.parametrize("dataset,lr", [("cifar10", 0.1), ("cifar100", 0.5)])
def test_pyramidnet_recipe(dataset, lr):
  c = load("pyramidnet.py", dataset)
  assert c.data.name == dataset and c.model.name == "pyramidnet110_a48"
  assert_piecewise(c, 300, (150, 225), 0.1, 128)
  assert_sgd(c, lr, 0.9, True, 1e-4)


def test_resnext29_recipe():
  c = load("resnext29.py")
  assert c.model.name == "resnext29_8x64d"
  model = models.build_model(c, 10)
  assert model.groups == 8 and model.width_per_group == 64 and model.bottleneck
  assert tuple(model.stage_sizes) == (3, 3, 3)             # (29 - 2) / 9
  assert_piecewise(c, 300, (150, 225), 0.1, 128)
  assert_sgd(c, 0.1, 0.9, True, 5e-4)
  assert load("resnext29.py", "16x64d").model.name == "resnext29_16x64d"


def test_resnext29_preact_is_the_form_of_table_7():
  """The authors' README: Table 7 used pre-activated bottleneck blocks at batch 256."""
  from flaxcnn.models import summary
  from flaxcnn.models.resnet import PostActBlock, PreActBlock
  pre, post = load("resnext29.py", "preact"), load("resnext29.py")
  assert (pre.batch_size, post.batch_size) == (256, 128)
  assert_sgd(pre, 0.1, 0.9, True, 5e-4)
  shapes = {}
  for c, block in ((pre, PreActBlock), (post, PostActBlock)):
    model = models.build_model(c, 10)
    variables = summary.init_shapes(model, 32)      # abstract: no memory, no compute
    shapes[block] = set(variables["params"])
    found = set()                                    # the block classes the model calls
    jax.eval_shape(lambda v: model.apply(
        v, jnp.zeros((1, 32, 32, 3)), mutable=["intermediates"],
        capture_intermediates=lambda mdl, _: found.add(type(mdl)) or False), variables)
    assert block in found and ({PreActBlock, PostActBlock} - {block}).isdisjoint(found)
    assert summary.count_params(model) == pytest.approx(34.4e6, rel=2e-3)   # Table 7
  assert "final_bn" in shapes[PreActBlock] and "final_bn" not in shapes[PostActBlock]
  # each form is compared with the table only as itself
  rows = {(r.label, r.arg): r for r in
          sweep.load_module(os.path.join(EXPERIMENTS, "resnext29.py")).PAPER}
  pre_row = rows[("ResNeXt-29 8x64d", "8x64d,cifar10,preact")]
  post_row = rows[("ResNeXt-29 8x64d", "8x64d,cifar10,original")]
  settings = papers.flatten(pre)
  assert pre_row.matches(settings) and not post_row.matches(settings)


def test_imagenet_recipes_follow_their_papers():
  """experiments/imagenet.py: each model with its paper's recipe (see its docstring)."""
  dn = load("imagenet.py", "densenet121")         # fb.resnet.torch (DenseNet Sec. 4.4)
  assert dn.augment.train_crop == "inception" and dn.eval_mode == "center"
  assert_piecewise(dn, 90, (30, 60), 0.1, 256)
  assert_sgd(dn, 0.1, 0.9, True, 1e-4)
  assert dn.optimizer.decay_all and dn.data.eval_image_size is None
  assert load("imagenet.py", "densenet121,ten_crop").eval_mode == "ten_crop"
  rx = load("imagenet.py", "resnext101_64x4d")    # Xie et al.: / 10 three times, 100 epochs
  assert_piecewise(rx, 100, (30, 60, 90), 0.1, 256)
  he = load("imagenet.py", "preact_resnet200,320")   # He et al. 2016: scale aug., Caffe SGD
  assert he.augment.train_crop == "scale" and tuple(he.augment.scale_range) == (256, 480)
  assert_piecewise(he, 90, (30, 60), 0.1, 256)
  assert_sgd(he, 0.1, 0.9, False, 1e-4)
  assert he.data.eval_image_size == 320 and he.data.image_size == 224
  se = load("imagenet.py", "se_resnet50")         # Hu et al.: batch 1024, lr 0.6
  assert_piecewise(se, 100, (30, 60, 90), 0.1, 1024)
  assert_sgd(se, 0.6, 0.9, False, 1e-4)
  assert load("imagenet.py", "resnet50,senet").batch_size == 1024
  assert load("imagenet.py", "resnet50").batch_size == 256    # WRN's fb.resnet.torch row


def test_stochastic_depth_recipe():
  c = load("stochastic_depth_resnet110.py")
  assert c.model.name == "resnet110_cifar"
  reg = models.build_model(c, 10).regularization
  assert reg.stochastic_depth == 0.5 and reg.stochastic_depth_decay == "linear"
  assert reg.stochastic_depth_mode == "inference_scale"  # the paper's test-time p_l scaling
  model = models.build_model(c, 10)
  assert model.shortcut == "A" and tuple(model.stage_sizes) == (18, 18, 18)
  assert_piecewise(c, 500, (250, 375), 0.1, 128)
  assert_sgd(c, 0.1, 0.9, True, 1e-4)
  assert c.data.validation_size == 5000
  # ResNet-1202 (Section 4): 300 epochs, 0.01 for 10 epochs, then 0.1, / 10 at 150 and 225.
  c = load("stochastic_depth_resnet110.py", "1202")
  assert c.model.name == "resnet1202_cifar"
  assert_piecewise(c, 300, (150, 225), 0.1, 128)
  spe = 45000 // 128
  lr = optim.make_schedule(c, spe, 300 * spe)
  assert [float(lr(int(e * spe))) for e in (0, 9.9, 10, 149.9, 150, 225)] == pytest.approx(
      [0.01, 0.01, 0.1, 0.1, 0.01, 0.001])


@pytest.mark.parametrize("dataset,size", [("cifar10", 16), ("cifar100", 8)])
def test_cutout_wrn_recipe(dataset, size):
  c = load("cutout_wrn.py", dataset)
  assert c.augment.cutout == size and c.data.name == dataset
  assert c.model.name == "wrn28_10" and c.model.kwargs.dropout == pytest.approx(0.3)
  assert_piecewise(c, 200, (60, 120, 160), 0.2, 128)
  assert_sgd(c, 0.1, 0.9, True, 5e-4)
  assert c.augment.crop_padding == 4 and c.augment.flip
  r18 = load("cutout_wrn.py", "resnet18")
  assert r18.model.name == "resnet18" and r18.model.kwargs.stem == "cifar"
  assert "dropout" not in r18.model.kwargs and r18.augment.cutout == 16


@pytest.mark.parametrize("depth,warmup", [(164, False), (1001, True), (110, True)])
def test_preact_resnet_recipe(depth, warmup):
  c = load("preact_resnet.py", str(depth))
  assert c.model.name == f"preact_resnet{depth}_cifar"
  model = models.build_model(c, 10)
  assert model.placement == "full_preact"
  assert_piecewise(c, 164, (81, 122), 0.1, 128)
  assert_sgd(c, 0.1, 0.9, False, 1e-4)
  assert c.data.validation_size == 0                       # all 50k training images
  if warmup:   # 400 iterations of 390 per epoch
    assert c.schedule.warmup_epochs * (50000 // 128) == pytest.approx(400)
  else:
    assert c.schedule.warmup_epochs == 0


def test_wrn_recipe():
  c = load("wrn_28_10.py")
  assert c.model.name == "wrn28_10"
  assert_piecewise(c, 200, (60, 120, 160), 0.2, 128)
  assert_sgd(c, 0.1, 0.9, True, 5e-4)
  assert load("wrn_28_10.py", "dropout").model.kwargs.dropout == pytest.approx(0.3)


def test_resnet_cifar_recipe():
  c = load("resnet_cifar.py", "110")
  assert c.model.name == "resnet110_cifar"
  assert_piecewise(c, 182, (91, 137), 0.1, 128)
  assert_sgd(c, 0.1, 0.9, False, 1e-4)
  assert c.optimizer.decay_all                             # Caffe decays every parameter


@pytest.mark.parametrize("depth", [110, 1202])
def test_resnet110_constant_warmup(depth):
  """He et al. 2015: lr 0.01 for the first ~400 iterations, then 0.1 (the schedule
  at the loop's 45,000 // 128 = 351 steps per epoch)."""
  import numpy as np
  from flaxcnn import optim
  c = load("resnet_cifar.py", str(depth))
  schedule = optim.make_schedule(c, 45000 // 128, 64000)
  lr = [float(schedule(t)) for t in (0, 399, 400, 31940, 31941)]
  np.testing.assert_allclose(lr, [0.01, 0.01, 0.1, 0.1, 0.01], rtol=1e-5)
  assert load("resnet_cifar.py", "56").schedule.warmup_epochs == 0


def test_efficientnet_decay_counts_from_step_zero():
  """The TF reference decays lr 0.256 by 0.97 every 2.4 epochs of the global step;
  the 5-epoch warm-up covers the first two periods."""
  from flaxcnn import optim
  c = load("efficientnet_b0.py")
  spe = 1281167 // 4096                                    # 312
  schedule = optim.make_schedule(c, spe, 350 * spe)
  after_warmup = int(round(5 * spe))
  periods = after_warmup // (2.4 * spe)
  assert float(schedule(after_warmup)) == pytest.approx(0.256 * 0.97 ** periods, rel=1e-5)
  assert periods == 2


def test_config_arguments_share_one_parser():
  opts = config_lib.parse_arg("b3,batch=1024", "x.py", variant=("b0", "b3"), batch=4096,
                              fast=False)
  assert opts == {"variant": "b3", "batch": 1024, "fast": False}
  assert config_lib.parse_arg("", "x.py", depth=(20, 110))["depth"] == 20
  assert config_lib.parse_arg("depth=110", "x.py", depth=(20, 110))["depth"] == 110
  for bad, match in (("b9", "unknown argument"), ("batch=big", "not a int"),
                     ("b0,b3", "given twice")):
    with pytest.raises(ValueError, match=match):
      config_lib.parse_arg(bad, "x.py", variant=("b0", "b3"), batch=4096)
  assert config_lib.parse_arg("fast=false", "x.py", fast=True) == {"fast": False}
  with pytest.raises(ValueError, match="'fast=ture' is not a bool"):   # not a silent False
    config_lib.parse_arg("fast=ture", "x.py", fast=False)


def test_recipes_build_the_papers_parameter_counts():
  """A few recipes' networks against the parameter counts their papers report."""
  import jax
  import jax.numpy as jnp

  def count(config, classes, size):
    model = models.build_model(config, classes)
    shapes = jax.eval_shape(lambda: model.init(
        {"params": jax.random.PRNGKey(0)}, jnp.zeros((1, size, size, 3)), train=False))
    return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes["params"]))

  assert count(load("densenet_bc_100_12.py"), 10, 32) / 1e6 == pytest.approx(0.8, abs=0.05)
  assert count(load("resnet50_imagenet.py", "50"), 1000, 64) / 1e6 == pytest.approx(25.6, abs=0.1)
  assert count(load("efficientnet_b0.py"), 1000, 64) / 1e6 == pytest.approx(5.3, abs=0.05)
  assert count(load("preact_resnet.py", "164"), 10, 32) / 1e6 == pytest.approx(1.7, abs=0.05)


# ----------------------------------------------------------------------------- in miniature

def _miniature(config, **kwargs):
  """The recipe with a tiny network on the digits (8x8, offline) for a few steps."""
  config.model.kwargs.update(kwargs)
  config.data.source = "digits"
  config.data.name = "digits"
  config.data.in_memory = True
  config.data.image_size = None
  config.data.validation_size = 180 if config.data.validation_size else 0
  config.augment.crop_padding = 1
  # digits are not mirror-symmetric; a recipe that tests on mirrored views (10-crop)
  # keeps flip on, since the refusal of that pair is not what is tested here
  config.augment.flip = config.eval_mode != "center"
  config.batch_size = 32
  config.eval_batch_size = 128
  config.num_steps = 3
  config.eval_every_epochs = 1 / 39          # every step (1,257 / 32 = 39 steps per epoch)
  config.log_every_steps = 1
  config.checkpoint_every_steps = 100
  return config


@pytest.mark.parametrize("name,arg,kwargs,splits", [
    # plateau schedule, 10-crop evaluation, option-B ImageNet ResNet (3 validations)
    ("resnet50_imagenet.py", "18,ten_crop", dict(stage_planes=(8, 16, 32, 64), stem_width=8),
     ("validation",)),
    # the paper's stochastic depth (inference-time scaling), 45k/5k split
    ("stochastic_depth_resnet110.py", "", dict(depth=8), ("validation",)),
])
def test_recipe_trains_in_miniature(name, arg, kwargs, splits, tmp_path):
  from flaxcnn import train
  config = _miniature(load(name, arg), **kwargs)
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["step"] == 3 and not summary["interrupted"]
  for split in splits + ("test",):
    assert 0.0 <= summary[split]["accuracy"] <= 1.0 and math.isfinite(summary[split]["loss"])
