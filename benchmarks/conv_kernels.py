"""The 3x3 convolutions of a CIFAR ResNet on this CPU: XLA's kernels against PyTorch's.

  python benchmarks/conv_kernels.py                 # batch 128, the three stages
  python benchmarks/conv_kernels.py --batch=64 --json=runs/conv_kernels.json

A CIFAR ResNet's training step is mostly its 3x3 stride-1 convolutions (16, 32 and
64 channels on 32x32, 16x16 and 8x8 maps). For one such convolution at each stage
this times, in one process and alternating rounds:

- XLA (the CPU tuning of `flaxcnn.backend` on, as the trainer): the forward
  convolution, the input gradient (dx) and the weight gradient (dw), each its own
  jitted function of `backend.conv_general_dilated` and its VJP, as the trainer's
  step computes them; and the weight gradient's convolution alone, on operands
  already in the layout it needs (the rest of dw is the transposes of x and dy);
- PyTorch, channels_last: the forward convolution, and forward + backward (dx and
  dw) less the forward.

and prints milliseconds and GFLOP/s (2 * N * H * W * 9 * C_in * C_out per pass).
PyTorch is optional. The step's gap to PyTorch (benchmarks/cpu_vs_torch.py) is
these kernels' gap: the rest of the step is elementwise and reduction passes.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from flaxcnn import backend  # noqa: E402

backend.configure()   # the CPU tuning, as launch.py

try:
  import torch
except ImportError:   # the benchmark still times XLA
  torch = None

STAGES = ((16, 32), (32, 16), (64, 8))   # (channels, height = width)


def _conv(x, w):
  return backend.conv_general_dilated(x, w, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def xla_passes(batch, c, h):
  """name -> (function, arguments) of XLA's passes of one convolution."""
  rng = np.random.RandomState(0)
  x = jnp.asarray(rng.randn(batch, h, h, c).astype(np.float32))
  w = jnp.asarray(rng.randn(3, 3, c, c).astype(np.float32) * 0.1)
  dy = jnp.asarray(rng.randn(batch, h, h, c).astype(np.float32))
  xt, dyt = x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3)
  return {
      "fwd": (jax.jit(_conv), (x, w)),
      "dx": (jax.jit(lambda w, dy: jax.vjp(lambda x: _conv(x, w), x)[1](dy)[0]), (w, dy)),
      "dw": (jax.jit(lambda x, dy: jax.vjp(lambda w: _conv(x, w), w)[1](dy)[0]), (x, dy)),
      "dw conv alone": (jax.jit(lambda xt, dyt: jax.lax.conv_general_dilated(
          xt, dyt, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))),
          (xt, dyt)),
  }


def torch_passes(batch, c, h):
  """name -> (function, arguments) of PyTorch's passes (channels_last)."""
  conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
  x = torch.randn(batch, c, h, h).to(memory_format=torch.channels_last).requires_grad_(True)
  dy = torch.randn(batch, c, h, h).to(memory_format=torch.channels_last)

  def fwd():
    with torch.no_grad():
      return conv(x)

  def fwd_bwd():
    conv.zero_grad(set_to_none=True)
    x.grad = None
    conv(x).backward(dy)
    return conv.weight.grad

  return {"torch fwd": (fwd, ()), "torch fwd+bwd": (fwd_bwd, ())}


def _time(fn, args):
  t = time.perf_counter()
  out = fn(*args)
  if isinstance(out, jax.Array):
    out.block_until_ready()
  return time.perf_counter() - t


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=4, help="calls of each pass per round")
  parser.add_argument("--json", default="", help="also write the rows to this file")
  args = parser.parse_args()
  versions = f"jax {jax.__version__}" + (f", torch {torch.__version__}" if torch else
                                         ", torch not installed (XLA only)")
  print(f"machine: {backend.host_description()}; {versions}; float32, batch {args.batch}, "
        f"best of {args.rounds} rounds of {args.steps}")
  rows = []
  for c, h in STAGES:
    passes = xla_passes(args.batch, c, h)
    if torch is not None:
      passes.update(torch_passes(args.batch, c, h))
    for fn, a in passes.values():   # compile and warm up
      _time(fn, a)
    best = {name: float("inf") for name in passes}
    for _ in range(args.rounds):
      for name, (fn, a) in passes.items():
        best[name] = min(best[name], min(_time(fn, a) for _ in range(args.steps)))
    if torch is not None:
      best["torch bwd"] = best.pop("torch fwd+bwd") - best["torch fwd"]
    flops = 2 * args.batch * h * h * 9 * c * c
    row = {"channels": c, "size": h,
           "ms": {k: round(v * 1e3, 3) for k, v in best.items()},
           "gflops": {k: round(flops / v / 1e9, 1) for k, v in best.items()}}
    rows.append(row)
    print(f"{c} channels, {h}x{h}: " + "; ".join(
        f"{k} {row['ms'][k]:.2f} ms ({row['gflops'][k]:.0f} GFLOP/s)" for k in best))
    xla = best["fwd"] + best["dx"] + best["dw"]
    if torch is not None:
      ours = xla / (best["torch fwd"] + best["torch bwd"])
      print(f"  fwd+dx+dw: XLA {xla * 1e3:.2f} ms, PyTorch {(best['torch fwd'] + best['torch bwd']) * 1e3:.2f} ms: {ours:.2f}x")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"machine": backend.host_description(), "versions": versions,
                 "batch": args.batch, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()
