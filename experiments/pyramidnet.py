"""PyramidNet on CIFAR (Han, Kim, Kim 2017, "Deep Pyramidal Residual Networks",
Section 4.1 "Training settings"; Table 4).

The paper's recipe: SGD with Nesterov momentum 0.9 (no dampening), batch 128,
300 epochs, learning rate 0.1 for CIFAR-10 and 0.5 for CIFAR-100, divided by 10 at
epochs 150 and 225, weight decay 1e-4 on all parameters, BatchNorm included
(decay_all, as the authors' Torch code), pad-4 random crop + horizontal flip,
trained on all 50,000 training images (test error reported at the end).

Default model: additive PyramidNet-110 (alpha 48, 1.7M parameters). Any CIFAR preset
of flaxcnn.models.pyramidnet by its suffix, e.g.

  python launch.py --config=experiments/pyramidnet.py --workdir=runs/pyr110
  python launch.py --config=experiments/pyramidnet.py:272_a200_bottleneck,cifar100 \
      --workdir=runs/pyr272
  python launch.py --config=experiments/pyramidnet.py:110_mul_a8 --workdir=runs/pyr_mul
"""
from flaxcnn import papers
from flaxcnn.config import default_config, parse_arg
from flaxcnn.models import list_models

PRESETS = tuple(["110_a48"] + [m[len("pyramidnet"):] for m in list_models("pyramidnet")
                               if not m.endswith("_imagenet") and m != "pyramidnet110_a48"])


def _label(preset):
  depth, alpha = preset.split("_")[:2]
  kind = " bottleneck" if preset.endswith("_bottleneck") else ""
  return f"PyramidNet-{depth}{kind} alpha={alpha[1:]}"


PAPER = [row for table, dataset in ((papers.PYRAMIDNET_T4_C10, "cifar10"),
                                    (papers.PYRAMIDNET_T4_C100, "cifar100"))
         for p in PRESETS if _label(p) in table.values
         for row in papers.rows(table, {_label(p): {"model.name": f"pyramidnet{p}"}},
                                arg=f"{p},{dataset}")]


def get_config(arg: str = ""):
  opts = parse_arg(arg, "pyramidnet.py", preset=PRESETS, dataset=("cifar10", "cifar100"))
  config = default_config()
  config.model.name = f"pyramidnet{opts['preset']}"
  config.data.name = opts["dataset"]
  config.data.validation_size = 0
  config.eval_batch_size = 512             # divisible by 1-8 devices
  config.num_epochs = 300.0
  config.optimizer.lr = 0.5 if opts["dataset"] == "cifar100" else 0.1
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 1e-4
  config.optimizer.decay_all = True
  config.schedule.boundaries = (150.0, 225.0)
  config.schedule.factor = 0.1
  config.log_every_steps = 100
  config.eval_every_epochs = 5.0
  config.checkpoint_every_steps = 2000
  return config
