"""Importing torchvision/timm ImageNet weights (flaxcnn.pretrained).

The torch reference architectures below replicate torchvision's ResNet /
ResNeXt / wide ResNet (v1.5 bottleneck) and DenseNet, and timm's
tf_efficientnet_b* / tf_efficientnetv2_* module names and state-dict key layout
exactly (torchvision and timm themselves cannot be installed beside the CPU
torch build here), so the published checkpoints load into them. Each test gives
a torch model random weights and random BatchNorm running statistics, converts
its state dict and checks that flaxcnn computes the same logits. Without
PyTorch the whole file skips (the references are torch code).
"""
import math

import numpy as np
import pytest

from flaxcnn import pretrained

torch = pytest.importorskip("torch", reason="PyTorch is not installed: the conversion "
                            "tests need torch reference models (pip install torch)")
nn = torch.nn
F = torch.nn.functional


# ----------------------------------------------------------------------------- torchvision ResNet

class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU(inplace=True)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
    super().__init__()
    width = int(planes * (base_width / 64.0)) * groups
    self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x):
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(nn.Module):
  """torchvision.models.resnet.ResNet (keys conv1, bn1, layer1-4, fc)."""

  def __init__(self, block, layers, num_classes=1000, groups=1, width_per_group=64,
               stem=64, widths=(64, 128, 256, 512)):
    super().__init__()
    self.inplanes, self.groups, self.base_width = stem, groups, width_per_group
    self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(stem)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    for i, (planes, n) in enumerate(zip(widths, layers)):
      setattr(self, f"layer{i + 1}", self._make_layer(block, planes, n, 1 if i == 0 else 2))
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)

  def _make_layer(self, block, planes, blocks, stride):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(
          nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
          nn.BatchNorm2d(planes * block.expansion))
    layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
    self.inplanes = planes * block.expansion
    layers += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width)
               for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(torch.flatten(self.avgpool(x), 1))


TORCH_RESNETS = {   # preset: (block, layers, groups, width_per_group) as in torchvision
    "resnet18": (BasicBlock, (2, 2, 2, 2), 1, 64),
    "resnet34": (BasicBlock, (3, 4, 6, 3), 1, 64),
    "resnet50": (Bottleneck, (3, 4, 6, 3), 1, 64),
    "resnet101": (Bottleneck, (3, 4, 23, 3), 1, 64),
    "resnet152": (Bottleneck, (3, 8, 36, 3), 1, 64),
    "resnext50_32x4d": (Bottleneck, (3, 4, 6, 3), 32, 4),
    "resnext101_32x8d": (Bottleneck, (3, 4, 23, 3), 32, 8),
    "resnext101_64x4d": (Bottleneck, (3, 4, 23, 3), 64, 4),
    "wrn50_2": (Bottleneck, (3, 4, 6, 3), 1, 128),
    "wrn101_2": (Bottleneck, (3, 4, 23, 3), 1, 128),
}


# ----------------------------------------------------------------------------- torchvision DenseNet

class DenseLayer(nn.Module):
  def __init__(self, cin, growth, bn_size):
    super().__init__()
    self.norm1 = nn.BatchNorm2d(cin)
    self.relu1 = nn.ReLU(inplace=True)
    self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
    self.norm2 = nn.BatchNorm2d(bn_size * growth)
    self.relu2 = nn.ReLU(inplace=True)
    self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

  def forward(self, x):
    y = self.conv1(self.relu1(self.norm1(x)))
    return torch.cat([x, self.conv2(self.relu2(self.norm2(y)))], 1)


class TorchDenseNet(nn.Module):
  """torchvision.models.densenet.DenseNet (keys features.conv0 ... norm5, classifier)."""

  def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64,
               bn_size=4, num_classes=1000):
    super().__init__()
    self.features = nn.Sequential()
    self.features.add_module("conv0", nn.Conv2d(3, num_init_features, 7, 2, 3, bias=False))
    self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
    self.features.add_module("relu0", nn.ReLU(inplace=True))
    self.features.add_module("pool0", nn.MaxPool2d(3, 2, 1))
    c = num_init_features
    for i, n in enumerate(block_config):
      block = nn.Sequential()
      for j in range(n):
        block.add_module(f"denselayer{j + 1}", DenseLayer(c + j * growth_rate, growth_rate, bn_size))
      self.features.add_module(f"denseblock{i + 1}", block)
      c += n * growth_rate
      if i != len(block_config) - 1:
        t = nn.Sequential()
        t.add_module("norm", nn.BatchNorm2d(c))
        t.add_module("relu", nn.ReLU(inplace=True))
        t.add_module("conv", nn.Conv2d(c, c // 2, 1, bias=False))
        t.add_module("pool", nn.AvgPool2d(2, 2))
        self.features.add_module(f"transition{i + 1}", t)
        c //= 2
    self.features.add_module("norm5", nn.BatchNorm2d(c))
    self.classifier = nn.Linear(c, num_classes)

  def forward(self, x):
    x = F.relu(self.features(x))
    return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


TORCH_DENSENETS = {"densenet121": (32, (6, 12, 24, 16), 64), "densenet161": (48, (6, 12, 36, 24), 96),
                   "densenet169": (32, (6, 12, 32, 32), 64), "densenet201": (32, (6, 12, 48, 32), 64)}


# ----------------------------------------------------------------------------- timm tf_efficientnet

class Conv2dSame(nn.Conv2d):
  """timm's Conv2dSame: TensorFlow 'SAME' padding, computed from the input size."""

  def forward(self, x):
    ih, iw = x.shape[-2:]
    kh, kw = self.weight.shape[-2:]
    sh, sw = self.stride
    ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
    pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
    x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
    return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def conv(cin, cout, k, stride=1, groups=1):
  return Conv2dSame(cin, cout, k, stride, groups=groups, bias=False)


def bn(c):
  return nn.BatchNorm2d(c, eps=1e-3)


class SE(nn.Module):
  def __init__(self, chs, rd):
    super().__init__()
    self.conv_reduce = nn.Conv2d(chs, rd, 1)
    self.conv_expand = nn.Conv2d(rd, chs, 1)

  def forward(self, x):
    s = F.silu(self.conv_reduce(x.mean((2, 3), keepdim=True)))
    return x * torch.sigmoid(self.conv_expand(s))


class Block(nn.Module):
  """timm's DepthwiseSeparableConv ('ds'), InvertedResidual ('ir'), EdgeResidual
  ('er') and ConvBnAct ('cn') with their attribute names."""

  def __init__(self, kind, cin, cout, k, stride, exp, se_ratio):
    super().__init__()
    self.kind, mid = kind, cin * exp
    self.skip = stride == 1 and cin == cout
    self.se = SE(mid, round(cin * se_ratio)) if se_ratio else None
    if kind == "ds":
      self.conv_dw, self.bn1 = conv(cin, cin, k, stride, cin), bn(cin)
      self.conv_pw, self.bn2 = conv(cin, cout, 1), bn(cout)
    elif kind == "ir":
      self.conv_pw, self.bn1 = conv(cin, mid, 1), bn(mid)
      self.conv_dw, self.bn2 = conv(mid, mid, k, stride, mid), bn(mid)
      self.conv_pwl, self.bn3 = conv(mid, cout, 1), bn(cout)
    elif kind == "er":
      self.conv_exp, self.bn1 = conv(cin, mid, k, stride), bn(mid)
      self.conv_pwl, self.bn2 = conv(mid, cout, 1), bn(cout)
    else:
      self.conv, self.bn1 = conv(cin, cout, k, stride), bn(cout)

  def forward(self, x):
    se = self.se or (lambda y: y)
    if self.kind == "ds":
      y = self.bn2(self.conv_pw(se(F.silu(self.bn1(self.conv_dw(x))))))
    elif self.kind == "ir":
      y = F.silu(self.bn1(self.conv_pw(x)))
      y = self.bn3(self.conv_pwl(se(F.silu(self.bn2(self.conv_dw(y))))))
    elif self.kind == "er":
      y = self.bn2(self.conv_pwl(se(F.silu(self.bn1(self.conv_exp(x))))))
    else:
      y = F.silu(self.bn1(self.conv(x)))
    return x + y if self.skip else y


def round_channels(c, mult, divisor=8):
  v = c * mult
  new = max(divisor, int(v + divisor / 2) // divisor * divisor)
  return new + divisor if new < 0.9 * v else new


B0 = [("ds", 1, 3, 1, 1, 16, 0.25), ("ir", 2, 3, 2, 6, 24, 0.25), ("ir", 2, 5, 2, 6, 40, 0.25),
      ("ir", 3, 3, 2, 6, 80, 0.25), ("ir", 3, 5, 1, 6, 112, 0.25), ("ir", 4, 5, 2, 6, 192, 0.25),
      ("ir", 1, 3, 1, 6, 320, 0.25)]  # timm arch_def: kind, repeats, k, stride, exp, c, se
V2 = {
    "s": [("cn", 2, 3, 1, 1, 24, 0), ("er", 4, 3, 2, 4, 48, 0), ("er", 4, 3, 2, 4, 64, 0),
          ("ir", 6, 3, 2, 4, 128, .25), ("ir", 9, 3, 1, 6, 160, .25), ("ir", 15, 3, 2, 6, 256, .25)],
    "m": [("cn", 3, 3, 1, 1, 24, 0), ("er", 5, 3, 2, 4, 48, 0), ("er", 5, 3, 2, 4, 80, 0),
          ("ir", 7, 3, 2, 4, 160, .25), ("ir", 14, 3, 1, 6, 176, .25),
          ("ir", 18, 3, 2, 6, 304, .25), ("ir", 5, 3, 1, 6, 512, .25)],
    "l": [("cn", 4, 3, 1, 1, 32, 0), ("er", 7, 3, 2, 4, 64, 0), ("er", 7, 3, 2, 4, 96, 0),
          ("ir", 10, 3, 2, 4, 192, .25), ("ir", 19, 3, 1, 6, 224, .25),
          ("ir", 25, 3, 2, 6, 384, .25), ("ir", 7, 3, 1, 6, 640, .25)],
}


class TorchEfficientNet(nn.Module):
  """timm's EfficientNet as built for tf_efficientnet_b* / tf_efficientnetv2_*
  (keys conv_stem, bn1, blocks.{stage}.{i}.*, conv_head, bn2, classifier)."""

  def __init__(self, arch, width=1.0, depth=1.0, stem=32, num_classes=1000):
    super().__init__()
    rc = lambda c: round_channels(c, width)  # noqa: E731
    c = rc(stem)
    self.conv_stem, self.bn1 = conv(3, c, 3, 2), bn(c)
    stages = []
    for kind, repeats, k, stride, exp, cout, se in arch:
      blocks = []
      for j in range(int(math.ceil(repeats * depth))):
        blocks.append(Block(kind, c, rc(cout), k, stride if j == 0 else 1, exp, se))
        c = rc(cout)
      stages.append(nn.Sequential(*blocks))
    self.blocks = nn.Sequential(*stages)
    self.conv_head, self.bn2 = conv(c, rc(1280), 1), bn(rc(1280))
    self.classifier = nn.Linear(rc(1280), num_classes)

  def forward(self, x):
    x = F.silu(self.bn1(self.conv_stem(x)))
    x = F.silu(self.bn2(self.conv_head(self.blocks(x))))
    return self.classifier(x.mean((2, 3)))


V1_SCALING = {"b0": (1.0, 1.0), "b1": (1.0, 1.1), "b2": (1.1, 1.2), "b3": (1.2, 1.4),
              "b4": (1.4, 1.8), "b5": (1.6, 2.2), "b6": (1.8, 2.6), "b7": (2.0, 3.1)}


def torch_model(preset, num_classes=1000):
  """The torch reference architecture of a supported flaxcnn preset."""
  if preset in TORCH_RESNETS:
    block, layers, groups, wpg = TORCH_RESNETS[preset]
    return TorchResNet(block, layers, num_classes, groups, wpg)
  if preset in TORCH_DENSENETS:
    g, blocks, init = TORCH_DENSENETS[preset]
    return TorchDenseNet(g, blocks, init, num_classes=num_classes)
  if preset.startswith("efficientnet_b"):
    w, d = V1_SCALING[preset[-2:]]
    return TorchEfficientNet(B0, w, d, 32, num_classes)
  arch = V2[preset[-1]]
  return TorchEfficientNet(arch, 1.0, 1.0, arch[0][5], num_classes)


# ----------------------------------------------------------------------------- helpers

def randomize(model, size=64, seed=0):
  """Random weights and BatchNorm statistics, eval mode.

  The running statistics are first calibrated on a batch of random images (so
  that activations stay normalized through the whole depth and the logits
  depend on the input, not only on the last biases), then perturbed at random:
  the logits depend on every converted tensor, the statistics included.
  """
  g = torch.Generator().manual_seed(seed)
  bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
  with torch.no_grad():
    for m in bns:
      m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
      m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
      m.momentum = 1.0          # running statistics := those of the calibration batch
    for m in model.modules():
      if isinstance(m, nn.Linear):
        m.bias.copy_(torch.randn(m.bias.shape, generator=g))
    model.train()
    model(torch.randn((8, 3, size, size), generator=g))
    for m in bns:
      m.running_mean.add_(0.1 * torch.randn(m.running_mean.shape, generator=g)
                          * m.running_var.sqrt())
      m.running_var.mul_(0.8 + 0.4 * torch.rand(m.running_var.shape, generator=g))
      m.momentum = 0.1
  return model.eval()


def state_dict_numpy(model):
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def compare(preset, tmodel, size, tol=1e-4, batch=2, **model_kwargs):
  import jax
  import jax.numpy as jnp
  from flaxcnn import models
  x = np.random.RandomState(1).standard_normal((batch, 3, size, size)).astype(np.float32)
  with torch.no_grad():
    expected = tmodel(torch.from_numpy(x)).numpy()
  num_classes = expected.shape[-1]
  variables = pretrained.convert(preset, state_dict_numpy(tmodel), **model_kwargs)
  model = models.create_model(preset, num_classes=num_classes, **model_kwargs)
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(
      variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
  logits = np.asarray(logits)
  scale = max(1.0, float(np.abs(expected).max()))
  assert float(np.std(expected - expected.mean(0))) > 0.1   # the input matters
  err = float(np.abs(logits - expected).max())
  assert err <= tol * scale, f"{preset}: max |flax - torch| = {err:.3g} (logits up to {scale:.3g})"
  return err


# ----------------------------------------------------------------------------- logits match

# WRN-50-2 is ResNet-50 with width_per_group=128 (the key-layout test checks its
# shapes); ResNeXt covers the grouped 3x3 convolutions.
@pytest.mark.parametrize("preset,size", [("resnet18", 64), ("resnet50", 64),
                                         ("resnext50_32x4d", 32)])
def test_resnet_family_logits_match_torch(preset, size):
  block, layers, groups, wpg = TORCH_RESNETS[preset]
  torch.manual_seed(0)
  tmodel = randomize(TorchResNet(block, layers, 7, groups, wpg), size)
  compare(preset, tmodel, size)


def test_the_comparison_sees_a_single_wrong_statistic():
  """Sensitivity: one BatchNorm's running variance off by 10% deep in the network
  moves the logits far beyond the tolerance."""
  torch.manual_seed(0)
  tmodel = randomize(torch_model("resnet18", 7))
  compare("resnet18", tmodel, 64)
  with torch.no_grad():
    tmodel.layer3[1].bn2.running_var.mul_(1.1)
  sd = state_dict_numpy(tmodel)
  with torch.no_grad():
    tmodel.layer3[1].bn2.running_var.div_(1.1)   # torch keeps the right value
  import jax
  from flaxcnn import models
  x = np.random.RandomState(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
  with torch.no_grad():
    expected = tmodel(torch.from_numpy(x)).numpy()
  model = models.create_model("resnet18", num_classes=7)
  wrong = jax.jit(lambda v, x: model.apply(v, x, train=False))(
      pretrained.convert("resnet18", sd), x.transpose(0, 2, 3, 1))
  assert float(np.abs(np.asarray(wrong) - expected).max()) > 1e-2


def test_densenet121_logits_match_torch():
  torch.manual_seed(0)
  compare("densenet121", randomize(torch_model("densenet121", 7)), 64)


def test_efficientnet_b0_logits_match_timm_tf_efficientnet():
  # 64x64: TF 'SAME' pads the stride-2 convolutions of even inputs asymmetrically
  # (0 before, 1 after), unlike torchvision's symmetric padding.
  torch.manual_seed(0)
  compare("efficientnet_b0", randomize(torch_model("efficientnet_b0", 7)), 64)


def test_efficientnet_compound_scaling_logits_match():
  # B-series scaling (rounded widths, ceil'd depths, the skip of a repeated 'ds'
  # block) at a small scale: width 0.5, depth 1.2 (B2's depth); 65x65 so that
  # 'SAME' pads every stride-2 convolution symmetrically (odd inputs).
  torch.manual_seed(0)
  tmodel = randomize(TorchEfficientNet(B0, 0.5, 1.2, 32, 5), 65)
  compare("efficientnet_b0", tmodel, 65, width_mult=0.5, depth_mult=1.2)


def test_efficientnetv2_logits_match_timm_tf_efficientnetv2():
  # V2-S's stages (ConvBnAct with skip, EdgeResidual, InvertedResidual + SE) at a
  # third of its depth and half its width, for speed; the full-size key layout is
  # checked for every preset below.
  torch.manual_seed(0)
  tmodel = randomize(TorchEfficientNet(V2["s"], 0.5, 0.34, 24, 5))
  compare("efficientnetv2_s", tmodel, 64, width_mult=0.5, depth_mult=0.34)


# ----------------------------------------------------------------------------- every preset

@pytest.mark.parametrize("preset", sorted(pretrained.SUPPORTED))
def test_every_supported_preset_has_the_exact_torch_key_layout(preset):
  """Full size, no compute: the torch reference on the meta device."""
  with torch.device("meta"):
    tmodel = torch_model(preset)
  expected = {k: tuple(v.shape) for k, v in tmodel.state_dict().items()
              if not k.endswith("num_batches_tracked")}
  kmap = pretrained.key_map(preset)
  got = {k: shape for k, (_, _, shape) in kmap.items()}
  assert sorted(set(expected) - set(got)) == [], "keys flaxcnn does not use"
  assert sorted(set(got) - set(expected)) == [], "keys flaxcnn needs that torch lacks"
  bad = {k: (expected[k], got[k]) for k in expected if expected[k] != got[k]}
  assert not bad


# ----------------------------------------------------------------------------- files and errors

def test_load_safetensors_pth_npz_and_new_head(tmp_path):
  pytest.importorskip("safetensors", reason="safetensors is not installed")
  from safetensors.torch import save_file
  import jax
  from flaxcnn import models
  torch.manual_seed(0)
  tmodel = randomize(torch_model("resnet18", 1000), 32)
  sd = tmodel.state_dict()
  save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "m.safetensors"))
  torch.save(sd, tmp_path / "m.pth")
  torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "wrapped.pth")
  np.savez(tmp_path / "m.npz", **state_dict_numpy(tmodel))
  ref = pretrained.convert("resnet18", state_dict_numpy(tmodel))
  for name in ("m.safetensors", "m.pth", "wrapped.pth", "m.npz"):
    v = pretrained.load("resnet18", str(tmp_path / name))
    jax.tree.map(np.testing.assert_array_equal, v, ref)
  assert v["params"]["head"]["kernel"].shape == (512, 1000)
  # A new 10-class head for fine-tuning: the backbone is kept, the head is fresh.
  v10 = pretrained.load("resnet18", str(tmp_path / "m.safetensors"), num_classes=10)
  assert v10["params"]["head"]["kernel"].shape == (512, 10)
  np.testing.assert_array_equal(v10["params"]["stem_conv"]["kernel"],
                                ref["params"]["stem_conv"]["kernel"])
  # A headless file (timm's num_classes=0 export) gets a fresh head as well.
  headless = {k: v for k, v in state_dict_numpy(tmodel).items() if not k.startswith("fc.")}
  v0 = pretrained.convert("resnet18", headless, num_classes=10)
  np.testing.assert_array_equal(v0["params"]["head"]["kernel"],
                                v10["params"]["head"]["kernel"])
  model = models.create_model("resnet18", num_classes=10)
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(v10, np.zeros((1, 32, 32, 3), np.float32))
  assert out.shape == (1, 10)


def test_legacy_torchvision_densenet_keys():
  with torch.device("meta"):
    tmodel = torch_model("densenet121")
  sd = {}
  for k, v in tmodel.state_dict().items():   # features.denseblock1.denselayer1.norm.1.weight
    for part in ("norm1", "norm2", "conv1", "conv2"):
      k = k.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
    sd[k] = np.zeros(v.shape, np.float32)
  assert any(".norm.1." in k for k in sd)
  v = pretrained.convert("densenet121", sd)
  assert v["params"]["block1"]["layer1"]["conv1"]["kernel"].shape == (1, 1, 64, 128)


def _zeros_state_dict(preset):
  with torch.device("meta"):
    tmodel = torch_model(preset)
  return {k: np.zeros(v.shape, np.float32) for k, v in tmodel.state_dict().items()}


def test_errors_name_missing_unexpected_and_mismatched_keys():
  sd = _zeros_state_dict("resnet18")
  del sd["layer2.0.downsample.1.running_var"]
  sd["layer5.0.conv1.weight"] = np.zeros((3, 3, 3, 3), np.float32)
  sd["layer1.0.conv2.weight"] = np.zeros((64, 64, 5, 5), np.float32)
  with pytest.raises(pretrained.ConversionError) as e:
    pretrained.convert("resnet18", sd)
  msg = str(e.value)
  assert "1 missing key(s): layer2.0.downsample.1.running_var" in msg
  assert "1 unexpected key(s): layer5.0.conv1.weight" in msg
  assert "layer1.0.conv2.weight: file (64, 64, 5, 5), model (64, 64, 3, 3)" in msg
  # A ResNet-50 file given for ResNet-18: many keys, named.
  with pytest.raises(pretrained.ConversionError, match="unexpected key.*conv3.*shape mismatch"):
    pretrained.convert("resnet18", _zeros_state_dict("resnet50"))
  with pytest.raises(pretrained.ConversionError, match="no pretrained import for preset"):
    pretrained.convert("resnet20_cifar", sd)


def test_torchvision_efficientnet_is_refused_with_the_reason():
  sd = {"features.0.0.weight": np.zeros((32, 3, 3, 3), np.float32),
        "classifier.1.weight": np.zeros((1000, 1280), np.float32)}
  with pytest.raises(pretrained.ConversionError, match="SAME"):
    pretrained.convert("efficientnet_b0", sd)


def test_missing_file():
  with pytest.raises(FileNotFoundError):
    pretrained.load("resnet18", "/nonexistent/weights.safetensors")


@pytest.mark.parametrize("suffix", [".npz", ".safetensors", ".pth"])
def test_an_unreadable_weights_file_is_one_line_naming_it(tmp_path, suffix):
  """A truncated or mislabelled file gives one ConversionError (a ValueError the
  command line prints as one line), not the reader's traceback."""
  if suffix == ".safetensors":
    pytest.importorskip("safetensors")
  if suffix == ".pth":
    pytest.importorskip("torch")
  path = tmp_path / f"w{suffix}"
  path.write_bytes(bytes(range(256)) * 4)
  with pytest.raises(pretrained.ConversionError, match=rf"w\{suffix} cannot be read as a "
                                                       rf"\{suffix} file \("):
    pretrained.read_state_dict(str(path))


def test_the_command_refuses_a_pickle_in_one_line(tmp_path):
  """A .pth holding code (not only tensors) is refused, and the command says so in one
  line (torch installed: its weights-only reader refuses it; absent: torch is needed)."""
  import pickle
  import subprocess
  import sys

  from conftest import ROOT

  class Code:
    def __reduce__(self):
      return (print, ("this ran",))
  path = tmp_path / "evil.pth"
  path.write_bytes(pickle.dumps({"conv1.weight": Code()}))
  r = subprocess.run([sys.executable, "-m", "flaxcnn.pretrained", "resnet18", str(path)],
                     capture_output=True, text=True, cwd=ROOT)
  assert r.returncode != 0 and "this ran" not in r.stdout
  lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
  assert len(lines) == 1 and lines[0].startswith(f"error: {path}"), r.stderr
