"""Declaring a sweep: axes of overrides (product, zip, chain, seeds), the variants'
names, and the variants a config file (its get_sweep) or a base config declares."""
import builtins
import itertools
import os
import types
from typing import Dict, List, Sequence

import ml_collections

from flaxcnn import config as config_lib

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


def short_name(field: str) -> str:
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
  name = ",".join(f"{short_name(k)}={_fmt(v)}" for k, v in overrides.items())
  return "".join(c if c.isalnum() or c in "=,._-" else "_" for c in name)


# Overrides are applied by the config module (sweeps, progressive stages, tests).
apply_overrides = config_lib.apply_overrides


def _split_source(source, arg: str = ""):
  """(module, path, arg) of a config file path, 'path:arg' string or module."""
  if isinstance(source, types.ModuleType):
    return source, getattr(source, "__file__", None), arg
  if not isinstance(source, (str, os.PathLike)):
    raise TypeError(f"sweep: expected a config file path or module, got {type(source).__name__}")
  try:
    module, path, file_arg = config_lib.load_config_file(source)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"sweep: {e}") from None
  if arg and file_arg and file_arg != arg:
    raise ValueError(f"sweep: config argument given twice ({file_arg!r} and {arg!r})")
  return module, path, file_arg or arg


def _call(fn, arg: str):
  """fn(arg) if an argument was given, fn() otherwise (as --config=file.py:arg does)."""
  return fn(arg) if arg else fn()


def load_module(path: str):
  """Imports a config file by path (config.load_config_module)."""
  return config_lib.load_config_module(path)


def overrides_of(path, arg: str = "") -> List[Overrides]:
  """The sweep declared by the config file (a single empty variant if none).

  `path` may also be 'path:arg' or an imported config module.
  """
  module, _, arg = _split_source(path, arg)
  if not hasattr(module, "get_sweep"):
    return [{}]
  try:
    return list(_call(module.get_sweep, arg))
  except TypeError:
    return list(module.get_sweep())


def variant_specs(source, arg: str = "", config=None, sweep=None):
  """[(name, overrides, config)] of a sweep, checked for duplicate names."""
  if isinstance(source, ml_collections.ConfigDict):
    if config is not None:
      raise ValueError("sweep: pass the base config either as the source or as config=")
    base, label = source, "the sweep"
    overrides = [{}] if sweep is None else list(sweep)
  else:
    module, path, arg = _split_source(source, arg)
    label = path or getattr(module, "__name__", "the sweep")
    base = config if config is not None else _call(module.get_config, arg)
    overrides = list(sweep) if sweep is not None else overrides_of(module, arg)
  if not overrides:
    raise ValueError(f"sweep in {label}: no variants")
  out, seen = [], set()
  for ov in overrides:
    ov = dict(ov)
    name = variant_name(ov)
    if name in seen:
      raise ValueError(f"sweep in {label}: variant {name!r} appears twice")
    seen.add(name)
    out.append((name, ov, apply_overrides(base, ov)))
  return out


def variants(path, arg: str = "", config=None, sweep=None):
  """[(name, config)] of every variant a sweep declares.

  `path` is a config file (its `get_sweep(arg)`), 'path:arg', an imported config
  module, or a base ConfigDict together with `sweep=` (a list of overrides).
  `config` replaces the file's get_config(arg) as the base (e.g. the command line's
  config with its --config.* overrides); `sweep` replaces the file's get_sweep.
  """
  return [(name, cfg) for name, _, cfg in variant_specs(path, arg, config, sweep)]


def source_path(source):
  """The config file of a sweep as sweep.json records it and launched jobs get it: an
  absolute path (the paper comparison works from any directory), with its ':arg'."""
  if isinstance(source, ml_collections.ConfigDict):
    return None
  if isinstance(source, types.ModuleType):
    return getattr(source, "__file__", source.__name__)
  path, arg = config_lib.split_source(source)
  return os.path.abspath(path) + (":" + arg if arg else "")


def check_command_line(config_arg: str, config, fields, specs=None) -> None:
  """A ValueError naming the first command-line override (`fields`, dotted) that a
  variant of the sweep sets again: the variant's value would silently win. `specs`:
  the sweep's variant_specs, when the caller has them."""
  if specs is None:
    specs = variant_specs(config_arg, config=config)
  for name, overrides, _ in specs:
    clash = sorted(set(fields) & set(overrides))
    if clash:
      raise ValueError(f"--config.{clash[0]} is set by the sweep itself (variant {name} has "
                       f"{clash[0]}={overrides[clash[0]]!r}), which would replace the flag's "
                       "value; drop the flag, or run one setting without --sweep/--sweep_index")
