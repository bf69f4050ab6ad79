"""Semantic segmentation: a U-Net trained with per-pixel cross-entropy.

    python launch.py --config=experiments/unet_craters.py --workdir=runs/craters

The model (`config.model.name` 'unet' / 'unet_small', flaxcnn/models/unet.py)
maps (N, H, W, C) images to (N, H, W, num_classes) logits; its expansive path
upsamples with 2x2 stride-2 transposed convolutions (see
tests/test_transposed_conv.py). The loss is the cross-entropy of every pixel,
averaged over the pixels of the batch. Evaluation reports pixel accuracy and
the mean intersection-over-union, IoU_c = TP_c / (TP_c + FP_c + FN_c) averaged
over the classes that occur (in the labels or the predictions) of the split,
from a confusion matrix summed over the whole split.

This module is the task alone (data, augmentation, evaluation sums and metrics);
everything else is the one training loop of flaxcnn/train/, chosen by the model
(or config.task='segmentation'): resume, checkpoints, signals, the non-finite guard, EMA, mixup (of images
and per-pixel one-hot targets), label smoothing, bfloat16, multi-host, sweeps.
Each step gathers its batch from the epoch's permutation of the training split
(on the devices, uint8) and augments it inside the jitted step: random
pad-and-crop with reflection (`config.augment.crop_padding`) and horizontal flips
(`config.augment.flip`), applied to the image and its mask alike.

Data (`config.data`):
- source 'synthetic', name 'craters': flaxcnn.data.shapes, generated
  (train + validation: data.synthetic_size + data.validation_size images of
  seed 0; test: data.validation_size images of seed 1), data.image_size pixels
  (default 32), 2 classes (background, crater): data.num_classes must say 2.
- source 'tfds', name 'oxford_iiit_pet': the Oxford-IIIT Pet trimaps
  (segmentation_mask 1 pet, 2 background, 3 border -> classes 0, 1, 2), images
  resized to data.image_size (default 128; bilinear, masks nearest), a
  validation split held out from train. It must be prepared in data.data_dir:
  flaxcnn never downloads, and fails within seconds when it is not.

Metrics lines: train (step, split='train', epoch, loss, accuracy = pixel
accuracy, lr, img_per_sec), and per evaluation (split 'validation' / 'test':
loss, accuracy, mean_iou, iou/<class>, count = images).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from flaxcnn import augment, config as config_lib, models
from flaxcnn.data import segmentation as seg_data, shapes
from flaxcnn.models import unet
from flaxcnn.tasks.base import Task, register


# Class colours of the evaluation panels (background black, then distinct hues).
PALETTE = np.array([(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
                    (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230),
                    (210, 245, 60)], np.uint8)


def is_segmentation(config) -> bool:
  """True when config.model.name is a segmentation model (per-pixel logits)."""
  try:
    return models.get_preset(config.model.name).constructor is unet.UNet
  except (KeyError, ValueError):   # an unknown preset: validate() names it
    return False


# ----------------------------------------------------------------------------- data

def load_dataset(config):
  """The segmentation `Dataset` of config.data: splits of images (N, H, W, C)
  uint8 and masks (N, H, W) uint8 class indices (as the Split's labels)."""
  d = config.data
  if d.source == "synthetic":
    if d.name != "craters":
      raise ValueError(f"config.data.name={d.name!r}: the generated segmentation data "
                       "is 'craters' (config.data.source='synthetic')")
    return shapes.craters_dataset(train_size=d.synthetic_size,
                                  validation_size=d.validation_size,
                                  test_size=d.validation_size,
                                  image_size=d.image_size or 32)
  if d.source == "tfds":
    return seg_data.tfds_segmentation(d.name, d.data_dir, d.image_size or 128,
                                      d.validation_size, d.train_split,
                                      d.validation_split, d.test_split)
  raise ValueError(f"config.data.source={d.source!r}: segmentation reads 'synthetic' "
                   "(name 'craters') or 'tfds' (name 'oxford_iiit_pet')")


# ----------------------------------------------------------------------------- task

def pixel_cross_entropy(logits, masks):
  """Cross-entropy of every pixel: logits (N, H, W, K), masks (N, H, W) -> (N, H, W)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                         masks.astype(jnp.int32))


def augment_pair(rng, images, masks, padding: int, flip: bool):
  """Random pad-and-crop (reflection padding) and horizontal flip, the same for
  an image (N, H, W, C) and its mask (N, H, W)."""
  k_crop, k_flip = jax.random.split(rng)
  n, h, w, c = images.shape
  both = jnp.concatenate([images, masks[..., None].astype(images.dtype)], axis=-1)
  if padding > 0:
    padded = jnp.pad(both, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
                     mode="reflect")
    offsets = jax.random.randint(k_crop, (n, 2), 0, 2 * padding + 1)
    both = jax.vmap(lambda img, off: jax.lax.dynamic_slice(
        img, (off[0], off[1], 0), (h, w, c + 1)))(padded, offsets)
  if flip:
    both = augment.random_flip(k_flip, both)
  return both[..., :c], both[..., c]


def eval_sums(logits, masks, valid, num_classes: int):
  w = valid.astype(jnp.float32)[:, None, None]
  loss = pixel_cross_entropy(logits, masks)
  pred = jnp.argmax(logits, -1)
  labels = masks.astype(jnp.int32)
  onehot_label = jax.nn.one_hot(labels, num_classes) * w[..., None]
  onehot_pred = jax.nn.one_hot(pred, num_classes)
  return {"loss": jnp.sum(loss * w), "correct": jnp.sum((pred == labels) * w),
          "pixels": jnp.sum(jnp.broadcast_to(w, loss.shape)), "count": jnp.sum(w),
          "confusion": jnp.einsum("nhwp,nhwq->pq", onehot_label, onehot_pred)}


def iou_from_confusion(confusion: np.ndarray):
  """Per-class IoU (NaN for a class absent from labels and predictions) and their
  mean over the present classes."""
  confusion = np.asarray(confusion, np.float64)
  tp = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - tp
  iou = np.where(union > 0, tp / np.maximum(union, 1e-12), np.nan)
  return iou, float(np.nanmean(iou)) if np.any(union > 0) else 0.0


def validate(config, num_devices: int = 1) -> None:
  """The spine's checks plus the segmentation ones (one-line ValueErrors)."""
  if not is_segmentation(config):
    raise ValueError(f"config.model.name={config.model.name!r} is not a segmentation "
                     "model; use 'unet' or 'unet_small'")
  config_lib.validate(config, num_devices)
  if config.augment.cutout or config.augment.randaugment_layers:
    raise ValueError("config.augment: Cutout and RandAugment change the image but not its "
                     "mask; set augment.cutout and augment.randaugment_layers to 0 for "
                     "segmentation")
  if config.eval_mode != "center":
    raise ValueError(f"config.eval_mode={config.eval_mode!r}: segmentation evaluates the "
                     "whole image; use 'center'")
  if not config.data.in_memory:
    raise ValueError("config.data.in_memory=False: segmentation data are read into memory; "
                     "set it to True")
  classes = len(shapes.CLASS_NAMES)
  if config.data.source == "synthetic" and config.data.num_classes != classes:
    raise ValueError(f"config.data.num_classes={config.data.num_classes}: the generated "
                     f"craters have {classes} classes ({', '.join(shapes.CLASS_NAMES)}); "
                     f"set it to {classes}")


@register
class Segmentation(Task):
  """Per-pixel classification: loss and accuracy over pixels, mean IoU per split."""
  name = "segmentation"
  metric = "mean_iou"
  accuracy_label = "pixel acc"

  @classmethod
  def handles(cls, config) -> bool:
    return is_segmentation(config)

  def validate(self, config, num_devices: int) -> None:
    validate(config, num_devices)

  def load_data(self, config):
    return load_dataset(config)

  def check(self, config, model, dataset) -> None:
    h, w = dataset.image_shape[:2]
    factor = 2 ** getattr(model, "depth", 0)
    if h % factor or w % factor:
      raise ValueError(f"config.data.image_size: images of {h}x{w} do not fit "
                       f"{config.model.name} (sides must be divisible by {factor})")

  def augment(self, run, rng, images, labels):
    cfg = run.config
    x, y = augment_pair(rng, images, labels, cfg.augment.crop_padding, cfg.augment.flip)
    return augment.normalize(x, run.mean, run.std, run.compute_dtype), y

  def eval_scores(self, run, variables, images, eval_size: int):
    x = augment.normalize(images, run.mean, run.std, run.compute_dtype)
    return run.model.apply(variables, x, train=False)

  def eval_sums(self, scores, labels, mask):
    return eval_sums(scores, labels, mask, scores.shape[-1])

  def eval_panels(self, run, variables, images, labels):
    """Per image: the image, its true mask and the predicted mask, side by side
    (classes in PALETTE's colours)."""
    pred = jnp.argmax(self.eval_scores(run, variables, images, images.shape[1]), -1)
    rgb = images if images.shape[-1] == 3 else jnp.repeat(images, 3, -1)
    palette = jnp.asarray(PALETTE[np.arange(int(run.num_classes)) % len(PALETTE)])
    return jnp.concatenate([rgb, palette[labels], palette[pred]], axis=2)

  def reduce(self, totals, dataset) -> dict:
    iou, miou = iou_from_confusion(totals["confusion"])
    names = list(dataset.class_names or []) or [str(i) for i in range(len(iou))]
    result = {"loss": float(totals["loss"]) / float(totals["pixels"]),
              "accuracy": float(totals["correct"]) / float(totals["pixels"]),
              "mean_iou": miou, "count": float(totals["count"])}
    result.update({f"iou/{n}": float(v) for n, v in zip(names, iou) if np.isfinite(v)})
    return result

  def eval_line(self, res) -> str:
    return (f"loss {res['loss']:.4f}  pixel acc {res['accuracy']:.4f}  "
            f"mIoU {res['mean_iou']:.4f}  ({int(res['count'])} images)")

  def final_line(self, res) -> str:
    return f"mIoU {res['mean_iou']:.4f} pixel acc {res['accuracy']:.4f}"
