"""ResNeXt-29 on CIFAR (Xie, Girshick, Dollar, Tu, He 2017, "Aggregated Residual
Transformations for Deep Neural Networks", Section 5.3 "Experiments on CIFAR";
Table 7 / Figure 7).

The paper's recipe: batch 128, 300 epochs, learning rate 0.1 divided by 10 at
epochs 150 and 225, weight decay 5e-4, momentum 0.9, pad-4 random crop + flip,
trained on the 50k training images (test error reported). Nesterov momentum and
weight decay on all parameters, BatchNorm included (decay_all), come from the
authors' code (facebookresearch/ResNeXt, based on fb.resnet.torch: optim.sgd with
nesterov=true, dampening 0).

Blocks: Table 7's numbers came from pre-activated bottleneck blocks at batch 256 (the
authors' README: "in the arXiv paper CIFAR results are based on pre-activated
bottleneck blocks and a batch size of 256. We found that better CIFAR test accuracy
can be achieved using original bottleneck blocks and a batch size of 128"; the
paper's appendix says batch 128). `preact` is that form, the one that reproduces the
table: He et al. 2016's full pre-activation units (BN-ReLU before each convolution, a
BN-ReLU before the pooling) at batch 256, learning rate 0.1 as the appendix.
`original` (the default) is the authors' public code: post-activation blocks
(models/resnext.lua, form C: a grouped 3x3) at batch 128, which the README expects to
do better than the table.

  python launch.py --config=experiments/resnext29.py --workdir=runs/rx29_8x64d
  python launch.py --config=experiments/resnext29.py:8x64d,cifar10,preact --workdir=runs/rx29_pre
  python launch.py --config=experiments/resnext29.py:16x64d,cifar100 --workdir=runs/rx29

`8x64d` (default, 34.4M parameters) or `16x64d` (68.1M); `cifar100`; `preact`.
"""
from flaxcnn import papers
from flaxcnn.config import default_config, parse_arg

WIDTHS = ("8x64d", "16x64d")
# block form -> (the ResNet placement, batch size)
BLOCKS = {"original": ("original", 128), "preact": ("full_preact", 256)}
PAPER = [row for table, dataset in ((papers.RESNEXT_T7_C10, "cifar10"),
                                    (papers.RESNEXT_T7_C100, "cifar100"))
         for w in WIDTHS for block, (placement, _) in BLOCKS.items()
         for row in papers.rows(table, {f"ResNeXt-29 {w}": {
             "model.name": f"resnext29_{w}", "model.kwargs.placement": placement}},
             arg=f"{w},{dataset},{block}")]


def get_config(arg: str = ""):
  opts = parse_arg(arg, "resnext29.py", width=WIDTHS, dataset=("cifar10", "cifar100"),
                   block=tuple(BLOCKS))
  placement, batch = BLOCKS[opts["block"]]
  config = default_config()
  config.model.name = f"resnext29_{opts['width']}"
  config.model.kwargs.placement = placement
  config.batch_size = batch
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
