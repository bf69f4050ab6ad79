"""flaxcnn's training step against PyTorch's on this machine's CPU, side by side.

  python benchmarks/cpu_vs_torch.py                      # the five models below
  python benchmarks/cpu_vs_torch.py --models=resnet56_cifar:128 --steps=12
  python benchmarks/cpu_vs_torch.py --json=runs/cpu_vs_torch.json

One float32 training step on a fixed 32x32 batch (forward, backward, SGD with
momentum 0.9 and weight decay 5e-4, BatchNorm in training mode), for
ResNet-20/56/110 (He et al. 2015, option A shortcuts) at batch 128 and WRN-16-4
and DenseNet-BC-100-12 at batch 64:

- flaxcnn: the trainer's streaming step (`train.make_batch_train_step`, the CPU
  tuning of `flaxcnn.backend` on, as `launch.py`), augmentation off;
- PyTorch: the same architecture written below in plain `torch.nn` (the same
  parameter count, printed beside ours), eager, channels_last and contiguous
  memory formats, on as many threads as this process may use.

Each model's variants are timed in alternating rounds (`--steps` steps each per
round, a pause between them so that PyTorch's OpenMP threads stop spinning),
and the median step is printed with the ratio to flaxcnn's, then each variant's
page faults and user and system CPU seconds a step (a step whose buffers come
from fresh pages pays the kernel for faulting and zeroing them). Like launch.py it
restarts itself with huge pages for malloc (`flaxcnn/hugepages.py`; PyTorch's steps
in this process get them too; FLAXCNN_KEEP_MALLOC_DEFAULTS=1 times both without). PyTorch is
optional: without it, only flaxcnn's figures are printed.
"""
import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flaxcnn import hugepages  # noqa: E402

hugepages.restart_with_huge_pages()   # as launch.py (PyTorch's steps get them too)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from flaxcnn import backend, config as config_lib, train  # noqa: E402
from flaxcnn.data import Dataset, Split  # noqa: E402
from flaxcnn.models import summary  # noqa: E402

backend.configure()   # the CPU tuning, as launch.py

try:
  import torch
  import torch.nn as tnn
  import torch.nn.functional as F
except ImportError:   # the benchmark still times flaxcnn
  torch = None

DEFAULT = "resnet20_cifar:128,resnet56_cifar:128,resnet110_cifar:128,wrn16_4:64,densenet_bc_100_12:64"


# ----------------------------------------------------------------------------- PyTorch models

def _torch_models():
  """name -> constructor of the PyTorch reference (defined only when torch imports)."""

  def bn_relu(c):
    return tnn.Sequential(tnn.BatchNorm2d(c), tnn.ReLU(inplace=True))

  class Basic(tnn.Module):   # post-activation basic block, option A shortcut
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.c1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.b1 = tnn.BatchNorm2d(cout)
      self.c2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.b2 = tnn.BatchNorm2d(cout)
      self.stride, self.pad = stride, cout - cin

    def forward(self, x):
      y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
      if self.stride != 1 or self.pad:
        x = F.pad(x[:, :, ::self.stride, ::self.stride],
                  (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
      return F.relu(y + x)

  def cifar_resnet(depth):
    n, layers, cin = (depth - 2) // 6, [], 16
    for i, w in enumerate((16, 32, 64)):
      for j in range(n):
        layers.append(Basic(cin, w, 2 if i and not j else 1))
        cin = w
    return tnn.Sequential(tnn.Conv2d(3, 16, 3, 1, 1, bias=False), bn_relu(16), *layers,
                          tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, 10))

  class Wide(tnn.Module):   # pre-activation wide block, 1x1 projection when the shape changes
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.pre1, self.c1 = bn_relu(cin), tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.pre2, self.c2 = bn_relu(cout), tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.project = (tnn.Conv2d(cin, cout, 1, stride, bias=False)
                      if cin != cout or stride != 1 else None)

    def forward(self, x):
      h = self.pre1(x)
      y = self.c2(self.pre2(self.c1(h)))
      return y + (self.project(h) if self.project is not None else x)

  def wrn(depth, k):
    n, layers, cin = (depth - 4) // 6, [], 16
    for i, w in enumerate((16 * k, 32 * k, 64 * k)):
      for j in range(n):
        layers.append(Wide(cin, w, 2 if i and not j else 1))
        cin = w
    return tnn.Sequential(tnn.Conv2d(3, 16, 3, 1, 1, bias=False), *layers, bn_relu(cin),
                          tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(cin, 10))

  class Dense(tnn.Module):   # BN-ReLU-1x1 (4k) - BN-ReLU-3x3 (k), concatenated
    def __init__(self, cin, k):
      super().__init__()
      self.f = tnn.Sequential(bn_relu(cin), tnn.Conv2d(cin, 4 * k, 1, bias=False),
                              bn_relu(4 * k), tnn.Conv2d(4 * k, k, 3, 1, 1, bias=False))

    def forward(self, x):
      return torch.cat([x, self.f(x)], 1)

  def densenet_bc(depth, k):
    n, c, layers = (depth - 4) // 6, 2 * k, []
    for b in range(3):
      for _ in range(n):
        layers.append(Dense(c, k))
        c += k
      if b < 2:
        layers += [bn_relu(c), tnn.Conv2d(c, c // 2, 1, bias=False), tnn.AvgPool2d(2)]
        c //= 2
    return tnn.Sequential(tnn.Conv2d(3, 2 * k, 3, 1, 1, bias=False), *layers, bn_relu(c),
                          tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(c, 10))

  return {"resnet20_cifar": lambda: cifar_resnet(20), "resnet56_cifar": lambda: cifar_resnet(56),
          "resnet110_cifar": lambda: cifar_resnet(110), "wrn16_4": lambda: wrn(16, 4),
          "densenet_bc_100_12": lambda: densenet_bc(100, 12)}


# ----------------------------------------------------------------------------- steps

def flaxcnn_step(name, batch):
  """(one step as a function of nothing, parameter count): the trainer's step."""
  c = config_lib.default_config()
  c.model.name, c.dtype, c.batch_size, c.num_steps = name, "float32", batch, 1000
  c.data.source, c.data.image_size, c.data.num_classes = "synthetic", 32, 10
  c.optimizer.name, c.optimizer.weight_decay, c.schedule.name = "sgd", 5e-4, "cosine"
  c.augment.crop_padding, c.augment.flip = 0, False
  rng = np.random.RandomState(0)
  images = rng.randint(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
  labels = rng.randint(0, 10, batch).astype(np.int32)
  ds = Dataset("synthetic", 10, {"train": Split(images, labels)}, (0.5,) * 3, (0.25,) * 3)
  run = train.setup(c, ds)
  state = [train.create_state(run, ds.image_shape)]
  step = train.make_batch_train_step(run)
  x, y = (train.global_array(a, run.batch_sharding) for a in (images, labels))

  def one():
    state[0], metrics = step(state[0], x, y)
    jax.block_until_ready(metrics)
  return one, summary.count_params(run.model, 32)


def torch_step(name, batch, channels_last):
  model = _torch_models()[name]()
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
  g = torch.Generator().manual_seed(0)
  x = torch.randn(batch, 3, 32, 32, generator=g)
  y = torch.randint(0, 10, (batch,), generator=g)
  if channels_last:
    model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)

  def one():
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
  return one, sum(p.numel() for p in model.parameters())


def median_steps(variants, steps, rounds, host=None):
  """Median step time of each `label -> step function`, in alternating rounds; with a
  dict `host`, also each label's page faults and user / system CPU seconds a step."""
  times = {label: [] for label in variants}
  usage = {label: np.zeros(3) for label in variants}
  for fn in variants.values():   # compile / warm up
    fn()
    fn()
  for _ in range(rounds):
    for label, fn in variants.items():
      time.sleep(0.5)
      before = resource.getrusage(resource.RUSAGE_SELF)
      for _ in range(steps):
        t = time.perf_counter()
        fn()
        times[label].append(time.perf_counter() - t)
      after = resource.getrusage(resource.RUSAGE_SELF)
      usage[label] += [after.ru_minflt - before.ru_minflt, after.ru_utime - before.ru_utime,
                       after.ru_stime - before.ru_stime]
  if host is not None:
    host.update({label: (u / (steps * rounds)).tolist() for label, u in usage.items()})
  return {label: float(np.median(t)) for label, t in times.items()}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--models", default=DEFAULT, help="comma-separated preset:batch")
  p.add_argument("--steps", type=int, default=4, help="steps per variant per round")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--json", default=None, help="also write the figures to this file")
  args = p.parse_args()
  if torch is not None:
    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count())
  versions = f"jax {jax.__version__}" + (f", torch {torch.__version__}" if torch else
                                         " (PyTorch not installed: flaxcnn only)")
  print(f"machine: {backend.host_description()}; {versions}; float32, median of {args.steps * args.rounds} "
        "steps", flush=True)
  print("| model | batch | params (ours / torch) | flaxcnn | torch channels_last | torch "
        "contiguous | flaxcnn / best torch |\n|---|---|---|---|---|---|---|", flush=True)
  rows = []
  for item in args.models.split(","):
    name, batch = item.split(":")
    batch = int(batch)
    ours, n_ours = flaxcnn_step(name, batch)
    variants, counts = {"flaxcnn": ours}, [f"{n_ours:,}"]
    if torch is not None:
      variants["channels_last"], n_torch = torch_step(name, batch, True)
      variants["contiguous"], _ = torch_step(name, batch, False)
      counts.append(f"{n_torch:,}")
    host = {}
    t = median_steps(variants, args.steps, args.rounds, host)
    best = min((t[k] for k in ("channels_last", "contiguous") if k in t), default=None)
    cells = [f"{t[k]:.3f} s" if k in t else "-" for k in ("flaxcnn", "channels_last", "contiguous")]
    ratio = f"{t['flaxcnn'] / best:.2f}x" if best else "-"
    print(f"| {name} | {batch} | {' / '.join(counts)} | {' | '.join(cells)} | {ratio} |", flush=True)
    rows.append({"model": name, "batch": batch, "params": counts, **t, "host": host})
  for row in rows:   # what each step cost the host besides its time
    print(f"{row['model']} b{row['batch']}, a step: " + "; ".join(
        f"{label} {faults:,.0f} page faults, {user:.2f} s user + {system:.2f} s system CPU"
        for label, (faults, user, system) in row["host"].items()))
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump({"machine": backend.host_description(), "versions": versions, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()
