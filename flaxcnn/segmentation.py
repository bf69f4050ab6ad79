"""Semantic segmentation: a U-Net trained with per-pixel cross-entropy.

    python launch.py --config=experiments/unet_craters.py --workdir=runs/craters   (after the
    launch.py dispatch below) or, directly:
    python -m flaxcnn.segmentation --config=experiments/unet_craters.py --workdir=runs/craters

The model (`config.model.name` 'unet' / 'unet_small', flaxcnn/models/unet.py)
maps (N, H, W, C) images to (N, H, W, num_classes) logits; its expansive path
upsamples with 2x2 stride-2 transposed convolutions (see
tests/test_transposed_conv.py). The loss is the cross-entropy of every pixel,
averaged over the pixels of the batch. Evaluation reports pixel accuracy and
the mean intersection-over-union, IoU_c = TP_c / (TP_c + FP_c + FN_c) averaged
over the classes that occur (in the labels or the predictions) of the split,
from a confusion matrix summed over the whole split.

Everything else is the classification spine's: the config schema
(flaxcnn.config.default_config: optimizer, schedule, batch sizes, steps,
checkpoint/log intervals), `optim.make_optimizer` / `make_schedule`, the
Orbax `Checkpointer` (resume from the latest checkpoint in the workdir), the
`MetricWriter` (workdir/metrics.jsonl, TensorBoard), a 1-D data-parallel mesh
with the state replicated and the batches sharded, the whole training split on
the devices (uint8), each step gathering its batch from the epoch's permutation
and augmenting it inside the jitted step (random pad-and-crop with reflection,
`config.augment.crop_padding`, and horizontal flips, `config.augment.flip`,
applied to the image and its mask alike).

Data (`config.data`):
- source 'synthetic', name 'craters': flaxcnn.data.shapes, generated
  (train + validation: data.synthetic_size + data.validation_size images of
  seed 0; test: data.validation_size images of seed 1), data.image_size pixels
  (default 32), 2 classes (background, crater).
- source 'tfds', name 'oxford_iiit_pet': the Oxford-IIIT Pet trimaps
  (segmentation_mask 1 pet, 2 background, 3 border -> classes 0, 1, 2), images
  resized to data.image_size (default 128; bilinear, masks nearest), a
  validation split held out from train. It must be prepared in data.data_dir:
  flaxcnn never downloads, and fails within seconds when it is not.

Metrics lines: train (step, split='train', epoch, loss, accuracy = pixel
accuracy, lr, img_per_sec), and per evaluation (split 'validation' / 'test':
loss, accuracy, mean_iou, iou/<class>, count = images).
"""
import dataclasses
import json
import os
import time
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from flaxcnn import augment, config as config_lib, optim, train as train_lib
from flaxcnn.checkpoint import Checkpointer
from flaxcnn.metrics import MetricWriter, format_duration

# TFDS segmentation datasets: mask feature, value of class 0, class names.
TFDS_SEGMENTATION = {
    "oxford_iiit_pet": ("segmentation_mask", 1, ("pet", "background", "border")),
}


def is_segmentation(config) -> bool:
  """True when config.model.name is a segmentation model (per-pixel logits)."""
  from flaxcnn import models
  from flaxcnn.models import unet
  return models.get_preset(config.model.name).constructor is unet.UNet


# ----------------------------------------------------------------------------- data

def load_dataset(config):
  """The segmentation `Dataset` of config.data: splits of images (N, H, W, C)
  uint8 and masks (N, H, W) uint8 class indices (as the Split's labels)."""
  from flaxcnn.data import shapes
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
    return tfds_segmentation(d.name, d.data_dir, d.image_size or 128, d.validation_size,
                             d.train_split, d.validation_split, d.test_split)
  raise ValueError(f"config.data.source={d.source!r}: segmentation reads 'synthetic' "
                   "(name 'craters') or 'tfds' (name 'oxford_iiit_pet')")


def tfds_segmentation(name: str, data_dir: Optional[str], image_size: int,
                      validation_size: int = 0, train_split="train",
                      validation_split="validation", test_split="test"):
  """A prepared TFDS segmentation dataset, resized to image_size x image_size and
  read whole into uint8 arrays (images bilinear, masks nearest neighbour)."""
  from flaxcnn.data import Split, finalize, sources
  if name not in TFDS_SEGMENTATION:
    raise ValueError(f"config.data.name={name!r}: TFDS segmentation datasets are "
                     f"{', '.join(TFDS_SEGMENTATION)}")
  builder = sources.tfds_builder(name, data_dir)   # fails fast when not prepared
  import tensorflow as tf
  mask_key, offset, class_names = TFDS_SEGMENTATION[name]

  def prepare(example):
    image = tf.image.resize(example["image"], (image_size, image_size), "bilinear")
    mask = tf.image.resize(example[mask_key], (image_size, image_size), "nearest")
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return image, tf.cast(mask[..., 0] - offset, tf.uint8)

  available = set(builder.info.splits.keys())
  splits = {}
  for key, split in (("train", train_split), ("validation", validation_split),
                     ("test", test_split)):
    if split in available:
      ds = builder.as_dataset(split=split).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
      images, masks = [], []
      for x, y in ds.batch(256).as_numpy_iterator():
        images.append(x)
        masks.append(y)
      splits[key] = Split(np.concatenate(images), np.concatenate(masks))
  return finalize(name, len(class_names), splits, validation_size, class_names)


# ----------------------------------------------------------------------------- state

@flax.struct.dataclass
class SegState:
  step: jnp.ndarray
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jnp.ndarray      # base key; per-step keys are fold_in(rng, step)


@dataclasses.dataclass
class Run:
  config: Any
  model: Any
  mesh: Mesh
  tx: optax.GradientTransformation
  schedule: Any
  steps_per_epoch: int
  total_steps: int
  mean: tuple
  std: tuple
  num_classes: int

  @property
  def replicated(self):
    return NamedSharding(self.mesh, P())

  @property
  def batch_sharding(self):
    return NamedSharding(self.mesh, P("data"))

  @property
  def compute_dtype(self):
    return jnp.bfloat16 if self.config.dtype == "bfloat16" else jnp.float32


def validate(config, num_devices: int = 1) -> None:
  """The spine's checks plus the segmentation ones (one-line ValueErrors)."""
  if not is_segmentation(config):
    raise ValueError(f"config.model.name={config.model.name!r} is not a segmentation "
                     "model; use 'unet' or 'unet_small'")
  config_lib.validate(config, num_devices)
  if config.schedule.name == "plateau":
    raise ValueError("config.schedule.name='plateau' is not supported for segmentation")
  if config.augment.mixup_alpha or config.augment.cutout or config.augment.randaugment_layers:
    raise ValueError("config.augment: mixup, cutout and RandAugment are classification "
                     "augmentations; set them to 0 for segmentation")
  if config.label_smoothing:
    raise ValueError("config.label_smoothing must be 0 for segmentation")


def setup(config, dataset) -> Run:
  from flaxcnn.train import make_mesh
  model = config_lib.build_model(config, dataset.num_classes)
  n_train = dataset.sizes["train"]
  if n_train < config.batch_size:
    raise ValueError(f"config.batch_size={config.batch_size} is larger than the "
                     f"{n_train} training images")
  h, w = dataset.image_shape[:2]
  factor = 2 ** getattr(model, "depth", 0)
  if h % factor or w % factor:
    raise ValueError(f"config.data.image_size: images of {h}x{w} do not fit "
                     f"{config.model.name} (sides must be divisible by {factor})")
  spe = n_train // config.batch_size
  total = config.num_steps or max(1, int(round(config.num_epochs * spe)))
  abstract = jax.eval_shape(lambda: _init_variables(model, dataset.image_shape, 0))
  return Run(config=config, model=model, mesh=make_mesh(),
             tx=optim.make_optimizer(config, abstract["params"]),
             schedule=optim.make_schedule(config, spe, total), steps_per_epoch=spe,
             total_steps=total, mean=dataset.mean, std=dataset.std,
             num_classes=dataset.num_classes)


def _init_variables(model, image_shape, seed):
  rng = jax.random.PRNGKey(seed)
  return model.init({"params": rng, "dropout": rng},
                    jnp.zeros((1,) + tuple(image_shape), jnp.float32), train=False)


def create_state(run: Run, image_shape) -> SegState:
  def init():
    variables = _init_variables(run.model, image_shape, run.config.seed)
    return SegState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                    batch_stats=variables.get("batch_stats", {}),
                    opt_state=run.tx.init(variables["params"]),
                    rng=jax.random.PRNGKey(run.config.seed + 1))
  # The non-partitionable threefry compiles the initializers several times
  # faster on CPU (the values differ, the distributions do not).
  with jax.threefry_partitionable(False):
    return jax.jit(init, out_shardings=run.replicated)()


# ----------------------------------------------------------------------------- steps

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


def make_train_step(run: Run):
  cfg, B, spe = run.config, run.config.batch_size, run.steps_per_epoch

  def step(state, images, masks, perm):
    rng = jax.random.fold_in(state.rng, state.step)
    k_aug, k_drop = jax.random.split(rng)
    idx = jax.lax.dynamic_slice_in_dim(perm, (state.step % spe) * B, B)
    idx = jax.lax.with_sharding_constraint(idx, run.batch_sharding)
    x, y = augment_pair(k_aug, images[idx], masks[idx], cfg.augment.crop_padding,
                        cfg.augment.flip)
    x = augment.normalize(x, run.mean, run.std, run.compute_dtype)
    x = jax.lax.with_sharding_constraint(x, run.batch_sharding)

    def loss_fn(params):
      logits, new_vars = run.model.apply(
          {"params": params, "batch_stats": state.batch_stats}, x, train=True,
          mutable=["batch_stats"], rngs={"dropout": k_drop})
      return jnp.mean(pixel_cross_entropy(logits, y)), (logits, new_vars)

    (loss, (logits, new_vars)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    lr = run.schedule(state.step)
    opt_state = state.opt_state
    opt_state.hyperparams["learning_rate"] = lr
    updates, opt_state = run.tx.update(grads, opt_state, state.params)
    new_state = state.replace(step=state.step + 1,
                              params=optax.apply_updates(state.params, updates),
                              batch_stats=new_vars.get("batch_stats", state.batch_stats),
                              opt_state=opt_state)
    metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == y), "lr": lr,
               "nonfinite": (~jnp.isfinite(loss)).astype(jnp.float32)}
    return new_state, metrics

  return jax.jit(step, donate_argnums=(0,), out_shardings=(run.replicated, run.replicated))


def make_eval_step(run: Run):
  """Per-batch sums over the valid (mask 1) images: loss, correct pixels,
  pixels, images and the confusion matrix (rows: label, columns: prediction)."""
  k = run.num_classes

  def step(params, batch_stats, images, masks, valid):
    x = augment.normalize(images, run.mean, run.std, run.compute_dtype)
    logits = run.model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
    return eval_sums(logits, masks, valid, k)
  return jax.jit(step, out_shardings=run.replicated)


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


def padded_batches(split, batch_size: int):
  """(images, masks, valid) host batches; the last one padded to the batch size."""
  n = len(split)
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    pad = batch_size - (stop - start)
    images, masks = split.images[start:stop], split.labels[start:stop]
    valid = np.ones(stop - start, np.float32)
    if pad:
      images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
      masks = np.concatenate([masks, np.zeros((pad,) + masks.shape[1:], masks.dtype)])
      valid = np.concatenate([valid, np.zeros(pad, np.float32)])
    yield images, masks, valid


def evaluate(run: Run, eval_step, state, split, class_names=None) -> dict:
  """loss, pixel accuracy, mean IoU and per-class IoU over an in-memory split."""
  from flaxcnn.train import global_array
  totals = None
  for batch in padded_batches(split, run.config.eval_batch_size):
    images, masks, valid = (global_array(x, run.batch_sharding) for x in batch)
    sums = eval_step(state.params, state.batch_stats, images, masks, valid)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  iou, miou = iou_from_confusion(totals["confusion"])
  names = class_names or [str(i) for i in range(len(iou))]
  result = {"loss": float(totals["loss"]) / float(totals["pixels"]),
            "accuracy": float(totals["correct"]) / float(totals["pixels"]),
            "mean_iou": miou, "count": float(totals["count"])}
  result.update({f"iou/{n}": float(v) for n, v in zip(names, iou) if np.isfinite(v)})
  return result


# ----------------------------------------------------------------------------- loop

# SIGTERM/SIGINT handling is the classification loop's.
_Interrupt = train_lib._Interrupt


def train_and_evaluate(config, workdir: str, dataset=None) -> dict:
  """Trains the segmentation model of `config` in `workdir` (resuming from its
  latest checkpoint) and returns the summary: step, epoch, seconds,
  interrupted, and per split ('validation', 'test') loss, accuracy (pixel
  accuracy), mean_iou, iou/<class>, count (images)."""
  from flaxcnn.train import NonFiniteLoss, global_array
  validate(config, jax.device_count())
  if dataset is None:
    dataset = load_dataset(config)
  run = setup(config, dataset)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  writer = MetricWriter(workdir)
  ckpt = Checkpointer(workdir, config.keep_checkpoints)
  fresh = create_state(run, dataset.image_shape)
  state, restored = ckpt.restore_latest(fresh)
  if state is None:
    state = fresh
  else:
    print(f"Resumed from checkpoint at step {restored} in {workdir}", flush=True)
  del fresh

  train_split = dataset.splits["train"]
  images = global_array(train_split.images, run.replicated)
  masks = global_array(train_split.labels, run.replicated)
  train_step, eval_step = make_train_step(run), make_eval_step(run)
  permute = jax.jit(lambda k: jax.random.permutation(k, len(train_split)).astype(jnp.int32),
                    out_shardings=run.replicated)
  eval_every = max(1, int(round(config.eval_every_epochs * run.steps_per_epoch)))
  class_names = list(dataset.class_names) if dataset.class_names else None

  step = int(jax.device_get(state.step))
  perm, perm_epoch = None, None
  pending, summary = [], {}
  t_start = t_last = time.time()
  step_last = step

  def flush(step):
    nonlocal pending, t_last, step_last
    if not pending:
      return
    m = jax.device_get(pending)
    pending = []
    if any(x["nonfinite"] for x in m):
      raise NonFiniteLoss(f"loss is NaN/Inf near step {step}; lower config.optimizer.lr "
                          "or add warmup (config.schedule.warmup_epochs), then rerun to "
                          "resume from the last checkpoint")
    now = time.time()
    values = {k: float(np.mean([x[k] for x in m])) for k in ("loss", "accuracy")}
    values["lr"] = float(m[-1]["lr"])
    values["img_per_sec"] = (step - step_last) * config.batch_size / max(now - t_last, 1e-9)
    writer.write(step, "train", values, epoch=step / run.steps_per_epoch)
    if jax.process_index() == 0:
      print(f"epoch {step / run.steps_per_epoch:7.2f}  step {step}/{run.total_steps}  "
            f"loss {values['loss']:.4f}  pixel acc {values['accuracy']:.4f}  "
            f"lr {values['lr']:.4g}  {values['img_per_sec']:8.1f} img/s", flush=True)
    t_last, step_last = now, step

  def run_eval(step):
    for name in ("validation", "test"):
      if name in dataset.splits:
        res = evaluate(run, eval_step, state, dataset.splits[name], class_names)
        writer.write(step, name, res, epoch=step / run.steps_per_epoch)
        summary[name] = res
        if jax.process_index() == 0:
          print(f"eval {name:10s} step {step}  loss {res['loss']:.4f}  pixel acc "
                f"{res['accuracy']:.4f}  mIoU {res['mean_iou']:.4f}  "
                f"({int(res['count'])} images)", flush=True)

  with _Interrupt() as interrupt:
    while step < run.total_steps:
      epoch = step // run.steps_per_epoch
      if perm_epoch != epoch:
        perm = permute(jax.random.fold_in(jax.random.PRNGKey(config.seed + 2), epoch))
        perm_epoch = epoch
      state, metrics = train_step(state, images, masks, perm)
      step += 1
      pending.append(metrics)
      done = step == run.total_steps
      if step % config.log_every_steps == 0 or done:
        flush(step)
      if step % eval_every == 0 or done:
        flush(step)
        run_eval(step)
      if step % config.checkpoint_every_steps == 0 or done or interrupt.signal:
        flush(step)
        ckpt.save(state)
      if interrupt.signal:
        ckpt.wait()
        print(f"Received signal {interrupt.signal}: saved checkpoint at step {step}; "
              "rerun the same command to resume.", flush=True)
        break
  ckpt.close()
  writer.close()
  summary.update(step=step, epoch=step / run.steps_per_epoch,
                 seconds=time.time() - t_start, interrupted=bool(interrupt.signal))
  if jax.process_index() == 0 and not interrupt.signal:
    parts = [f"{k} mIoU {summary[k]['mean_iou']:.4f} pixel acc {summary[k]['accuracy']:.4f}"
             for k in ("validation", "test") if k in summary]
    print(f"Finished {config.model.name} on {dataset.name}: step {step}, "
          + ", ".join(parts) + f", {format_duration(summary['seconds'])}", flush=True)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  return summary


def load_state(config, workdir: str, dataset=None) -> SegState:
  """The latest segmentation state saved in `workdir`."""
  if dataset is None:
    dataset = load_dataset(config)
  run = setup(config, dataset)
  ckpt = Checkpointer(workdir, config.keep_checkpoints)
  state, _ = ckpt.restore_latest(create_state(run, dataset.image_shape))
  ckpt.close()
  if state is None:
    raise FileNotFoundError(f"no checkpoint in {ckpt.directory}; train first")
  return state


def evaluate_checkpoint(config, workdir: str, dataset=None) -> dict:
  """Evaluates the latest checkpoint in `workdir` (config.mode='eval')."""
  validate(config, jax.device_count())
  if dataset is None:
    dataset = load_dataset(config)
  run = setup(config, dataset)
  state = load_state(config, workdir, dataset)
  eval_step = make_eval_step(run)
  results = {}
  for name in ("validation", "test"):
    if name in dataset.splits:
      results[name] = evaluate(run, eval_step, state, dataset.splits[name],
                               list(dataset.class_names or []) or None)
      print(f"eval {name:10s} step {int(state.step)}: loss {results[name]['loss']:.4f} pixel acc "
            f"{results[name]['accuracy']:.4f} mIoU {results[name]['mean_iou']:.4f}", flush=True)
  return results


def main(argv):
  import sys
  from absl import flags
  if len(argv) > 1:
    raise SystemExit(f"unexpected arguments: {' '.join(argv[1:])}")
  from flaxcnn.train import NonFiniteLoss
  config = flags.FLAGS.config
  try:
    if config.mode == "eval":
      evaluate_checkpoint(config, flags.FLAGS.workdir)
    else:
      train_and_evaluate(config, flags.FLAGS.workdir)
  except (FileNotFoundError, ValueError, NonFiniteLoss) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  from absl import app, flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "segmentation config (experiments/unet_*.py)",
                                  lock_config=False)
  flags.DEFINE_string("workdir", None, "directory for checkpoints, metrics and logs")
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
