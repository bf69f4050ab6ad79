"""Ablation: DropBlock keep probability, its schedule, block size and the groups it
is applied to (Ghiasi, Lin, Le 2018, "DropBlock: A regularization method for
convolutional networks", Section 4.1 "ImageNet classification": Figure 3 (fixed vs
linearly scheduled keep_prob), Figure 4 and Table 2 (block size; group 4 vs groups 3
and 4), ResNet-50 on ImageNet, top-1 validation accuracy).

Variants:
  baseline             no DropBlock (keep_prob 1);
  schedule x keep_prob config.dropblock_schedule in {fixed, linear} x
                       model.kwargs.dropblock_keep_prob in {0.95, 0.9, 0.85, 0.8, 0.75}
                       (block_size 7, groups 3 and 4);
  block size x groups  model.kwargs.dropblock_size in {1, 3, 5, 7, 9} x
                       model.kwargs.dropblock_stages in {(4,), (3, 4)} (keep_prob 0.9
                       scheduled); the (7, (3, 4)) cell is the schedule grid's
                       (linear, 0.9) run and is not repeated.
The paper: DropBlock beats dropout/SpatialDropout at every keep_prob, the linear
schedule (keep_prob from 1 down to the target) is better and more robust than a
fixed keep_prob, block_size 7 is best, and groups 3+4 beat group 4 alone; its final
model is keep_prob 0.9, block_size 7, groups 3 and 4, scheduled (78.13% top-1).
DropBlock follows every convolution unit of the residual branch and the shortcut,
projection or identity alike, as the TF reference applies it (the paper's best
placement, its Table 2 / Figure 4 "skip connection"). One block mask is shared by all
channels of a feature map (the lecture: the authors found it better); the TF reference
draws one per channel, which `model.kwargs.dropblock_per_channel=True` follows.

Recipe (Sec. 4.1: the TF reference ResNet-50 with its defaults, 270 epochs): batch
1024, SGD momentum 0.9, learning rate 0.1 x 1024/256 = 0.4 with a 5-epoch linear
warmup (reference), divided by 10 at epochs 125, 200 and 250, weight decay 1e-4 on the
weights but not on BatchNorm (the reference's L2 loss skips 'batch_normalization'
variables; it also decays the classifier's bias, which we leave out: 1,000 of 25.6M
parameters), the last BN scale of every residual branch starting at zero (the
reference's init_zero), 224x224 Inception-style random-resized crops and the
bottleneck's stride on its 3x3 convolution (both as the reference), single centre crop
evaluation.
`seeds=3` repeats every variant as the paper's averages of three runs.

  python launch.py --config=experiments/ablations/dropblock.py --workdir=runs/dropblock --sweep
  python launch.py --config=experiments/ablations/dropblock.py --workdir=runs/dropblock --list_variants
  python launch.py --config=experiments/ablations/dropblock.py --workdir=runs/dropblock --sweep_index=0
"""
import os

from flaxcnn import papers, sweep
from flaxcnn.config import parse_arg

_EXP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SCHEDULES = ("fixed", "linear")
KEEP_PROBS = (0.95, 0.9, 0.85, 0.8, 0.75)
BLOCK_SIZES = (1, 3, 5, 7, 9)
STAGES = ((4,), (3, 4))
_DB = "model.kwargs.dropblock_"
PAPER = papers.rows(papers.DROPBLOCK_T1, {
    "ResNet-50": {"model.name": "resnet50", _DB + "keep_prob": 1.0},
    "ResNet-50 + DropBlock (keep_prob 0.9)": {
        "model.name": "resnet50", "dropblock_schedule": "linear", _DB + "keep_prob": 0.9,
        _DB + "size": 7, _DB + "stages": (3, 4)}})
PAPER_UNREPORTED = ("the other keep_prob, schedule, block size and group settings are "
                    "plotted in Figures 3-4 (no numbers carried here)")


def _seeds(arg):
  return parse_arg(arg, "dropblock.py", seeds=1)["seeds"]


def get_config(arg: str = ""):
  _seeds(arg)
  config = sweep.load_module(os.path.join(_EXP, "resnet50_imagenet.py")).get_config("50")
  config.model.kwargs.dropblock_keep_prob = 0.9
  config.model.kwargs.dropblock_size = 7
  config.model.kwargs.dropblock_stages = (3, 4)
  config.dropblock_schedule = "linear"
  # The TF reference ResNet-50 strides the 3x3 convolution ("v1.5") and crops
  # Inception-style (random-resized crop, area 8%-100%).
  config.model.kwargs.stride_in_1x1 = False
  config.augment.train_crop = "inception"
  config.eval_mode = "center"
  config.batch_size = 1024
  config.num_epochs = 270.0
  config.optimizer.lr = 0.1 * 1024 / 256
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 1e-4
  config.optimizer.decay_all = False          # the reference's L2 skips BatchNorm
  config.model.kwargs.zero_init_residual = True   # its last BN of a block: init_zero
  config.schedule.name = "piecewise"
  config.schedule.boundaries = (125.0, 200.0, 250.0)
  config.schedule.factor = 0.1
  config.schedule.warmup_epochs = 5.0
  config.schedule.warmup = "linear_from_zero"   # the reference's lr x step / warmup_steps
  return config


def _unique(base, overrides_list):
  """Drops overrides whose config equals an earlier one's (one run per setting)."""
  seen, out = set(), []
  for ov in overrides_list:
    key = sweep.apply_overrides(base, ov).to_json(sort_keys=True)
    if key not in seen:
      seen.add(key)
      out.append(ov)
  return out


def get_sweep(arg: str = ""):
  baseline = sweep.axis("model.kwargs.dropblock_keep_prob", [1.0])
  schedule = sweep.product(sweep.axis("dropblock_schedule", list(SCHEDULES)),
                           sweep.axis("model.kwargs.dropblock_keep_prob", list(KEEP_PROBS)))
  blocks = sweep.product(sweep.axis("model.kwargs.dropblock_stages", list(STAGES)),
                         sweep.axis("model.kwargs.dropblock_size", list(BLOCK_SIZES)))
  variants = _unique(get_config(arg), sweep.chain(baseline, schedule, blocks))
  return sweep.product(variants, sweep.seeds(_seeds(arg)))
