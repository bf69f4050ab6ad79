"""DenseNet-BC (L=100, k=12) on CIFAR (Huang, Liu, van der Maaten, Weinberger 2017,
"Densely Connected Convolutional Networks", Section 4.2 "Training"; Table 2).

The paper's recipe: SGD, batch 64, 300 epochs, learning rate 0.1 divided by 10 at
50% and 75% of training (epochs 150 and 225), weight decay 1e-4, Nesterov momentum
0.9 without dampening; standard augmentation (pad-4 random crop + horizontal flip,
"C10+"), so no dropout; trained on all 50,000 training images and evaluated on the
test set at the end (no validation split). Weight decay applies to all parameters
(BatchNorm included: decay_all), as optim.sgd's weightDecay in the authors' Torch code.

  python launch.py --config=experiments/densenet_bc_100_12.py --workdir=runs/dnbc100
  python launch.py --config=experiments/densenet_bc_100_12.py:250_24,cifar100 --workdir=runs/dn250

Arguments: `L_k` selects another DenseNet-BC of Table 2 (100_12, 250_24, 190_40),
`cifar100` the CIFAR-100 dataset.
"""
from flaxcnn import papers
from flaxcnn.config import default_config, parse_arg

PRESETS = ("100_12", "250_24", "190_40")
PAPER = [row for table, dataset in ((papers.DENSENET_T2_C10, "cifar10"),
                                    (papers.DENSENET_T2_C100, "cifar100"))
         for p in PRESETS
         for row in papers.rows(table, {
             "DenseNet-BC L={} k={}".format(*p.split("_")): {"model.name": f"densenet_bc_{p}"}},
             arg=f"{p},{dataset}")]


def get_config(arg: str = ""):
  opts = parse_arg(arg, "densenet_bc_100_12.py", preset=PRESETS,
                   dataset=("cifar10", "cifar100"))
  config = default_config()
  config.model.name = f"densenet_bc_{opts['preset']}"
  config.data.name = opts["dataset"]
  config.data.validation_size = 0          # train on all 50k, report test error
  config.batch_size = 64
  config.eval_batch_size = 512             # divisible by 1-8 devices
  config.num_epochs = 300.0
  config.optimizer.lr = 0.1
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 1e-4
  config.optimizer.decay_all = True
  config.schedule.boundaries = (150.0, 225.0)   # 50% and 75% of 300 epochs
  config.schedule.factor = 0.1
  config.log_every_steps = 100
  config.eval_every_epochs = 5.0
  config.checkpoint_every_steps = 2000
  return config
