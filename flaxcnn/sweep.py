"""Sweeps: a config file declares its variants as products and zips of overrides.

An experiment file may define, next to `get_config(arg)`, a `get_sweep(arg)` that
returns a list of override dicts (dotted field names), built with these helpers:

    from flaxcnn import sweep

    def get_sweep(arg=""):
      return sweep.product(
          sweep.axis("model.kwargs.k", [1, 2, 4, 8]),   # WRN widening factor
          sweep.seeds(3))

Each variant is the base config with its overrides applied; its name is made of
the overrides ("k=4,seed=1"), and it runs in WORKDIR/<name>/.
"""
import builtins
import importlib.util
import itertools
import os
from typing import Dict, List, Sequence

Overrides = Dict[str, object]


def axis(field: str, values: Sequence) -> List[Overrides]:
  """One swept field: [{field: v} for v in values]."""
  return [{field: v} for v in values]


def seeds(n: int, start: int = 0) -> List[Overrides]:
  """`n` seeds (repeats of every variant)."""
  return axis("seed", list(range(start, start + n)))


def product(*axes: List[Overrides]) -> List[Overrides]:
  """Every combination of the given axes (the first varies slowest)."""
  out = []
  for combo in itertools.product(*axes):
    merged = {}
    for d in combo:
      merged.update(d)
    out.append(merged)
  return out


def zip(*axes: List[Overrides]) -> List[Overrides]:  # noqa: A001 (sweep.zip reads well)
  """Element-wise combination of axes of equal length (fields that move together)."""
  lengths = {len(a) for a in axes}
  if len(lengths) != 1:
    raise ValueError(f"sweep.zip: axes have different lengths {sorted(lengths)}")
  return [dict(kv for d in ds for kv in d.items()) for ds in builtins.zip(*axes)]


def chain(*sweeps: List[Overrides]) -> List[Overrides]:
  """Concatenation of sweeps (e.g. a baseline plus a grid)."""
  return [d for s in sweeps for d in s]


def _short(field: str) -> str:
  return field.split(".")[-1]


def _fmt(value) -> str:
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, (tuple, list)):
    return "x".join(_fmt(v) for v in value)
  return str(value)


def variant_name(overrides: Overrides) -> str:
  """A readable, filesystem-safe name for a variant: 'k=4,seed=1'."""
  if not overrides:
    return "base"
  name = ",".join(f"{_short(k)}={_fmt(v)}" for k, v in overrides.items())
  return "".join(c if c.isalnum() or c in "=,._-" else "_" for c in name)


def apply_overrides(config, overrides: Overrides):
  """A copy of `config` with dotted-field overrides applied (type-checked)."""
  import copy
  config = copy.deepcopy(config)
  for field, value in overrides.items():
    node = config
    parts = field.split(".")
    for p in parts[:-1]:
      if p not in node:
        raise ValueError(f"sweep override {field!r}: config has no field {p!r}")
      node = node[p]
    if parts[-1] not in node and not (parts[-2:-1] == ["kwargs"]):
      raise ValueError(f"sweep override {field!r}: config has no field {parts[-1]!r}")
    if isinstance(value, list):
      value = tuple(value)
    node[parts[-1]] = value
  return config


def load_module(path: str):
  """Imports a config file by path."""
  path = os.path.abspath(path)
  name = "flaxcnn_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def overrides_of(path: str, arg: str = "") -> List[Overrides]:
  """The sweep declared by the config file (a single empty variant if none)."""
  module = load_module(path)
  if not hasattr(module, "get_sweep"):
    return [{}]
  try:
    return list(module.get_sweep(arg)) if arg else list(module.get_sweep())
  except TypeError:
    return list(module.get_sweep())


def variants(path: str, arg: str = "", config=None):
  """[(name, config)] of every variant the config file at `path` declares.

  `config` is the base config (default: the file's get_config(arg)).
  """
  module = load_module(path)
  if config is None:
    config = module.get_config(arg) if arg else module.get_config()
  out, seen = [], set()
  for ov in overrides_of(path, arg):
    name = variant_name(ov)
    if name in seen:
      raise ValueError(f"sweep in {path}: variant {name!r} appears twice")
    seen.add(name)
    out.append((name, apply_overrides(config, ov)))
  return out
