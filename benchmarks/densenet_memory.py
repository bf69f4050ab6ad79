"""Memory-efficient DenseNet (Pleiss et al. 2017): XLA temporary memory and step time.

  python benchmarks/densenet_memory.py                       # DenseNet-BC-100-12, batch 64, float32
  python benchmarks/densenet_memory.py --model=densenet121 --batch=32 --steps=5

Compiles the project's training step (forward, loss, backward, BN update, SGD)
for the plain model and for each remat variant, prints the machine, the
compiled step's temporary memory (`compiled.memory_analysis().temp_size_in_bytes`,
the activations kept for the backward pass and the scratch space) and the mean
step time, each as a ratio to the plain model, all in one run.

On the CPU, XLA's `cse_barrier_expander` pass deletes the optimization barriers
that `jax.checkpoint` places around recomputed values, after which CSE merges
the recomputation back into the forward pass: remat then saves no memory (the
plain and memory-efficient steps have byte-identical temporaries). GPU and TPU
compilers keep the barriers. The trainer's compiles disable that pass on the CPU
(`train.steps.compiler_options`), and so does this script through them; --keep-cpu-cse
measures the CPU compiler as it is.
"""
import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from flaxcnn import backend, config as config_lib, train  # noqa: E402
from flaxcnn.data import Dataset, Split  # noqa: E402
from flaxcnn.models import get_preset  # noqa: E402

backend.configure()   # the CPU tuning, as launch.py

VARIANTS = {
    "plain": {},
    "memory_efficient": {"memory_efficient": True},                          # remat_policy='convs'
    "remat_nothing": {"memory_efficient": True, "remat_policy": "nothing"},
}


def step_and_state(model, batch, dtype, kwargs):
  preset = get_preset(model)
  size, num_classes = preset.image_size, preset.num_classes
  c = config_lib.default_config()
  c.model.name = model
  for k, v in kwargs.items():
    c.model.kwargs[k] = v
  c.dtype = dtype
  c.batch_size = batch
  c.num_steps = 1000
  c.optimizer.name = "sgd"
  c.schedule.name = "cosine"
  rng = np.random.RandomState(0)
  images = rng.randint(0, 256, (batch, size, size, 3), dtype=np.uint8)
  labels = rng.randint(0, num_classes, batch).astype(np.int32)
  dataset = Dataset("synthetic", num_classes, {"train": Split(images, labels)},
                    (0.5,) * 3, (0.25,) * 3)
  run = train.setup(c, dataset)
  state = train.create_state(run, dataset.image_shape)
  x = train.global_array(images, run.batch_sharding)
  y = train.global_array(labels, run.batch_sharding)
  return train.make_batch_train_step(run), state, x, y


def measure(model, batch, dtype, kwargs, steps):
  step, state, x, y = step_and_state(model, batch, dtype, kwargs)
  t = time.perf_counter()
  compiled = step.lower(state, x, y).compile()
  compile_s = time.perf_counter() - t
  temp = compiled.memory_analysis().temp_size_in_bytes
  if not steps:
    return temp, float("nan"), compile_s, float("nan")
  state, m = compiled(state, x, y)           # warm-up
  jax.block_until_ready(m)
  t = time.perf_counter()
  for _ in range(steps):
    state, m = compiled(state, x, y)
  jax.block_until_ready(m)
  return temp, (time.perf_counter() - t) / steps, compile_s, float(m["loss"])


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="densenet_bc_100_12")
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--steps", type=int, default=3, help="timed steps (0: memory only)")
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--json", default=None, help="also write the figures to this JSON file")
  p.add_argument("--keep-cpu-cse", action="store_true",
                 help="keep XLA's CPU pass that undoes remat (see the docstring)")
  args = p.parse_args()
  if args.keep_cpu_cse:
    train.steps.compiler_options = lambda run: None
  dev = jax.devices()[0]
  print(f"machine: {platform.node()} {os.cpu_count()} cpus; {jax.device_count()} x "
        f"{dev.platform} {dev.device_kind}; jax {jax.__version__}; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}", flush=True)
  print(f"{args.model} batch {args.batch} {args.dtype}, mean of {args.steps} steps", flush=True)
  base, out, t0 = None, {}, time.time()
  for name in args.variants.split(","):
    temp, secs, compile_s, loss = measure(args.model, args.batch, args.dtype, VARIANTS[name],
                                          args.steps)
    base = base or (temp, secs)
    out[name] = {"temp_bytes": temp, "step_s": secs, "compile_s": compile_s}
    print(f"{name:18s} temp {temp / 2**30:7.3f} GiB ({temp / base[0]:.3f}x)  "
          f"step {secs:7.3f} s ({secs / base[1]:.3f}x)  compile {compile_s:5.1f} s  "
          f"loss {loss:.4f}", flush=True)
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump({"model": args.model, "batch": args.batch, "dtype": args.dtype,
                 "steps": args.steps, "variants": out, "seconds": time.time() - t0,
                 "machine": f"{platform.processor() or platform.machine()}, "
                            f"{os.cpu_count()} cpus, jax {jax.__version__}"}, f, indent=1)


if __name__ == "__main__":
  main()
