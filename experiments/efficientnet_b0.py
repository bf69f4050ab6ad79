"""EfficientNet-B0 (to B7) on ImageNet (Tan & Le 2019, "EfficientNet: Rethinking
Model Scaling for Convolutional Neural Networks", Section 5.2 "ImageNet Results";
model and scaling in Table 1 / Section 4, results in Table 2).

The paper's recipe (Sec. 5.2), completed from the TF reference implementation
(tensorflow/tpu models/official/efficientnet, which the paper's numbers come from):
- RMSProp in TensorFlow's form (optimizer 'rmsprop_tf'): decay 0.9, momentum 0.9,
  epsilon 1e-3; BatchNorm momentum 0.99 (the model's default);
- weight decay 1e-5 (coupled L2; decay_all False: the reference leaves out the
  'batch_normalization' variables; it does decay the few biases, which ours skip);
- learning rate 0.256 for a batch of 4096 (the reference: 0.016 per 256 images),
  decayed by 0.97 every 2.4 epochs counted from step 0 (schedule.decay_begin =
  'start': the reference's exponential_decay of the global step), the first 5
  epochs replaced by a linear warmup (reference); 350 epochs (reference);
- swish activations, dropout before the classifier 0.2 for B0 (per preset: 0.2,
  0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5 for B0-B7), stochastic depth with survival
  probability 0.8 (linear over the blocks, as the reference's drop connect);
- label smoothing 0.1 and an exponential moving average of the weights with decay
  0.9999 and TensorFlow's warm-up min(0.9999, (1 + n) / (10 + n)) at update n (the
  reference's ExponentialMovingAverage(num_updates=global_step)), evaluated (both
  from the reference);
- image size per preset (224, 240, 260, 300, 380, 456, 528, 600 for B0-B7).

The batch is the paper's 4096; with `batch=N` the learning rate is scaled
linearly, 0.016 * N / 256 (the reference's rule):

  python launch.py --config=experiments/efficientnet_b0.py --workdir=runs/b0
  python launch.py --config=experiments/efficientnet_b0.py:b3,batch=1024 --workdir=runs/b3

Augmentation as the paper: AutoAugment's ImageNet policy ('v0', flaxcnn/autoaugment.py,
with the reference's level rules). `:randaugment` trains with the reference's other
option instead, its RandAugment (2 layers at level 10 of its 16 ops:
config.augment.randaugment_ops="tf"):

  python launch.py --config=experiments/efficientnet_b0.py:randaugment --workdir=runs/b0_ra

Crops as the reference: Inception-style random-resized crops
(`sample_distorted_bounding_box`, area 8%-100%, aspect 3/4-4/3, fused
`decode_and_crop_jpeg`, bicubic resize; `config.augment.train_crop="inception"`).
"""

from flaxcnn import papers
from flaxcnn.config import default_config, parse_arg
from flaxcnn.models import get_preset

VARIANTS = tuple(f"b{i}" for i in range(8))
PAPER_BATCH = 4096
LR_PER_256 = 0.016          # 0.256 at batch 4096
PAPER = [row for i, v in enumerate(VARIANTS) for row in papers.rows(
    papers.EFFICIENTNET_T2, {f"EfficientNet-B{i}": {"model.name": f"efficientnet_{v}"}}, arg=v)]


def get_config(arg: str = ""):
  opts = parse_arg(arg, "efficientnet_b0.py", variant=VARIANTS, batch=PAPER_BATCH,
                   policy=("autoaugment", "randaugment"))
  name, batch = f"efficientnet_{opts['variant']}", opts["batch"]
  size = get_preset(name).image_size

  config = default_config()
  config.model.name = name                 # dropout, width/depth multipliers per preset
  config.model.kwargs.stochastic_depth = 0.8
  config.model.kwargs.stochastic_depth_decay = "linear"
  config.data.name = "imagenet2012"
  config.data.in_memory = False
  config.data.image_size = size
  config.data.validation_split = "validation"
  config.augment.train_crop = "inception"   # the reference's random-resized crop
  config.augment.crop_padding = 0
  if opts["policy"] == "autoaugment":      # the paper's (Tan & Le 2019, Sec. 5.2)
    config.augment.autoaugment = "v0"
  else:
    config.augment.randaugment_layers = 2
    config.augment.randaugment_ops = "tf"      # the reference's op set and levels
    config.augment.randaugment_magnitude = 10.0

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
