"""EfficientNetV2-S with progressive learning on ImageNet (Tan & Le 2021,
"EfficientNetV2: Smaller Models and Faster Training", Section 4 "Progressive
Learning", Algorithm 1; settings in Section 5.1 and Table 6).

Progressive learning (Table 6, EfficientNetV2-S, min -> max over training):
  image size 128 -> 300, RandAugment magnitude 5 -> 15, mixup alpha 0 -> 0,
  dropout 0.1 -> 0.3, in 4 stages (about 87 of the 350 epochs each); the image
  size and the regularization grow linearly from stage to stage.
  (M: 128 -> 380, RA 5 -> 20, mixup 0 -> 0.2, dropout 0.1 -> 0.4;
   L: 128 -> 380, RA 5 -> 25, mixup 0 -> 0.4, dropout 0.1 -> 0.5; arg `m` / `l`.)
Training (Sec. 5.1): RMSProp decay 0.9, momentum 0.9, epsilon 1e-3 (TF form), weight
decay 1e-5, batch 4096, learning rate warmed up from 0 to 0.256 then decayed by 0.97
every 2.4 epochs, 350 epochs, EMA of the weights with decay 0.9999, RandAugment,
mixup, dropout, stochastic depth with survival probability 0.8. From the official
code (google/automl efficientnetv2 hparams.py): 5 warmup epochs, label smoothing
0.1, RandAugment with 2 layers; the evaluation size is 384 (S) / 480 (M, L).

RandAugment as the official code: its 16 ops and levels on TF's scale
(config.augment.randaugment_ops="tf", flaxcnn/autoaugment.py), where level 10 is
full strength and the paper's 15-25 extrapolate (Rotate 45 degrees at 15, 75 at 25).
Learning rate decay counted from step 0 as the reference (schedule.decay_begin='start'); weight
decay not on BatchNorm (decay_all False), as the reference's l2 loss.

Note: the official code's schedule differs from Table 6 (S: RandAugment 5 -> 10,
dropout fixed at 0.2, image size ibase + (300 - ibase) * (stage + 1) / 4); these
configs follow the paper's table.

  python launch.py --config=experiments/efficientnetv2_s.py --workdir=runs/v2s
  python launch.py --config=experiments/efficientnetv2_s.py:m,batch=1024 --workdir=runs/v2m

With `batch=N` the learning rate is 0.016 * N / 256 (0.256 at the paper's 4096).
Crops: the reference's Inception-style random-resized crops at each stage's size
(`config.augment.train_crop="inception"`, see efficientnet_b0.py).
"""

from flaxcnn import papers
from flaxcnn.config import default_config, parse_arg

# Table 6 of the paper: (min, max) per model; RandAugment in TF levels (0-10 scale).
PROGRESSIVE = {
    "s": dict(image_size=(128, 300), randaugment_magnitude=(5.0, 15.0),
              mixup_alpha=(0.0, 0.0), dropout=(0.1, 0.3)),
    "m": dict(image_size=(128, 380), randaugment_magnitude=(5.0, 20.0),
              mixup_alpha=(0.0, 0.2), dropout=(0.1, 0.4)),
    "l": dict(image_size=(128, 380), randaugment_magnitude=(5.0, 25.0),
              mixup_alpha=(0.0, 0.4), dropout=(0.1, 0.5)),
}
EVAL_SIZE = {"s": 384, "m": 480, "l": 480}
PAPER_BATCH = 4096
LR_PER_256 = 0.016
PAPER = [row for v in PROGRESSIVE for row in papers.rows(papers.EFFICIENTNETV2_T7, {
    f"EfficientNetV2-{v.upper()}": {"model.name": f"efficientnetv2_{v}"}}, arg=v)]


def get_config(arg: str = ""):
  opts = parse_arg(arg, "efficientnetv2_s.py", size=tuple(PROGRESSIVE), batch=PAPER_BATCH)
  size, batch = opts["size"], opts["batch"]
  prog = PROGRESSIVE[size]
  magnitudes = prog["randaugment_magnitude"]   # TF levels (randaugment_ops="tf")

  config = default_config()
  config.model.name = f"efficientnetv2_{size}"
  config.model.kwargs.dropout = prog["dropout"][1]   # the final stage's; grown by progressive
  config.model.kwargs.stochastic_depth = 0.8
  config.data.name = "imagenet2012"
  config.data.in_memory = False
  config.data.image_size = EVAL_SIZE[size]           # evaluation size
  config.data.validation_split = "validation"
  config.augment.train_crop = "inception"   # the reference's random-resized crop
  config.augment.crop_padding = 0
  config.augment.randaugment_layers = 2
  config.augment.randaugment_ops = "tf"     # the official code's RandAugment
  config.augment.randaugment_magnitude = magnitudes[1]
  config.augment.mixup_alpha = prog["mixup_alpha"][1]

  config.progressive.stages = 4
  config.progressive.image_size = prog["image_size"]
  config.progressive.dropout = prog["dropout"]
  config.progressive.randaugment_magnitude = magnitudes
  config.progressive.mixup_alpha = prog["mixup_alpha"]

  config.batch_size = batch
  config.eval_batch_size = 512             # divisible by 1-8 devices
  config.num_epochs = 350.0
  config.label_smoothing = 0.1
  config.ema_decay = 0.9999
  config.ema_warmup = True                 # the reference's num_updates=global_step
  config.optimizer.name = "rmsprop_tf"
  config.optimizer.lr = LR_PER_256 * batch / 256
  config.optimizer.rms_decay = 0.9
  config.optimizer.momentum = 0.9
  config.optimizer.eps = 1e-3
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 1e-5
  config.schedule.name = "exponential"
  config.schedule.decay_rate = 0.97
  config.schedule.decay_epochs = 2.4
  config.schedule.decay_begin = "start"
  config.schedule.warmup_epochs = 5.0
  config.schedule.warmup = "linear_from_zero"   # the reference's lr x step / warmup_steps

  config.eval_every_epochs = 5.0
  config.log_every_steps = 100
  config.checkpoint_every_steps = 2000
  return config
