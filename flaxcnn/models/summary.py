"""Parameter counts and multiply-adds of the model presets, computed from the models.

    python -m flaxcnn.models.summary --all
    python -m flaxcnn.models.summary resnet50 wrn28_10 efficientnet_b0
    python -m flaxcnn.models.summary --list
    python -m flaxcnn.models.summary --all --jobs=1   # one process (default: one per core)
    python -m flaxcnn.models.summary resnet20_cifar --params   # parameter paths, shapes
    python -m flaxcnn.models.summary resnet50 --image_size=160

Both are counted from one trace of the model's initialization (no compilation,
no tables, no memory): parameters from the shapes of the variables it returns,
multiply-adds from its jaxpr:
every convolution contributes out_elements * kh * kw * in_channels / groups and
every dense/matmul out_elements * contracted size, at the preset's input size and
batch 1, in inference mode. Element-wise work (BN, activations, pooling) is not
counted, as in the papers.
"""
import argparse
import concurrent.futures
import multiprocessing
import os
import sys
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from flaxcnn.models import registry


def _macs_of_jaxpr(jaxpr) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    prim = eqn.primitive.name
    if prim == "conv_general_dilated":
      lhs, rhs = (v.aval for v in eqn.invars)
      out = eqn.outvars[0].aval
      dn = eqn.params["dimension_numbers"]
      rhs_spec = dn.rhs_spec  # (out_ch, in_ch, spatial...)
      kernel_spatial = int(np.prod([rhs.shape[d] for d in rhs_spec[2:]]))
      in_per_group = rhs.shape[rhs_spec[1]]
      total += int(np.prod(out.shape)) * kernel_spatial * in_per_group
    elif prim == "dot_general":
      lhs = eqn.invars[0].aval
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      contracted = int(np.prod([lhs.shape[d] for d in lhs_contract]))
      total += int(np.prod(eqn.outvars[0].aval.shape)) * contracted
    inner = sum(_macs_of_jaxpr(sub) for sub in _sub_jaxprs(eqn.params))
    total += inner * (eqn.params["length"] if prim == "scan" else 1)
  return total


def _sub_jaxprs(params):
  for v in params.values():
    vs = v if isinstance(v, (tuple, list)) else (v,)
    for x in vs:
      if hasattr(x, "jaxpr") and hasattr(x, "consts"):   # ClosedJaxpr
        yield x.jaxpr
      elif hasattr(x, "eqns"):                           # Jaxpr
        yield x


def _input(image_size: int, channels: int):
  return jax.ShapeDtypeStruct((1, image_size, image_size, channels), jnp.float32)


def _init_fn(model):
  rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
  return lambda x: model.init_with_output(rngs, x, train=False)


def init_shapes(model, image_size: int, channels: int = 3):
  """Abstract variables of `model` (no memory, no compute)."""
  return jax.eval_shape(_init_fn(model), _input(image_size, channels))[1]


def _num_params(variables) -> int:
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(variables.get("params", {}))))


def count_params(model, image_size: int = 32, channels: int = 3) -> int:
  """Number of trainable parameters (the 'params' collection)."""
  return _num_params(init_shapes(model, image_size, channels))


def profile(model, image_size: int, channels: int = 3) -> Tuple[int, int]:
  """(parameters, multiply-adds at batch 1) from a single trace of `model.init`,
  whose jaxpr holds the forward pass (inference mode) beside the initializers
  (which contain no convolution or matmul)."""
  closed, (_, variables) = jax.make_jaxpr(_init_fn(model), return_shape=True)(
      _input(image_size, channels))
  return _num_params(variables), _macs_of_jaxpr(closed.jaxpr)


def count_macs(model, image_size: int, channels: int = 3) -> int:
  """Multiply-adds of one forward pass at batch 1, counted from the jaxpr."""
  return profile(model, image_size, channels)[1]


def summarize(name: str, image_size: Optional[int] = None) -> Tuple[str, int, int, int]:
  preset = registry.get_preset(name)
  size = image_size or preset.image_size
  try:   # repeated blocks traced once (nn.scan): the same counts, far faster for deep nets
    model = registry.create_model(name, scan_blocks=True)
  except ValueError as e:   # a family without repeated blocks (DenseNet, PyramidNet, ...)
    if "scan_blocks" not in str(e):
      raise
    model = registry.create_model(name)
  params, macs = profile(model, size)
  return name, params, macs, size


def summarize_many(names, image_size: Optional[int] = None, jobs: Optional[int] = None):
  """summarize(name) of each of `names`, in order, as they come; tracing is
  single-threaded, so `jobs` processes (default one per core) trace in parallel."""
  jobs = max(1, min(jobs or os.cpu_count() or 1, len(names)))
  sizes = [image_size] * len(names)
  if jobs == 1:
    yield from map(summarize, names, sizes)
    return
  # spawned, not forked; the workers need summarize by its module's name, also when
  # this module runs as __main__
  from flaxcnn.models.summary import summarize as work
  with concurrent.futures.ProcessPoolExecutor(
      jobs, multiprocessing.get_context("spawn")) as pool:
    yield from pool.map(work, names, sizes)


def param_paths(name: str, image_size: Optional[int] = None):
  """[(path 'a/b/kernel', shape)] of preset `name`'s parameters (what
  config.finetune.freeze regexes match)."""
  preset = registry.get_preset(name)
  variables = init_shapes(registry.create_model(name), image_size or preset.image_size)
  flat = jax.tree_util.tree_flatten_with_path(variables.get("params", {}))[0]
  return [("/".join(str(getattr(k, "key", k)) for k in path), tuple(x.shape))
          for path, x in flat]


def main(argv):
  """The command line; an unknown preset or flag raises before any work."""
  parser = argparse.ArgumentParser(prog="python -m flaxcnn.models.summary",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("presets", nargs="*", help="preset names (default: all)")
  parser.add_argument("--all", action="store_true", help="every preset")
  parser.add_argument("--list", action="store_true", help="print the preset names only")
  parser.add_argument("--params", action="store_true",
                      help="print each named preset's parameter paths and shapes")
  parser.add_argument("--image_size", type=int, default=None,
                      help="input side (default: each preset's own)")
  parser.add_argument("--jobs", type=int, default=None,
                      help="worker processes (default: one per core)")
  args = parser.parse_args(argv[1:])
  if args.list:
    print("\n".join(registry.list_models()))
    return 0
  names = registry.list_models() if args.all or not args.presets else args.presets
  for name in names:
    registry.get_preset(name)   # an unknown name fails before any work
  if args.params:
    for name in names:
      for path, shape in param_paths(name, args.image_size):
        print(f"{name:24s} {path:60s} {'x'.join(map(str, shape))}")
    return 0
  print(f"{'preset':40s} {'params':>14s} {'mult-adds':>10s} {'input':>6s}")
  for name, params, macs, size in summarize_many(names, args.image_size, args.jobs):
    print(f"{name:40s} {params:14,d} {macs / 1e9:9.3f}G {size:6d}", flush=True)
  return 0


if __name__ == "__main__":
  try:
    sys.exit(main(sys.argv))
  except ValueError as e:
    sys.exit(f"error: {e}")
