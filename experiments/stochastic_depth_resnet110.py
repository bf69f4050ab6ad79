"""ResNet-110 with stochastic depth on CIFAR (Huang, Sun, Liu, Sedra, Weinberger 2016,
"Deep Networks with Stochastic Depth", Section 4 "Results", CIFAR-10/100; Table 1,
Figures 3 and 8).

The paper's recipe: the 110-layer ResNet of He et al. 2015 (option-A shortcuts),
residual blocks dropped with survival probability decaying linearly from 1 to
p_L = 0.5 over the 54 blocks, p_l = 1 - l/L (1 - p_L); at test time each block's
output is scaled by p_l (the paper's form: stochastic_depth_mode='inference_scale').
A block is dropped for the whole mini-batch and then not computed at all, as in the
paper (stochastic_depth_per='batch'; its BN statistics are not updated either).
SGD, batch 128, 500 epochs, learning rate 0.1 divided by 10 at epochs 250 and 375,
weight decay 1e-4, momentum 0.9 with Nesterov (the authors' code:
yueatsprograms/Stochastic_Depth main.lua, nesterov=true, dampening 0; weight decay on
all parameters), pad-4 random crop + flip, 45k/5k train/validation split.

  python launch.py --config=experiments/stochastic_depth_resnet110.py --workdir=runs/sd110
  python launch.py --config=experiments/stochastic_depth_resnet110.py:cifar100 --workdir=runs/sd

Arguments: `cifar100`; `1202` for the paper's ResNet-1202 on CIFAR-10 (Section 4 and
Figure 4, not Table 1; p_L 0.5), with its own schedule (Section 4): 300 epochs, learning
rate 0.01 for the first 10 epochs, then 0.1, divided by 10 at epochs 150 and 225.
"""
from flaxcnn.config import default_config, parse_arg


def get_config(arg: str = ""):
  opts = parse_arg(arg, "stochastic_depth_resnet110.py", depth=(110, 1202),
                   dataset=("cifar10", "cifar100"))
  depth, dataset = opts["depth"], opts["dataset"]
  config = default_config()
  config.model.name = f"resnet{depth}_cifar"
  config.model.kwargs.stochastic_depth = 0.5          # p_L
  config.model.kwargs.stochastic_depth_decay = "linear"
  config.model.kwargs.stochastic_depth_mode = "inference_scale"
  config.model.kwargs.stochastic_depth_per = "batch"
  config.data.source = "tfds"
  config.data.name = dataset
  config.data.validation_size = 5000
  config.augment.crop_padding = 4
  config.augment.flip = True
  config.batch_size = 128
  config.eval_batch_size = 512         # divisible by 1-8 devices
  config.num_epochs = 500.0
  config.optimizer.name = "sgd"
  config.optimizer.lr = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 1e-4
  config.optimizer.decay_all = True
  config.schedule.name = "piecewise"
  config.schedule.boundaries = (250.0, 375.0)
  config.schedule.factor = 0.1
  config.schedule.warmup_epochs = 0.0
  if depth == 1202:                    # Section 4's schedule for the 1202-layer net
    config.num_epochs = 300.0
    config.schedule.boundaries = (150.0, 225.0)
    config.schedule.warmup = "constant"
    config.schedule.warmup_factor = 0.1  # 0.01 = 0.1 x the peak
    config.schedule.warmup_epochs = 10.0
  config.log_every_steps = 100
  config.eval_every_epochs = 5.0
  config.checkpoint_every_steps = 2000
  return config


# ----------------------------------------------------------------------------- paper rows
# The published results this recipe reproduces (flaxcnn.papers; compared by
# `python -m flaxcnn.results DIR --paper`): Huang et al. 2016, Table 1
# (and Section 4 for ResNet-1202).
from flaxcnn import papers  # noqa: E402

PAPER = [row for table, depth, arg in ((papers.SD_T1_C10, 110, ""),
                                       (papers.SD_1202_C10, 1202, "1202"),
                                       (papers.SD_T1_C100, 110, "cifar100"))
         for row in papers.rows(table, {f"ResNet-{depth} stochastic depth": {
             "model.name": f"resnet{depth}_cifar", "model.kwargs.stochastic_depth": 0.5}},
             arg=arg)]
