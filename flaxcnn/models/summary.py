"""Parameter counts and multiply-adds of the model presets, computed from the models.

    python -m flaxcnn.models.summary --all
    python -m flaxcnn.models.summary resnet50 wrn28_10 efficientnet_b0
    python -m flaxcnn.models.summary --list

Multiply-adds are counted from the model's own jaxpr (no compilation, no tables):
every convolution contributes out_elements * kh * kw * in_channels / groups and
every dense/matmul out_elements * contracted size, at the preset's input size and
batch 1, in inference mode. Element-wise work (BN, activations, pooling) is not
counted, as in the papers.
"""
import sys
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np


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
    for sub in _sub_jaxprs(eqn.params):
      total += _macs_of_jaxpr(sub)
  return total


def _sub_jaxprs(params):
  for v in params.values():
    vs = v if isinstance(v, (tuple, list)) else (v,)
    for x in vs:
      if hasattr(x, "jaxpr") and hasattr(x, "consts"):   # ClosedJaxpr
        yield x.jaxpr
      elif hasattr(x, "eqns"):                           # Jaxpr
        yield x


def init_shapes(model, image_size: int, channels: int = 3):
  """Abstract variables of `model` (no memory, no compute)."""
  x = jax.ShapeDtypeStruct((1, image_size, image_size, channels), jnp.float32)
  return jax.eval_shape(lambda: model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
      jnp.zeros(x.shape, x.dtype), train=False))


def count_params(model, image_size: int = 32, channels: int = 3) -> int:
  """Number of trainable parameters (the 'params' collection)."""
  variables = init_shapes(model, image_size, channels)
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(variables["params"])))


def count_macs(model, image_size: int, channels: int = 3) -> int:
  """Multiply-adds of one forward pass at batch 1, counted from the jaxpr."""
  variables = init_shapes(model, image_size, channels)
  x = jax.ShapeDtypeStruct((1, image_size, image_size, channels), jnp.float32)
  closed = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
  return _macs_of_jaxpr(closed.jaxpr)


def summarize(name: str, image_size: Optional[int] = None) -> Tuple[str, int, int, int]:
  from flaxcnn.models import registry
  preset = registry.get_preset(name)
  size = image_size or preset.image_size
  model = registry.create_model(name)
  return name, count_params(model, size), count_macs(model, size), size


def main(argv):
  from flaxcnn.models import registry
  args = [a for a in argv[1:] if not a.startswith("--")]
  if "--list" in argv:
    print("\n".join(registry.list_models()))
    return 0
  names = registry.list_models() if "--all" in argv or not args else args
  print(f"{'preset':40s} {'params':>14s} {'mult-adds':>10s} {'input':>6s}")
  for name in names:
    _, params, macs, size = summarize(name)
    print(f"{name:40s} {params:14,d} {macs / 1e9:9.3f}G {size:6d}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
