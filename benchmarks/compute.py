"""Compute figures of issue 12, each pair measured in one run on this machine.

  python benchmarks/compute.py                 # batch 32, 20 timed steps
  python benchmarks/compute.py --batch=128 --steps=40

1. Compile time independent of depth: jit lower + compile of the train-style
   step (forward in train mode, softmax cross-entropy, gradient, SGD update of
   the parameters and BN statistics) of ResNet-1202 vs ResNet-110 (CIFAR), both
   with `scan_blocks=True`. Target: ratio <= 2.
2. Stochastic depth that saves compute: step time of ResNet-110 with per-batch
   stochastic depth (Huang et al. 2016, p_L = 0.5, linear decay; dropped blocks
   are skipped by lax.cond) vs the same net without stochastic depth, averaged
   over --steps steps after warm-up. Target: ratio <= 0.80 (expected survival
   is 0.75 of the blocks). Measured with the blocks unscanned (the default) and
   with `scan_blocks=True` on both sides.
Synthetic float32 32x32 batches; parameters filled on the host (no jitted init).
"""
import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from flaxcnn.models import create_model, layers  # noqa: E402


def _variables(model, batch):
  """Random variables of the model's shapes, made on the host."""
  x = jnp.zeros((batch, 32, 32, 3))
  shapes = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0),
                                              "dropout": jax.random.PRNGKey(1)}, x))
  rng = np.random.default_rng(0)

  def fill(path, s):
    name = jax.tree_util.keystr(path[-1:])
    if "scale" in name or "var" in name:
      return jnp.ones(s.shape, s.dtype)
    if "bias" in name or "mean" in name:
      return jnp.zeros(s.shape, s.dtype)
    fan_in = int(np.prod(s.shape[-4:-1])) if len(s.shape) >= 4 else s.shape[-2]
    return jnp.asarray(rng.normal(size=s.shape) * np.sqrt(2.0 / max(fan_in, 1)), s.dtype)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def _step_fn(model):
  def step(variables, x, y, key):
    def loss_fn(params):
      logits, new = model.apply({**variables, "params": params}, x, train=True,
                                mutable=["batch_stats"], rngs={"dropout": key})
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new
    (loss, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    params = jax.tree.map(lambda p, g: p - 0.1 * g, variables["params"], grads)
    return {**variables, **new, "params": params}, loss
  return step


def _batch(batch):
  rng = np.random.default_rng(1)
  return (jnp.asarray(rng.normal(size=(batch, 32, 32, 3)), jnp.float32),
          jnp.asarray(rng.integers(0, 10, batch), jnp.int32))


def compile_time(name, batch, **kwargs):
  model = create_model(name, **kwargs)
  v = _variables(model, batch)
  x, y = _batch(batch)
  t0 = time.perf_counter()
  lowered = jax.jit(_step_fn(model), compiler_options=layers.compiler_options()).lower(v, x, y, jax.random.PRNGKey(0))
  t1 = time.perf_counter()
  lowered.compile()
  t2 = time.perf_counter()
  return t1 - t0, t2 - t1


def step_time(name, batch, steps, **kwargs):
  model = create_model(name, **kwargs)
  v = _variables(model, batch)
  x, y = _batch(batch)
  step = jax.jit(_step_fn(model), donate_argnums=0, compiler_options=layers.compiler_options())
  for i in range(3):  # compile + warm-up
    v, loss = step(v, x, y, jax.random.PRNGKey(1000 + i))
  jax.block_until_ready(loss)
  t = time.perf_counter()
  for i in range(steps):
    v, loss = step(v, x, y, jax.random.PRNGKey(i))
  jax.block_until_ready(loss)
  return (time.perf_counter() - t) / steps


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--skip_compile", action="store_true", help="only the step times")
  args = parser.parse_args()
  print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__} on {jax.devices()[0].device_kind} x {jax.device_count()}, "
        f"load average {os.getloadavg()[0]:.1f}; batch {args.batch}, float32")
  print("| workload | ours | reference | ratio | target |\n|---|---|---|---|---|", flush=True)

  def row(workload, ours, ref, ratio, target):   # printed as soon as it is measured
    print(f"| {workload} | {ours} | {ref} | {ratio:.2f}x | {target} |", flush=True)

  if not args.skip_compile:
    lo110, co110 = compile_time("resnet110_cifar", args.batch, scan_blocks=True)
    lo1202, co1202 = compile_time("resnet1202_cifar", args.batch, scan_blocks=True)
    row("jit lower+compile, scan_blocks=True: ResNet-1202 vs ResNet-110",
        f"{lo1202 + co1202:.1f} s ({lo1202:.1f} + {co1202:.1f})",
        f"{lo110 + co110:.1f} s ({lo110:.1f} + {co110:.1f})",
        (lo1202 + co1202) / (lo110 + co110), "<= 2")
  sd = dict(stochastic_depth=0.5, stochastic_depth_per="batch")
  times = {}
  for scan in (False, True):
    times[scan] = (step_time("resnet110_cifar", args.batch, args.steps, scan_blocks=scan),
                   step_time("resnet110_cifar", args.batch, args.steps, scan_blocks=scan, **sd))
    none, drop = times[scan]
    row(f"ResNet-110 step{', scan_blocks=True' if scan else ''}, per-batch stochastic depth "
        f"p_L=0.5 vs none (mean of {args.steps} steps, batch {args.batch})",
        f"{drop:.3f} s", f"{none:.3f} s", drop / none, "<= 0.80")
  row("ResNet-110 step without stochastic depth, scan_blocks=True vs unscanned",
      f"{times[True][0]:.3f} s", f"{times[False][0]:.3f} s", times[True][0] / times[False][0],
      "(none)")

if __name__ == "__main__":
  main()
