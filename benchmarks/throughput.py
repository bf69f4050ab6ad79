"""Training-step throughput (img/s): synthetic batches vs the real in-memory path.

  python benchmarks/throughput.py                                  # WRN-28-10 b512 + ResNet-50 b256, bf16
  python benchmarks/throughput.py --models=resnet20_cifar:128 --dtype=float32 --steps=20
  python benchmarks/throughput.py --models=wrn28_10:512 --cifar=PATH/cifar10-jpeg/train.tar.xz
  python benchmarks/throughput.py --models=resnet20_cifar:128 --dtype=float32 --epoch \
      --cifar=PATH/cifar10-jpeg/train    # + what the input path and evaluation add to an epoch

For each model:batch it times the jitted train step on
- synthetic: a uint8 batch already on the devices (the plain-jit-step figure), and
- in-memory (CIFAR-sized models only): the whole training set on the devices, with
  the per-step gather, pad-and-crop, flip and normalization inside the step (the
  path `launch.py` uses for CIFAR). Real CIFAR-10 images with --cifar, else random
  uint8 images of the same shape (the work done is the same).
It prints the device, both figures and their ratio, and beside each img/s the
achieved TFLOP/s: the training FLOPs per image are taken as 3 x the forward
multiply-adds x 2 (forward, input gradient and weight gradient; a multiply-add
is 2 FLOPs), counted by `flaxcnn.models.summary` at the training input size, so
a GPU figure reads at once as a fraction of the card's peak. No TensorFlow is imported.

--epoch (CIFAR-sized models) also times one whole training epoch on the in-memory path
and one evaluation of the validation split (`eval_batch_size` 500, as the trainer's
periodic evaluation), and prints what each adds to an epoch of synthetic steps: the
input path's share (in-memory epoch over the same number of synthetic steps) and the
evaluation's (over the in-memory epoch).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from flaxcnn import backend, config as config_lib, train  # noqa: E402
from flaxcnn.data import Dataset, Split, sources  # noqa: E402
from flaxcnn.models import get_preset, summary  # noqa: E402

backend.configure()   # the CPU tuning, as launch.py (on a GPU it changes nothing)


def _config(model, batch, dtype, size, num_classes):
  c = config_lib.default_config()
  c.model.name = model
  c.dtype = dtype
  c.batch_size = batch
  c.num_steps = 10_000
  c.data.source = "synthetic"
  c.data.image_size = size
  c.data.num_classes = num_classes
  c.optimizer.name = "sgd"
  c.optimizer.weight_decay = 5e-4
  c.schedule.name = "cosine"
  return c


def _time(fn, state, steps, warmup):
  for _ in range(warmup):
    state, m = fn(state)
  jax.block_until_ready(m)
  t = time.perf_counter()
  for _ in range(steps):
    state, m = fn(state)
  jax.block_until_ready(m)
  return time.perf_counter() - t, state


def train_flops_per_image(model, image_size: int) -> float:
  """3 x forward multiply-adds x 2 FLOPs (forward, input and weight gradients)."""
  return 3 * 2 * summary.count_macs(model, image_size)


def bench(model, batch, dtype, steps, warmup, cifar=None, epoch=False):
  preset = get_preset(model)
  size, num_classes = preset.image_size, preset.num_classes
  config = _config(model, batch, dtype, size, num_classes)
  n = max(batch * 4, 50_000 if size <= 32 else batch * 4)
  rng = np.random.RandomState(0)
  if cifar and size == 32:
    dataset = sources.image_folder(cifar, validation_size=5000)
  else:
    images = rng.randint(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = rng.randint(0, num_classes, n).astype(np.int32)
    dataset = Dataset("synthetic", num_classes, {"train": Split(images, labels)},
                      (0.5,) * 3, (0.25,) * 3)
  run = train.setup(config, dataset)
  state = train.create_state(run, dataset.image_shape)
  results = {"train_flops": train_flops_per_image(run.model, size)}

  # synthetic: one device-resident batch, normalization in the step
  step = train.make_batch_train_step(run)
  x = train.global_array(dataset.splits["train"].images[:batch], run.batch_sharding)
  y = train.global_array(dataset.splits["train"].labels[:batch], run.batch_sharding)
  secs, state = _time(lambda s: step(s, x, y), state, steps, warmup)
  results["synthetic"] = steps * batch / secs

  if size <= 64:   # the in-memory path with on-device augmentation
    config.augment.crop_padding = 4
    feed = train.InMemoryFeed(run, dataset)
    in_memory_step = train.make_train_step(run)
    counter = [int(state.step)]

    def real(s):
      out = in_memory_step(s, *feed.train_inputs(counter[0]))
      counter[0] += 1
      return out
    secs, state = _time(real, state, steps, warmup)
    results["in-memory"] = steps * batch / secs
    if epoch and "validation" in dataset.splits:
      spe = run.steps_per_epoch
      results["epoch_s"], state = _time(real, state, spe, 1)
      results["epoch_synthetic_s"] = spe * batch / results["synthetic"]
      eval_step = train.make_eval_step(run)
      batches = lambda: feed.eval_batches("validation", 500)   # noqa: E731
      train.evaluate(run, eval_step, state.params, state.batch_stats, batches())   # compile
      t = time.perf_counter()
      train.evaluate(run, eval_step, state.params, state.batch_stats, batches())
      results["eval_s"] = time.perf_counter() - t
      results["eval_images"] = len(dataset.splits["validation"].labels)
  return results


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--models", default="wrn28_10:512,resnet50:256",
                 help="comma-separated preset:batch")
  p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
  p.add_argument("--steps", type=int, default=50)
  p.add_argument("--warmup", type=int, default=5)
  p.add_argument("--cifar", default=None, help="CIFAR-10 image folder or archive")
  p.add_argument("--epoch", action="store_true",
                 help="also time a whole epoch (in-memory) and an evaluation of the validation split")
  args = p.parse_args()
  dev = jax.devices()[0]
  print(f"device: {jax.device_count()} x {dev.platform} {dev.device_kind}; jax {jax.__version__}; "
        f"dtype {args.dtype}", flush=True)
  for item in args.models.split(","):
    model, batch = item.split(":")
    r = bench(model, int(batch), args.dtype, args.steps, args.warmup, args.cifar, args.epoch)
    flops = r["train_flops"]
    tflops = lambda ips: f"{ips * flops / 1e12:7.3f} TFLOP/s"
    line = (f"{model:16s} batch {batch:>4s}  {flops / 1e9:7.2f} GFLOP/img (train)  "
            f"synthetic {r['synthetic']:10.1f} img/s {tflops(r['synthetic'])}")
    if "in-memory" in r:
      line += (f"  in-memory {r['in-memory']:10.1f} img/s {tflops(r['in-memory'])}  "
               f"({100 * r['in-memory'] / r['synthetic']:.1f}% of synthetic)")
    print(line, flush=True)
    if "epoch_s" in r:
      print(f"{'':16s} epoch: {r['epoch_s']:.1f} s in-memory vs {r['epoch_synthetic_s']:.1f} s of "
            f"synthetic steps (input path +{100 * (r['epoch_s'] / r['epoch_synthetic_s'] - 1):.1f}%); "
            f"evaluation of {r['eval_images']} validation images {r['eval_s']:.1f} s "
            f"(+{100 * r['eval_s'] / r['epoch_s']:.1f}% of the epoch)", flush=True)


if __name__ == "__main__":
  main()
