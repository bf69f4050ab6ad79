"""ResNeXt-29 on CIFAR (Xie, Girshick, Dollar, Tu, He 2017, "Aggregated Residual
Transformations for Deep Neural Networks", Section 5.3 "Experiments on CIFAR";
Table 7 / Figure 7).

The paper's recipe: batch 128, 300 epochs, learning rate 0.1 divided by 10 at
epochs 150 and 225, weight decay 5e-4, momentum 0.9, pad-4 random crop + flip,
trained on the 50k training images (test error reported). Nesterov momentum and
weight decay on all parameters, BatchNorm included (decay_all), come from the
authors' code (facebookresearch/ResNeXt, based on fb.resnet.torch: optim.sgd with
nesterov=true, dampening 0).

  python launch.py --config=experiments/resnext29.py --workdir=runs/rx29_8x64d
  python launch.py --config=experiments/resnext29.py:16x64d,cifar100 --workdir=runs/rx29

`8x64d` (default, 34.4M parameters) or `16x64d` (68.1M); `cifar100`.
"""
from flaxcnn import papers
from flaxcnn.config import default_config, parse_arg

WIDTHS = ("8x64d", "16x64d")
PAPER = [row for table, dataset in ((papers.RESNEXT_T7_C10, "cifar10"),
                                    (papers.RESNEXT_T7_C100, "cifar100"))
         for w in WIDTHS
         for row in papers.rows(table, {f"ResNeXt-29 {w}": {"model.name": f"resnext29_{w}"}},
                                arg=f"{w},{dataset}")]


def get_config(arg: str = ""):
  opts = parse_arg(arg, "resnext29.py", width=WIDTHS, dataset=("cifar10", "cifar100"))
  config = default_config()
  config.model.name = f"resnext29_{opts['width']}"
  config.data.name = opts["dataset"]
  config.data.validation_size = 0
  config.eval_batch_size = 512             # divisible by 1-8 devices
  config.num_epochs = 300.0
  config.optimizer.lr = 0.1
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.optimizer.decay_all = True
  config.schedule.boundaries = (150.0, 225.0)
  config.schedule.factor = 0.1
  config.log_every_steps = 100
  config.eval_every_epochs = 5.0
  config.checkpoint_every_steps = 2000
  return config
