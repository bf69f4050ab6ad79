"""U-Net segmentation of generated craters (flaxcnn.data.shapes): offline, CPU-sized.

Discs ("craters": dark bowls with a lit rim) on noisy, unevenly lit terrain;
the U-Net labels every pixel crater or background. unet_small (3 poolings,
16-128 channels) on 32x32 images.

  python launch.py --config=experiments/unet_craters.py --workdir=runs/craters

The task (flaxcnn/tasks/segmentation.py) follows from the model; `config.task`
names it explicitly.

Metrics: pixel accuracy and mean IoU (background, crater) on the validation
split and on a test set generated from another seed. Result (2 CPU cores,
512 steps, 2m20s): test mIoU 0.945, pixel accuracy 0.981 (all-background:
mIoU about 0.4).
"""
from flaxcnn.config import default_config


def get_config():
  config = default_config()
  config.model.name = "unet_small"       # Ronneberger et al. 2015, 2x2/2 up-convolutions
  config.data.source = "synthetic"       # generated: flaxcnn.data.shapes.craters
  config.data.name = "craters"
  config.data.image_size = 32            # sides divisible by 2^depth = 8
  config.data.num_classes = 2            # background, crater
  config.data.synthetic_size = 2048      # training images (seed 0)
  config.data.validation_size = 256      # validation (seed 0) and test (seed 1) images
  config.augment.crop_padding = 2        # pad (reflect) and crop image and mask alike
  config.augment.flip = True
  config.batch_size = 32
  config.eval_batch_size = 128
  config.num_epochs = 8.0
  config.optimizer.name = "adam"
  config.optimizer.lr = 3e-3
  config.optimizer.weight_decay = 0.0
  config.schedule.name = "cosine"
  config.schedule.warmup_epochs = 0.25
  config.log_every_steps = 64
  config.eval_every_epochs = 2.0
  config.checkpoint_every_steps = 500
  return config
