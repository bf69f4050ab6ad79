"""WRN-28-10 on CIFAR-10/100 (Zagoruyko & Komodakis 2016, Table 4 / Section 3).

The paper's recipe: 200 epochs, batch 128, SGD with Nesterov momentum 0.9,
lr 0.1 multiplied by 0.2 at epochs 60, 120 and 160, weight decay 5e-4 on every
parameter, BatchNorm included (decay_all: the authors' Torch code passes all
parameters to optim.sgd's weightDecay), pad-4 random crop + horizontal flip,
mean/std normalization. Dropout 0.3 between the convolutions of each block is the
paper's "WRN-28-10-dropout" (Table 6):

  python launch.py --config=experiments/wrn_28_10.py --workdir=runs/wrn28_10
  python launch.py --config=experiments/wrn_28_10.py:dropout --workdir=runs/wrn28_10_d
  python launch.py --config=experiments/wrn_28_10.py:cifar100 --workdir=runs/wrn_c100

Reads CIFAR-10 from TFDS (prepared in --config.data.data_dir); to use an image
folder instead: --config.data.source=folder --config.data.root=PATH.
"""
from flaxcnn import papers
from flaxcnn.config import default_config, parse_arg

_PLAIN = {"model.name": "wrn28_10", "model.kwargs.dropout": 0.0}
_DROPOUT = {"model.name": "wrn28_10", "model.kwargs.dropout": 0.3}
PAPER = (papers.rows(papers.WRN_T4_C10, {"WRN-28-10": _PLAIN})
         + papers.rows(papers.WRN_T6_C10, {"WRN-28-10 dropout": _DROPOUT}, arg="dropout")
         + papers.rows(papers.WRN_T4_C100, {"WRN-28-10": _PLAIN}, arg="cifar100")
         + papers.rows(papers.WRN_T6_C100, {"WRN-28-10 dropout": _DROPOUT},
                       arg="cifar100,dropout"))


def get_config(arg: str = ""):
  opts = parse_arg(arg, "wrn_28_10.py", dataset=("cifar10", "cifar100"), dropout=False)
  config = default_config()
  config.model.name = "wrn28_10"
  config.model.kwargs.dropout = 0.3 if opts["dropout"] else 0.0
  config.data.name = opts["dataset"]
  config.num_epochs = 200.0
  config.optimizer.lr = 0.1
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.optimizer.decay_all = True
  config.schedule.boundaries = (60.0, 120.0, 160.0)
  config.schedule.factor = 0.2
  config.log_every_steps = 100
  config.eval_every_epochs = 5.0
  config.checkpoint_every_steps = 1000
  return config
