"""ImageNet recipes of the residual family after He et al. 2015 (whose own recipe is
resnet50_imagenet.py), each with the table it reproduces:

  He et al. 2016, "Identity Mappings in Deep Residual Networks", Table 5
  Zagoruyko & Komodakis 2016, "Wide Residual Networks", Table 8
  Huang et al. 2017, "Densely Connected Convolutional Networks", Table 3
  Han et al. 2017, "Deep Pyramidal Residual Networks" (the authors' ImageNet models)
  Hu et al. 2018, "Squeeze-and-Excitation Networks", Table 2
  Xie et al. 2017, "Aggregated Residual Transformations ...", Tables 3, 4 and 5

The argument names the model (a preset), optionally the recipe and the test:

  python launch.py --config=experiments/imagenet.py:densenet121 --workdir=runs/dn121
  python launch.py --config=experiments/imagenet.py:densenet121 --workdir=runs/dn121 \
      --config.job=eval --config.eval_mode=ten_crop --config.eval_batch_size=128
  python launch.py --config=experiments/imagenet.py:preact_resnet200 --workdir=runs/pre200
  python launch.py --config=experiments/imagenet.py:preact_resnet200 --workdir=runs/pre200 \
      --config.job=eval --config.data.eval_image_size=320
  python launch.py --config=experiments/imagenet.py:preact_resnet200,torch --workdir=runs/p200t

An eval job's results are recorded in the run (WORKDIR/evaluations.jsonl), so
`python -m flaxcnn.results runs/dn121 --paper imagenet.py:densenet121` puts the
10-crop and 320 tests of a run trained with centre evaluations beside the paper's
rows; the `ten_crop` and `320` arguments evaluate that way during training instead.

Recipes (RECIPES; each model defaults to its paper's, MODELS). Every one is SGD with
momentum 0.9, weight decay 1e-4 on every parameter (Torch's and Caffe's SGD decay the
BatchNorm scales and biases too: decay_all), batch statistics BatchNorm, 224 training
crops with flips, no warm-up, and the test on the 224 centre of a 256 shorter side:
- torch: fb.resnet.torch (opts.lua, train.lua), which WRN, DenseNet (Sec. 4.4: "keep
  all the experiment settings exactly the same as those used for ResNet") and the
  PyramidNet authors trained with: 90 epochs, batch 256, learning rate 0.1 divided by
  10 every 30 epochs, Nesterov momentum (dampening 0), random-resized crops (area
  8-100%, aspect 3/4-4/3: train_crop="inception").
- resnext: Xie et al. Sec. 4, the same divided by 10 three times: 100 epochs (the
  authors' opts.lua), at epochs 30, 60 and 90.
- he2016: He et al. 2016, appendix: learning rate 0.1 divided by 10 at epochs 30 and
  60, batch 256, He et al. 2015's scale augmentation (shorter side in [256, 480],
  then a random 224 crop), plain momentum (Caffe). The paper does not state the
  length: 90 epochs, as fb.resnet.torch's schedule that it follows.
- senet: Hu et al. Sec. 5.1: batch 1024, learning rate 0.6 divided by 10 every 30
  epochs, 100 epochs, random-resized crops. Weight decay and the momentum's form are
  not stated: 1e-4 and plain momentum, as the ResNets it builds on.
Not reproduced: fb.resnet.torch's colour jitter and PCA lighting noise, and SENet's
class-balanced minibatch sampling; flaxcnn normalizes by the per-channel mean/std.

Tests: `center` (default), `ten_crop` (DenseNet's Table 3), `320`: the 320 x 320
centre of a 320 shorter side (He et al. 2016, Table 5; Xie et al. Table 5), through
config.data.eval_image_size.

Reads TFDS `imagenet2012` (prepared in --config.data.data_dir); an ImageNet image
folder works too: --config.data.source=folder --config.data.root=ROOT.
"""
import os

from flaxcnn import papers
from flaxcnn.config import parse_arg
from flaxcnn.papers import load_config_module as load_module

RECIPES = {
    "torch": dict(epochs=90, boundaries=(30, 60), batch=256, lr=0.1, nesterov=True,
                  crop="inception"),
    "resnext": dict(epochs=100, boundaries=(30, 60, 90), batch=256, lr=0.1, nesterov=True,
                    crop="inception"),
    "he2016": dict(epochs=90, boundaries=(30, 60), batch=256, lr=0.1, nesterov=False,
                   crop="scale"),
    "senet": dict(epochs=100, boundaries=(30, 60, 90), batch=1024, lr=0.6, nesterov=False,
                  crop="inception"),
}
# model -> its paper's recipe (the first is the default model)
MODELS = {
    **{m: "he2016" for m in ("preact_resnet200", "preact_resnet152", "resnet152_v1",
                             "resnet200", "resnet200_v1", "preact_resnet152_v1",
                             "preact_resnet200_v1")},
    **{m: "torch" for m in ("wrn50_2", "resnet50", "resnet101", "resnet152", "densenet121",
                            "densenet169", "densenet201", "densenet264",
                            "pyramidnet200_a300_imagenet", "pyramidnet200_a450_imagenet")},
    **{m: "senet" for m in ("se_resnet50", "se_resnet101", "se_resnet152",
                            "se_resnet50_v1", "se_resnet101_v1", "se_resnet152_v1",
                            "resnet50_v1", "resnet101_v1",
                            "se_resnext50_32x4d", "se_resnext101_32x4d")},
    **{f"resnext{d}_{c}x{w}d": "resnext" for d in (50, 101)
       for c, w in papers.RESNEXT_SETTINGS},
    **{f"resnext101_{cw}": "resnext" for cw in ("1x100d", "2x64d", "64x4d")},
}
TESTS = ("center", "ten_crop", "320")


def get_config(arg: str = ""):
  opts = parse_arg(arg, "imagenet.py", model=tuple(MODELS),
                   recipe=("paper",) + tuple(RECIPES), test=TESTS)
  name = opts["model"]
  recipe = RECIPES[MODELS[name] if opts["recipe"] == "paper" else opts["recipe"]]

  # He et al. 2015's ImageNet recipe (resnet50_imagenet.py: streamed data, 224 crops,
  # SGD with momentum 0.9 and weight decay 1e-4 on every parameter, its logging), with
  # this paper's crops, batch, schedule and test
  eval_mode = "ten_crop" if opts["test"] == "ten_crop" else "center"
  config = load_module(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "resnet50_imagenet.py")).get_config(f"18,{eval_mode}")
  config.model.name = name                 # (ResNet-18: no model.kwargs to undo)
  config.augment.train_crop = recipe["crop"]
  if opts["test"] == "320":
    config.data.eval_image_size = 320
    config.eval_batch_size = 256           # divisible by 1-8 devices
  config.batch_size = recipe["batch"]
  config.num_epochs = float(recipe["epochs"])
  config.optimizer.lr = recipe["lr"]
  config.optimizer.nesterov = recipe["nesterov"]
  config.schedule.name = "piecewise"
  config.schedule.boundaries = tuple(float(b) for b in recipe["boundaries"])
  config.schedule.factor = 0.1
  return config


# ----------------------------------------------------------------------------- paper rows
# Each row is bound to its model, its recipe (the fields that tell the recipes apart)
# and its test (`python -m flaxcnn.results DIR --paper`).
def _rows(table, models, test="center"):
  out = []
  for label, (model, recipe) in models.items():
    r = RECIPES[recipe]
    match = {"model.name": model, "augment.train_crop": r["crop"], "batch_size": r["batch"],
             "optimizer.nesterov": r["nesterov"],
             "eval_mode": "ten_crop" if test == "ten_crop" else "center",
             "data.eval_image_size": 320 if test == "320" else None}
    arg = ",".join([model] + ([recipe] if recipe != MODELS[model] else [])
                   + ([test] if test != "center" else []))
    out += papers.rows(table, {label: match}, arg=arg)
  return out


# The authors' layouts: their ResNets and pre-activation ResNets stride the first 1x1
# convolution of a bottleneck ("_v1"); fb.resnet.torch's model (the last row) the 3x3.
_HE_320 = {"ResNet-152 original": ("resnet152_v1", "he2016"),
           "ResNet-152 pre-act": ("preact_resnet152_v1", "he2016"),
           "ResNet-200 original": ("resnet200_v1", "he2016"),
           "ResNet-200 pre-act": ("preact_resnet200_v1", "he2016"),
           "ResNet-200 pre-act, scale+aspect ratio": ("preact_resnet200", "torch")}
_RX = {f"{'ResNet' if c == 1 else 'ResNeXt'}-101 ({c} x {w}d)": (f"resnext101_{c}x{w}d", "resnext")
       for c, w in ((1, 64), (32, 4), (2, 64), (64, 4))}
# SENet's ResNets stride the first 1x1, as its prototxts (Table 2's GFLOPs are theirs).
_SE_MODELS = {"ResNet-50": "resnet50_v1", "ResNet-101": "resnet101_v1",
              "ResNet-152": "resnet152_v1", "ResNeXt-50": "resnext50_32x4d",
              "ResNeXt-101": "resnext101_32x4d"}
PAPER = (
    _rows(papers.HE2016_T5_224, {"ResNet-152 original": ("resnet152_v1", "he2016")})
    + _rows(papers.HE2016_T5_320, _HE_320, "320")
    + _rows(papers.WRN_T8, {**{f"ResNet-{d}": (f"resnet{d}", "torch") for d in (50, 101, 152)},
                            "WRN-50-2-bottleneck": ("wrn50_2", "torch"),
                            "pre-ResNet-200": ("preact_resnet200", "torch")})
    + [row for test, table in (("center", papers.DENSENET_T3),
                               ("ten_crop", papers.DENSENET_T3_10CROP))
       for row in _rows(table, {f"DenseNet-{d}": (f"densenet{d}", "torch")
                                for d in (121, 169, 201, 264)}, test)]
    + _rows(papers.PYRAMIDNET_IMAGENET, {
        "PyramidNet-200 alpha=300": ("pyramidnet200_a300_imagenet", "torch"),
        "PyramidNet-200 alpha=450, dropout 0.5": ("pyramidnet200_a450_imagenet", "torch")})
    + _rows(papers.SENET_T2, {label: (m, "senet") for name, plain in _SE_MODELS.items()
                              for label, m in ((name, plain),
                                               (f"SE-{name}", f"se_{plain}"))})
    + _rows(papers.RESNEXT_T3, {
        f"{'ResNet' if c == 1 else 'ResNeXt'}-{d} ({c} x {w}d)": (f"resnext{d}_{c}x{w}d",
                                                                 "resnext")
        for d in (50, 101) for c, w in papers.RESNEXT_SETTINGS})
    + _rows(papers.RESNEXT_T4, {**_RX, "ResNet-200": ("preact_resnet200", "torch"),
                                "ResNet-101, wider (1 x 100d)": ("resnext101_1x100d",
                                                                 "resnext")})
    + _rows(papers.RESNEXT_T5_320, {"ResNet-200": ("preact_resnet200", "torch"),
                                    "ResNeXt-101 (64 x 4d)": ("resnext101_64x4d", "resnext")},
            "320"))
