"""Compute figures of the papers' cost claims, each pair measured in one run on this machine.

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
3. What skipping can save on this machine: the step with every block of one
   stage forced to run (survival 0.99999) or to drop (0.001), which gives each
   stage's cost, and from those the ratio linear p_L = 0.5 is expected to reach
   (ours, and with free skips and no cond overhead). The stages differ on a CPU
   (memory-bound BN/ReLU passes scale with H*W*C, which halves per stage)
   although their FLOPs are equal.
Synthetic float32 32x32 batches; parameters filled on the host (no jitted init).
The variants of one comparison are compiled first, then timed in alternation
(two steps each per round, the same dropout keys for all), so that the
machine's drift falls on every variant alike.
"""
import argparse
import contextlib
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from flaxcnn import backend  # noqa: E402
from flaxcnn.models import create_model, layers  # noqa: E402

backend.configure()   # the CPU tuning, as launch.py


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
  lowered = jax.jit(_step_fn(model), compiler_options=backend.compiler_options()).lower(v, x, y, jax.random.PRNGKey(0))
  t1 = time.perf_counter()
  lowered.compile()
  t2 = time.perf_counter()
  return t1 - t0, t2 - t1


def step_times(variants, batch, steps):
  """Mean step time of each `label -> (model name, kwargs[, forced blocks])`, timed in
  alternation. With forced blocks, those blocks always drop and all others always
  run (`forced_survival`)."""
  x, y = _batch(batch)
  runs = {}
  for label, (name, kwargs, *forced) in variants.items():
    with forced_survival(*forced) if forced else contextlib.nullcontext():
      model = create_model(name, **kwargs)
      step = jax.jit(_step_fn(model), donate_argnums=0,
                     compiler_options=backend.compiler_options())
      v = _variables(model, batch)
      for i in range(2):  # compile (survival probabilities are read here) + warm-up
        v, loss = step(v, x, y, jax.random.PRNGKey(1000 + i))
      jax.block_until_ready(loss)
    runs[label] = [step, v, 0.0]
  for start in range(0, steps, 2):
    for run in runs.values():
      t = time.perf_counter()
      for i in range(start, min(start + 2, steps)):
        run[1], loss = run[0](run[1], x, y, jax.random.PRNGKey(i))
      jax.block_until_ready(loss)
      run[2] += time.perf_counter() - t
  return {label: run[2] / steps for label, run in runs.items()}


@contextlib.contextmanager
def forced_survival(blocks):
  """ResNet's blocks `blocks` (l in 1..L) always drop, all others always run."""
  original = layers.survival_probability
  layers.survival_probability = lambda l, *_, **__: 0.001 if l in blocks else 0.99999
  try:
    yield
  finally:
    layers.survival_probability = original


def expected_compute(p_L: float, blocks: int) -> float:
  """The share of residual branches computed under linear decay to p_L (Huang et al.
  2016, Eq. 4: block l survives with 1 - l / L (1 - p_L)), the stem and head aside."""
  return float(np.mean([1 - l / blocks * (1 - p_L) for l in range(1, blocks + 1)]))


def sd_curve(args):
  """Step time with per-batch stochastic depth at each p_L, over the step without it
  (p_L = 1 is the model without stochastic depth), timed in alternation."""
  t0 = time.time()
  p_ls = [float(p) for p in args.p_L.split(",")]
  variants = {p: (args.model, {} if p == 1.0 else dict(stochastic_depth=p,
                                                       stochastic_depth_per="batch"))
              for p in p_ls}
  t = step_times(variants, args.batch, args.steps)
  base = t.get(1.0) or step_times({1.0: (args.model, {})}, args.batch, args.steps)[1.0]
  blocks = sum(create_model(args.model).stage_sizes)
  print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__}; {args.model}, batch {args.batch}, mean of {args.steps} steps")
  out = {"model": args.model, "batch": args.batch, "steps": args.steps, "p_L": p_ls,
         "step_s": [t[p] for p in p_ls], "ratio": [t[p] / base for p in p_ls]}
  out["expected"] = [expected_compute(p, blocks) for p in p_ls]
  for p, s, r, e in zip(p_ls, out["step_s"], out["ratio"], out["expected"]):
    print(f"p_L={p:<5g} step {s:.3f} s  {r:.3f}x the step without (branches kept {e:.3f})")
  out["seconds"] = time.time() - t0
  out["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--skip_compile", action="store_true", help="no compile-time row")
  parser.add_argument("--skip_stages", action="store_true", help="no per-stage cost rows")
  parser.add_argument("--sd_curve", action="store_true",
                      help="only the step time of per-batch stochastic depth vs p_L")
  parser.add_argument("--p_L", default="1.0,0.9,0.75,0.5", help="--sd_curve's p_L values")
  parser.add_argument("--model", default="resnet110_cifar", help="--sd_curve's model")
  parser.add_argument("--json", default=None, help="--sd_curve: also write it to this file")
  args = parser.parse_args()
  if args.sd_curve:
    return sd_curve(args)
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
  for scan in (False, True):
    t = step_times({"none": ("resnet110_cifar", dict(scan_blocks=scan)),
                    "sd": ("resnet110_cifar", dict(scan_blocks=scan, **sd))},
                   args.batch, args.steps)
    row(f"ResNet-110 step{', scan_blocks=True' if scan else ''}, per-batch stochastic depth "
        f"p_L=0.5 vs none (mean of {args.steps} steps, batch {args.batch})",
        f"{t['sd']:.3f} s", f"{t['none']:.3f} s", t["sd"] / t["none"], "<= 0.80")
  if args.skip_stages:
    return
  # 3. Each stage's cost, from steps in which its 18 blocks always drop.
  stages = {"all run": (), "stage 1 dropped": range(1, 19), "stage 2 dropped": range(19, 37),
            "stage 3 dropped": range(37, 55), "all dropped": range(1, 55)}
  t = step_times({"none": ("resnet110_cifar", {}),
                  **{label: ("resnet110_cifar", sd, set(blocks))
                     for label, blocks in stages.items()}}, args.batch, args.steps)
  for label in stages:
    row(f"ResNet-110 step, per-batch SD forced: {label} vs without stochastic depth",
        f"{t[label]:.3f} s", f"{t['none']:.3f} s", t[label] / t["none"], "(none)")
  # Expected drop rate of each stage's blocks under linear decay to p_L = 0.5.
  drop = {s: np.mean([l / 54 * 0.5 for l in stages[f"stage {s} dropped"]]) for s in (1, 2, 3)}
  saved = {s: t["all run"] - t[f"stage {s} dropped"] for s in (1, 2, 3)}
  ours = t["all run"] - sum(drop[s] * saved[s] for s in drop)
  free = 1 - sum(drop[s] * saved[s] / t["all run"] for s in drop)
  row("ResNet-110 step, linear p_L=0.5 expected from these stage costs vs without "
      f"stochastic depth (with free skips: {free:.2f}x)", f"{ours:.3f} s",
      f"{t['none']:.3f} s", ours / t["none"], "<= 0.80")


if __name__ == "__main__":
  main()
