"""ResNet-18/34/50/101/152 on ImageNet (He, Zhang, Ren, Sun 2015, "Deep Residual
Learning for Image Recognition", Section 3.4 "Implementation"; results in Tables 3-4).

The paper's recipe, as far as flaxcnn supports it:
- SGD, batch 256, momentum 0.9 (plain momentum: the paper trained in Caffe),
  weight decay 1e-4 on every parameter (decay_all: Caffe applies it to the BatchNorm
  scales and biases too), no dropout, BatchNorm after every convolution;
- learning rate 0.1, divided by 10 when the validation error plateaus
  (schedule 'plateau', factor 0.1); the paper trains up to 60e4 iterations,
  i.e. 60e4 * 256 / 1.28M = 120 epochs. It does not say how long a plateau is:
  here 5 evaluations (epochs) without a lower validation error (schedule.patience);
- scale augmentation: the shorter side resized to a random size in [256, 480],
  a random 224x224 crop, random horizontal flip (streamed through tf.data);
- evaluation: centre crop during training; the paper's 10-crop testing (Table 3)
  and fully convolutional multi-scale testing at shorter sides
  {224, 256, 384, 480, 640} (Table 4) via the `ten_crop` / `multiscale` argument.
  Not supported: the per-pixel mean subtraction and AlexNet-style PCA colour
  augmentation of Sec. 3.4 (flaxcnn normalizes by the per-channel mean/std).

ResNet-18/34 use basic blocks, 50/101/152 bottleneck blocks; all use option-B
shortcuts (projections only where the shape changes), as the paper's Table 4.
The bottleneck nets are the paper's own form ("v1", the presets resnet50_v1 ...):
the stride on the first 1x1 convolution (model.kwargs.stride_in_1x1), 3.8 G
multiply-adds for ResNet-50, not torchvision's "v1.5" (stride on the 3x3, 4.1 G).

  python launch.py --config=experiments/resnet50_imagenet.py --workdir=runs/r50
  python launch.py --config=experiments/resnet50_imagenet.py:34,ten_crop --workdir=runs/r34
  python launch.py --config=experiments/resnet50_imagenet.py:152,multiscale \
      --workdir=runs/r152 --config.job=eval

Reads TFDS `imagenet2012` (prepared in --config.data.data_dir); an ImageNet image
folder works too: --config.data.source=folder --config.data.root=ROOT.
"""
from flaxcnn.config import default_config, parse_arg

DEPTHS = (50, 18, 34, 101, 152)   # the first is the default
EVAL_MODES = ("center", "ten_crop", "multiscale")


def get_config(arg: str = ""):
  opts = parse_arg(arg, "resnet50_imagenet.py", depth=DEPTHS, eval_mode=EVAL_MODES)
  depth, eval_mode = opts["depth"], opts["eval_mode"]

  config = default_config()
  config.model.name = f"resnet{depth}"
  if depth >= 50:
    config.model.kwargs.stride_in_1x1 = True   # He et al. 2015's bottleneck ("v1")
  config.data.source = "tfds"
  config.data.name = "imagenet2012"
  config.data.in_memory = False            # stream: decode + scale augmentation in tf.data
  config.data.image_size = 224
  config.data.validation_split = "validation"
  config.augment.scale_range = (256, 480)  # shorter side, then a random 224 crop
  config.augment.flip = True
  config.augment.crop_padding = 0          # (in-memory augmentation only)
  config.eval_mode = eval_mode
  config.eval_scales = (224, 256, 384, 480, 640)

  config.batch_size = 256
  # Images per evaluation batch (divisible by 1-8 devices); 10 crops or 5 scales x 2
  # flips multiply the activations, so those modes take fewer images per batch.
  config.eval_batch_size = {"center": 512, "ten_crop": 128, "multiscale": 32}[eval_mode]
  config.num_epochs = 120.0                # 60e4 iterations of 256 images
  config.optimizer.name = "sgd"
  config.optimizer.lr = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 1e-4
  config.optimizer.decay_all = True        # Caffe (and fb.resnet.torch) decay every parameter
  config.schedule.name = "plateau"
  config.schedule.factor = 0.1
  config.schedule.patience = 5
  config.schedule.warmup_epochs = 0.0
  config.label_smoothing = 0.0

  config.eval_every_epochs = 1.0
  config.log_every_steps = 100
  config.checkpoint_every_steps = 2000
  return config


# ----------------------------------------------------------------------------- paper rows
# The published results these recipes reproduce (flaxcnn.papers; compared by
# `python -m flaxcnn.results DIR --paper`): 10-crop (Table 3) and multi-scale (Table 4).
from flaxcnn import papers  # noqa: E402

PAPER = [row for table, mode in ((papers.HE2015_T3, "ten_crop"), (papers.HE2015_T4, "multiscale"))
         for depth in (34, 50, 101, 152)
         for row in papers.rows(table, {f"ResNet-{depth}{' B' if depth == 34 else ''}": {
             "model.name": f"resnet{depth}", "eval_mode": mode}}, arg=f"{depth},{mode}")]
