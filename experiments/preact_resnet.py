"""Pre-activation ResNet-164 / ResNet-1001 on CIFAR (He, Zhang, Ren, Sun 2016,
"Identity Mappings in Deep Residual Networks", Section 4 and Appendix; Table 3).

Full pre-activation bottleneck networks (BN-ReLU-conv units), projection shortcuts
where the shape changes, built as the authors' code does (KaimingHe/resnet-1k-layers:
the stride on the first 1x1 convolution, model.kwargs.stride_in_1x1; the presets
preact_resnet164_cifar_v1 / preact_resnet1001_cifar_v1). The paper's recipe (trained in Caffe: plain momentum):
batch 128, SGD momentum 0.9, weight decay 1e-4, learning rate 0.1 divided by 10
at 32k and 48k iterations, stopped at 64k, i.e. on the 50,000 training images
164 epochs with drops at epochs 81 and 122 (the epochs of fb.resnet.torch, which the
authors' released code resnet-1k-layers uses); pad-4 random crop + flip.
ResNet-1001 (and, as in He et al. 2015, ResNet-110) starts with learning rate 0.01
for the first 400 iterations, then 0.1: a constant warm-up (schedule.warmup='constant',
warmup_factor 0.1). Weight decay on every parameter, BatchNorm's included (decay_all:
the authors' Torch code applies weightDecay to all parameters).

  python launch.py --config=experiments/preact_resnet.py --workdir=runs/preact164
  python launch.py --config=experiments/preact_resnet.py:1001,cifar100 --workdir=runs/p1001

Arguments: depth 164 (default), 1001 or 110; `cifar100`.
"""
from flaxcnn.config import default_config, parse_arg

DEPTHS = (164, 110, 1001)        # the first is the default
STEPS_PER_EPOCH = 50000 // 128    # 390


def get_config(arg: str = ""):
  opts = parse_arg(arg, "preact_resnet.py", depth=DEPTHS, dataset=("cifar10", "cifar100"))
  depth, dataset = opts["depth"], opts["dataset"]
  config = default_config()
  config.model.name = f"preact_resnet{depth}_cifar"
  if depth != 110:                               # bottleneck nets: the authors' stride
    config.model.kwargs.stride_in_1x1 = True
  config.data.source = "tfds"
  config.data.name = dataset
  config.data.validation_size = 0
  config.augment.crop_padding = 4
  config.augment.flip = True
  config.batch_size = 128
  config.eval_batch_size = 512         # divisible by 1-8 devices
  config.num_epochs = 164.0
  config.optimizer.name = "sgd"
  config.optimizer.lr = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 1e-4
  config.optimizer.decay_all = True
  config.schedule.name = "piecewise"
  config.schedule.boundaries = (81.0, 122.0)
  config.schedule.factor = 0.1
  if depth in (110, 1001):                       # 0.01 for 400 iterations, then 0.1
    config.schedule.warmup_epochs = 400 / STEPS_PER_EPOCH
    config.schedule.warmup = "constant"
    config.schedule.warmup_factor = 0.1
  else:
    config.schedule.warmup_epochs = 0.0
  config.log_every_steps = 100
  config.eval_every_epochs = 5.0
  config.checkpoint_every_steps = 2000
  return config


# ----------------------------------------------------------------------------- paper rows
# The published results this recipe reproduces (flaxcnn.papers; compared by
# `python -m flaxcnn.results DIR --paper`): He et al. 2016, Tables 2 (e) and 3.
from flaxcnn import papers  # noqa: E402

PAPER = (papers.rows(papers.HE2016_T2_110, {"(e) full pre-activation": {
             "model.name": "preact_resnet110_cifar"}}, arg="110")
         + papers.rows(papers.HE2016_T2_164, {"(e) full pre-activation": {
             "model.name": "preact_resnet164_cifar"}})
         + papers.rows(papers.HE2016_T3_C10, {"pre-act ResNet-1001": {
             "model.name": "preact_resnet1001_cifar"}}, arg="1001")
         + [row for d in (164, 1001) for row in papers.rows(papers.HE2016_T3_C100, {
             f"pre-act ResNet-{d}": {"model.name": f"preact_resnet{d}_cifar"}},
             arg=f"{d},cifar100")])
