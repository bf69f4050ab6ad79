"""U-Net on the Oxford-IIIT Pet trimaps (Parkhi et al. 2012): 3 classes per pixel.

TFDS 'oxford_iiit_pet' (3,680 train / 3,669 test images; segmentation_mask
1 = pet, 2 = background, 3 = border -> classes 0, 1, 2), resized to 128x128
(images bilinear, masks nearest neighbour), 368 training images held out for
validation. The dataset must be prepared beforehand (flaxcnn never downloads):

  python -c "import tensorflow_datasets as tfds; tfds.builder('oxford_iiit_pet', data_dir='DIR').download_and_prepare()"
  python launch.py --config=experiments/unet_oxford_pets.py --workdir=runs/pets \
      --config.data.data_dir=DIR
"""
from flaxcnn.config import default_config


def get_config():
  config = default_config()
  config.model.name = "unet"             # 4 poolings, 64-1024 channels (Ronneberger et al. 2015)
  config.data.source = "tfds"
  config.data.name = "oxford_iiit_pet"
  config.data.image_size = 128
  config.data.validation_size = 368
  config.data.test_split = "test"
  config.augment.crop_padding = 8        # pad (reflect) and crop image and mask alike
  config.augment.flip = True
  config.batch_size = 32
  config.eval_batch_size = 64
  config.num_epochs = 50.0
  config.optimizer.name = "adam"
  config.optimizer.lr = 1e-3
  config.optimizer.weight_decay = 0.0
  config.schedule.name = "cosine"
  config.schedule.warmup_epochs = 1.0
  config.log_every_steps = 50
  config.eval_every_epochs = 5.0
  config.checkpoint_every_steps = 1000
  return config
