"""ResNeXt (Xie, Girshick, Dollar, Tu, He 2017, "Aggregated Residual
Transformations for Deep Neural Networks"), and SE-ResNeXt (Hu et al. 2018).

A ResNeXt block is the ResNet bottleneck whose 3x3 convolution is grouped: C
parallel paths ("cardinality", `groups`) of d channels each (`width_per_group`),
i.e. form (c) of the paper's Figure 3. So every ResNeXt here is `resnet.ResNet`
with bottleneck=True, groups=C, width_per_group=d; the bottleneck width of a
stage with `planes` planes is int(planes * d / 64) * C (C x d = 128 for the first
ImageNet stage of 32x4d), and the block output is 4 * planes.

    model = create_model("resnext50_32x4d")
    model = create_model("resnext29_8x64d", cardinality=4)   # a CIFAR ResNeXt-29, 4x64d
"""
import functools

from flaxcnn.models import registry
from flaxcnn.models.resnet import ResNet, cifar_resnet, imagenet_resnet


def imagenet_resnext(depth: int, cardinality: int, width: int, **kwargs) -> ResNet:
  """ImageNet ResNeXt-`depth` (C x d): the ResNet-`depth` bottleneck network
  (50, 101, 152) with `cardinality` groups of `width` channels in its 3x3
  convolutions (Xie et al. 2017, Table 1)."""
  return imagenet_resnet(depth, groups=cardinality, width_per_group=width, **kwargs)


def cifar_resnext(depth: int = 29, cardinality: int = 8, width: int = 64, **kwargs) -> ResNet:
  """CIFAR ResNeXt-`depth` (C x d) (Xie et al. 2017, Section 5.3): a 3x3 conv
  stem with 64 filters, three stages of (depth - 2) / 9 bottleneck blocks
  (3 for ResNeXt-29) with outputs 256 / 512 / 1024 on 32x32 / 16x16 / 8x8 maps,
  bottleneck widths C*d, 2*C*d, 4*C*d, projection shortcuts where shapes change."""
  kwargs.setdefault("stem_width", 64)
  kwargs.setdefault("stage_planes", (64, 128, 256))
  kwargs.setdefault("shortcut", "B")
  return cifar_resnet(depth, bottleneck=True, groups=cardinality,
                      width_per_group=width, **kwargs)


_XIE = "Xie et al. 2017, Aggregated Residual Transformations for Deep Neural Networks"
_SE = "Hu et al. 2018, Squeeze-and-Excitation Networks"
_imagenet = functools.partial(registry.register, image_size=224, num_classes=1000)
_cifar = functools.partial(registry.register, image_size=32, num_classes=10)

# Table 3: cardinality vs. width at (about) the complexity of ResNet-50 / ResNet-101.
# (1x64d is the ResNet itself; it is registered as resnext50_1x64d for the table.)
for _depth in (50, 101):
  for _c, _d in ((1, 64), (2, 40), (4, 24), (8, 14), (32, 4)):
    _imagenet(f"resnext{_depth}_{_c}x{_d}d", imagenet_resnext, paper=_XIE,
              depth=_depth, cardinality=_c, width=_d)
# Table 4: twice the complexity of ResNet-101 (wider 1x100d, 2x64d, 32x8d, 64x4d).
for _c, _d in ((1, 100), (2, 64), (32, 8), (64, 4)):
  _imagenet(f"resnext101_{_c}x{_d}d", imagenet_resnext, paper=_XIE,
            depth=101, cardinality=_c, width=_d)

# Table 7: CIFAR-10 ResNeXt-29.
for _c in (8, 16):
  _cifar(f"resnext29_{_c}x64d", cifar_resnext, paper=_XIE, depth=29, cardinality=_c, width=64)

# Hu et al. 2018: SE-ResNeXt (SE before the addition, reduction 16).
for _depth in (50, 101):
  _imagenet(f"se_resnext{_depth}_32x4d", imagenet_resnext, paper=_SE,
            depth=_depth, cardinality=32, width=4, se_reduction=16)
