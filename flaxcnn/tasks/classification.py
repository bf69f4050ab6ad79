"""Image classification: one label per image, softmax cross-entropy, top-1/top-5.

The default task of every model whose output is one vector of class scores.
Training batches are augmented on the device (in memory: pad-and-crop, flip,
Cutout, RandAugment; streamed: RandAugment and Cutout after tf.data's crop and
flip); evaluation averages the softmax of its views (center, ten-crop or
multi-scale, config.eval_mode) and reports loss, top-1 and top-5 accuracy.
"""
import jax
import jax.numpy as jnp
import optax

from flaxcnn import augment, config as config_lib, data as data_lib
from flaxcnn.tasks.base import Task, register


@register
class Classification(Task):
  """Loss and accuracy per image; evaluation with center / ten-crop / multi-scale views."""
  name = "classification"
  metric = "accuracy"           # the headline metric of an evaluation (higher is better)
  accuracy_label = "acc"        # how the console names the training accuracy

  def validate(self, config, num_devices: int) -> None:
    config_lib.validate(config, num_devices)

  def load_data(self, config):
    return data_lib.load(config)

  def check(self, config, model, dataset) -> None:
    """Config-against-data checks that need the dataset (before compiling): multi-scale
    sides far above the images' own size (the ImageNet defaults 224-640 on 32x32
    images) would only exhaust the memory."""
    if config.eval_mode == "multiscale":
      size = config.data.image_size or dataset.image_shape[0]
      scales = tuple(config.eval_scales)
      if max(scales) > 4 * size:
        raise ValueError(
            f"config.eval_scales={scales} (shorter sides for multi-scale testing) are far "
            f"above these {size}x{size} images; He et al. 2015 test at 1-2.9x the training "
            f"size, so use e.g. --config.eval_scales='({size}, {round(1.5 * size)}, "
            f"{2 * size})'")

  # ---------------------------------------------------------------- training

  def train_size(self, config, dataset):
    size = config.data.image_size
    in_memory = hasattr(dataset.splits["train"], "images")
    return size if in_memory and size not in (None, dataset.image_shape[0]) else None

  def augment(self, run, rng, images, labels):
    x = augment.train_augment(rng, images, run.config, run.mean, run.std,
                              run.compute_dtype, run.train_size)
    return x, labels

  def augment_batch(self, run, rng, images, labels):
    """RandAugment or AutoAugment, normalization and Cutout of a streamed batch, on
    the device."""
    cfg = run.config
    k_ra, k_cut = jax.random.split(rng)
    images = augment.policy(k_ra, images, cfg)
    x = augment.normalize(images, run.mean, run.std)
    return augment.cutout(k_cut, x, cfg.augment.cutout).astype(run.compute_dtype), labels

  # ---------------------------------------------------------------- evaluation

  def eval_scores(self, run, variables, images, eval_size: int):
    """Log-probabilities of an evaluation batch; several views (10-crop,
    multi-scale) average their softmax scores."""
    cfg = run.config
    if isinstance(images, tuple):   # streaming multi-scale: whole images, one per scale
      views = augment.full_image_views(images)
    else:
      pad = cfg.augment.crop_padding if images.shape[1] <= eval_size else 0
      views = augment.eval_views(images, cfg.eval_mode, eval_size, pad, cfg.eval_scales)
    probs = [jax.nn.softmax(run.model.apply(
        variables, augment.normalize(v, run.mean, run.std, run.compute_dtype),
        train=False).astype(jnp.float32)) for v in views]
    return jnp.log(jnp.maximum(sum(probs) / len(probs), 1e-30))

  def eval_sums(self, scores, labels, mask):
    """Per-batch sums: each example counted once where mask is 1."""
    scores = scores.astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(scores, labels.astype(jnp.int32))
    k = min(5, scores.shape[-1])
    topk = jax.lax.top_k(scores, k)[1]
    top1 = topk[:, 0] == labels
    top5 = jnp.any(topk == labels[:, None], axis=-1)
    return {"loss": jnp.sum(loss * mask), "accuracy": jnp.sum(top1 * mask),
            "top5": jnp.sum(top5 * mask), "count": jnp.sum(mask)}

  def reduce(self, totals, dataset) -> dict:
    """The metrics of a split from the summed (host) totals of its batches."""
    count = float(totals["count"])
    return {"loss": float(totals["loss"]) / count,
            "accuracy": float(totals["accuracy"]) / count,
            "top5": float(totals["top5"]) / count, "count": count}

  def eval_line(self, res) -> str:
    return (f"loss {res['loss']:.4f}  top-1 {res['accuracy']:.4f}  top-5 {res['top5']:.4f}  "
            f"({int(res['count'])} examples)")

  def final_line(self, res) -> str:
    return f"top-1 {res['accuracy']:.4f}"
