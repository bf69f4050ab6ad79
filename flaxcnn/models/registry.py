"""A registry of named model presets, timm-style.

A preset is a model class plus the keyword arguments that make it a model of a
paper's table, and the input size the paper evaluates it at. Configs select a
preset by name and may override any keyword (`num_classes`, `dtype`, widths, ...):

    model = create_model("resnet50", num_classes=10, dtype=jnp.bfloat16)
"""
import dataclasses
import difflib
import inspect
from typing import Any, Callable, Dict, List

import flax.linen as nn

from flaxcnn.models import regularization


@dataclasses.dataclass(frozen=True)
class Preset:
  name: str
  constructor: Callable[..., nn.Module]
  kwargs: Dict[str, Any]
  image_size: int
  num_classes: int
  paper: str = ""


_PRESETS: Dict[str, Preset] = {}


def register(name: str, constructor, *, image_size: int, num_classes: int,
             paper: str = "", **kwargs) -> None:
  """Registers `name` as `constructor(num_classes=num_classes, **kwargs)`."""
  if name in _PRESETS:
    raise ValueError(f"model preset {name!r} is registered twice")
  _PRESETS[name] = Preset(name, constructor, dict(kwargs), image_size,
                          num_classes, paper)


def _load_families() -> None:
  # Importing the family modules registers their presets.
  from flaxcnn.models import _families  # noqa: F401


def get_preset(name: str) -> Preset:
  _load_families()
  if name not in _PRESETS:
    bare = name.replace("_", "").lower()   # resnet_20 -> resnet20_cifar
    close = sorted(p for p in _PRESETS if p.replace("_", "").startswith(bare))[:3] or \
        difflib.get_close_matches(name, _PRESETS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else (
        " See `python -m flaxcnn.models.summary --list`.")
    raise ValueError(f"model.name: unknown model preset {name!r}.{hint}")
  return _PRESETS[name]


def list_models(prefix: str = "") -> List[str]:
  _load_families()
  return sorted(n for n in _PRESETS if n.startswith(prefix))


def create_model(name: str, **overrides) -> nn.Module:
  """Builds preset `name`, with `overrides` replacing its keyword arguments.

  Regularizer keywords (`dropout`, `stochastic_depth`, `dropblock_keep_prob`, ...:
  the fields of `regularization.Regularization`) are gathered into the model's
  `regularization` value, over the family's defaults."""
  preset = get_preset(name)
  kwargs = dict(num_classes=preset.num_classes, **preset.kwargs)
  kwargs.update(overrides)
  kwargs, reg = regularization.pack(kwargs)
  try:
    model = preset.constructor(**kwargs)
  except TypeError as e:
    raise ValueError(f"model.kwargs: preset {name!r} does not accept these "
                     f"arguments ({e}).") from None
  if not reg:
    return model
  if not isinstance(getattr(model, "regularization", None), regularization.Regularization):
    raise ValueError(f"model.kwargs: preset {name!r} takes no regularizer ({', '.join(reg)})")
  return model.clone(regularization=model.regularization.override(**reg))


NO_DEFAULT = object()


def keyword_default(name: str, key: str):
  """The value preset `name` gives keyword `key`: its own setting, else the built
  model's field, else the factory function's default; NO_DEFAULT when none has it."""
  preset = get_preset(name)
  if key == "num_classes":
    return preset.num_classes
  if key in preset.kwargs:
    return preset.kwargs[key]
  model = create_model(name)
  if key in regularization.Regularization.fields() and hasattr(model, "regularization"):
    return getattr(model.regularization, key)
  if key in {f.name for f in dataclasses.fields(model)} - {"parent", "name"}:
    return getattr(model, key)
  parameter = inspect.signature(preset.constructor).parameters.get(key)
  if parameter is not None and parameter.default is not inspect.Parameter.empty:
    return parameter.default
  return NO_DEFAULT
