"""The regularizers a network applies, as one frozen value every family takes once.

    reg = Regularization(stochastic_depth=0.5, stochastic_depth_per="batch")
    model = resnet.cifar_resnet(110, regularization=reg)

Configs and presets give the same settings as flat keywords (`create_model(
"resnet110_cifar", stochastic_depth=0.5)`, `--config.model.kwargs.dropout=0.3`);
`registry.create_model` gathers them into the model's value with `override`.

A family reads the fields it implements and refuses the others (`check`): where
`dropout` acts is the family's (before the classifier in ResNet, PyramidNet and
EfficientNet, between a block's convolutions in WRN, after every convolution in
DenseNet, at the U-Net's bottom).

Each regularizer is declared once, in REGULARIZERS: its fields, when it is on and
the checks of its values. A new one is one `register(Regularizer(...))` call with
its fields' defaults, from any module; its values then travel in the same
`Regularization` (`reg.<field>`, `override(<field>=...)`, `model.kwargs.<field>`),
and the families that implement it name it in their `check`:

    register(Regularizer("feature_noise", ("feature_noise_std",),
                         on=lambda reg: reg.feature_noise_std > 0),
             feature_noise_std=0.0)
"""
import dataclasses
from typing import Any, Callable, Optional, Sequence, Tuple

import jax.numpy as jnp

from flaxcnn.models import layers


@dataclasses.dataclass(frozen=True)
class Regularizer:
  """One regularizer: the fields of Regularization it reads, when it is on, and the
  checks of its values. A family lists the regularizers it implements by `name`."""
  name: str
  fields: Tuple[str, ...]
  on: Callable                        # Regularization -> bool: it acts
  check: Callable = lambda reg: None  # Regularization -> None, or ValueError
  exclusive: bool = False             # a family without it refuses its fields changed
  title: str = ""                     # its name in messages (default: `name`)
  defaults: Tuple[Tuple[str, Any], ...] = ()  # (field, default) of a registered one


def _check_dropout(reg) -> None:
  if not 0.0 <= reg.dropout <= 1.0:
    raise ValueError(f"dropout: must be in [0, 1], got {reg.dropout}")


def _check_stochastic_depth(reg) -> None:
  if not 0.0 < reg.stochastic_depth <= 1.0:
    raise ValueError(f"stochastic_depth: the last block's survival probability must be in "
                     f"(0, 1], got {reg.stochastic_depth}")
  if reg.stochastic_depth_decay not in ("linear", "constant"):
    raise ValueError(f"stochastic_depth_decay: use 'linear' or 'constant', got "
                     f"{reg.stochastic_depth_decay!r}")
  layers.check_stochastic_depth(reg.stochastic_depth_mode, reg.stochastic_depth_per)


def _check_dropblock(reg) -> None:
  if not 0.0 < reg.dropblock_keep_prob <= 1.0:
    raise ValueError(f"dropblock_keep_prob: must be in (0, 1], got {reg.dropblock_keep_prob}")
  if reg.dropblock_keep_prob < 1.0 and not reg.dropblock_stages:
    raise ValueError(f"dropblock_keep_prob={reg.dropblock_keep_prob} applies to no stage: "
                     "set dropblock_stages (the DropBlock paper's ResNet-50: (3, 4))")
  if reg.dropblock_size < 1 or (reg.dropblock_ramp_steps or 0) < 0:
    raise ValueError(f"dropblock_size must be >= 1 and dropblock_ramp_steps >= 0, got "
                     f"{reg.dropblock_size} and {reg.dropblock_ramp_steps}")
  if reg.dropblock_schedule not in DROPBLOCK_SCHEDULES:
    raise ValueError(f"dropblock_schedule={reg.dropblock_schedule!r} is not one of "
                     f"{', '.join(DROPBLOCK_SCHEDULES)}")


STOCHASTIC_DEPTH = ("stochastic_depth", "stochastic_depth_decay", "stochastic_depth_mode",
                    "stochastic_depth_per")
DROPBLOCK = ("dropblock_keep_prob", "dropblock_size", "dropblock_per_channel",
             "dropblock_stages", "dropblock_ramp_steps")
DROPBLOCK_SCHEDULES = ("linear", "fixed")

# Every regularizer a family may implement, by name; Regularization's checks iterate it.
REGULARIZERS = {r.name: r for r in (
    Regularizer("dropout", ("dropout",), on=lambda reg: reg.dropout > 0, check=_check_dropout),
    Regularizer("stochastic_depth", STOCHASTIC_DEPTH, on=lambda reg: reg.stochastic_depth < 1.0,
                check=_check_stochastic_depth),
    Regularizer("dropblock", DROPBLOCK, on=lambda reg: reg.dropblock_keep_prob < 1.0,
                check=_check_dropblock, exclusive=True, title="DropBlock"),
)}


def register(regularizer: Regularizer, **defaults) -> Regularizer:
  """Adds `regularizer` to REGULARIZERS with its fields' `defaults` (every field it
  reads): Regularization then takes those fields like its own. Returns it."""
  if regularizer.name in REGULARIZERS:
    raise ValueError(f"regularizer {regularizer.name!r} is already registered")
  if set(defaults) != set(regularizer.fields):
    raise ValueError(f"regularizer {regularizer.name!r}: give a default for each of its "
                     f"fields {list(regularizer.fields)}, got {sorted(defaults)}")
  taken = set(defaults) & set(Regularization.fields())
  if taken:
    raise ValueError(f"regularizer {regularizer.name!r}: fields {sorted(taken)} are taken")
  regularizer = dataclasses.replace(regularizer, defaults=tuple(sorted(defaults.items())))
  REGULARIZERS[regularizer.name] = regularizer
  return regularizer


def _registered_defaults() -> dict:
  """{field: default} of the regularizers added with `register`."""
  return {k: v for r in REGULARIZERS.values() for k, v in r.defaults}

# Settings that come from the run rather than the model's keywords: the top-level
# config fields of the same names, and the run's length (`build_model` passes them).
FROM_CONFIG = ("dropblock_schedule",)


@dataclasses.dataclass(frozen=True)
class Regularization:
  """Dropout, stochastic depth and DropBlock settings of a network (REGULARIZERS).

  - dropout: the family's dropout rate (see the module doc for where it acts).
  - stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth"):
    `stochastic_depth` is the survival probability p_L of the last block (1 = off),
    decaying linearly from 1 over the blocks or `constant`; `mode` "train_scale"
    divides a kept branch by p in training, "inference_scale" (the paper's)
    multiplies it by p at inference; `per` "example" draws per example (timm),
    "batch" once per block and mini-batch, skipping dropped blocks (the paper's).
  - DropBlock (Ghiasi et al. 2018, "DropBlock: A regularization method for
    convolutional networks"): keep probability, block size, per-channel masks,
    the (1-based) stages it acts in, and its ramp: the keep probability goes
    linearly from 1 to its target over `dropblock_ramp_steps` training steps (the
    paper's schedule; 0: the target from the first step); unset (None), over the
    run's `train_steps` when `dropblock_schedule` is "linear", else no ramp ("fixed").
  - train_steps: the run's length in steps (0: unknown), which ramps follow.
  - extra: the values of registered regularizers' fields (`register`) that differ
    from their defaults, as sorted (field, value) pairs; read them as attributes.
  """
  dropout: float = 0.0
  stochastic_depth: float = 1.0
  stochastic_depth_decay: str = "linear"
  stochastic_depth_mode: str = "train_scale"
  stochastic_depth_per: str = "example"
  dropblock_keep_prob: float = 1.0
  dropblock_size: int = 7
  dropblock_per_channel: bool = False
  dropblock_stages: Tuple[int, ...] = ()
  dropblock_ramp_steps: Optional[int] = None
  dropblock_schedule: str = "linear"
  train_steps: int = 0
  extra: Tuple[Tuple[str, Any], ...] = ()

  def __post_init__(self):
    object.__setattr__(self, "dropblock_stages", tuple(int(s) for s in self.dropblock_stages))
    registered = _registered_defaults()
    unknown = [k for k, _ in self.extra if k not in registered]
    if unknown:
      raise ValueError(f"{', '.join(unknown)}: no registered regularizer has this field")
    object.__setattr__(self, "extra", tuple(sorted(
        (k, v) for k, v in self.extra if v != registered[k])))
    for regularizer in REGULARIZERS.values():
      regularizer.check(self)

  def __getattr__(self, name):
    # Only for names that are not dataclass fields: the registered regularizers' fields.
    if name.startswith("__") or name == "extra":
      raise AttributeError(name)
    registered = _registered_defaults()
    if name not in registered:
      raise AttributeError(f"Regularization has no field {name!r}")
    return dict(self.extra).get(name, registered[name])

  @classmethod
  def fields(cls) -> Tuple[str, ...]:
    """Every field a config may set: the built-in ones and the registered ones."""
    own = tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")
    return own + tuple(_registered_defaults())

  def override(self, **changes) -> "Regularization":
    """A copy with `changes` (flat keywords, as configs give them)."""
    registered = _registered_defaults()
    extra = dict(self.extra)
    extra.update({k: v for k, v in changes.items() if k in registered})
    own = {k: v for k, v in changes.items() if k not in registered}
    return dataclasses.replace(self, extra=tuple(extra.items()), **own)

  def check(self, family: str, num_stages: int, uses: Sequence[str],
            full_dropout: bool = False) -> None:
    """Refuses settings that `family` would ignore; `uses` lists the groups it
    implements ("dropout", "stochastic_depth", "dropblock"). A dropout rate of 1
    is refused unless `full_dropout` (WRN's in-block dropout: the branch dropped)."""
    if self.dropout >= 1.0 and not full_dropout:
      raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")
    default = Regularization()
    for regularizer in REGULARIZERS.values():
      if regularizer.name in uses:
        continue
      if regularizer.on(self):
        raise ValueError(f"{regularizer.name}: {family} has no "
                         f"{regularizer.name.replace('_', ' ')}; it uses "
                         f"{', '.join(uses) or 'no regularizer'}")
      if regularizer.exclusive and any(getattr(self, f) != getattr(default, f)
                                       for f in regularizer.fields):
        raise ValueError(f"{regularizer.name}_*: {family} has no "
                         f"{regularizer.title or regularizer.name}")
    bad = [s for s in self.dropblock_stages if not 1 <= s <= num_stages]
    if bad:
      raise ValueError(f"dropblock_stages: stages are 1..{num_stages}, got {list(bad)}")

  def survival_probs(self, num_blocks: int):
    """Stochastic depth survival probability of blocks l = 1..L."""
    return [layers.survival_probability(l, num_blocks, self.stochastic_depth,
                                        self.stochastic_depth_decay)
            for l in range(1, num_blocks + 1)]

  def in_stage(self, stage: int) -> "Regularization":
    """The value a block of (1-based) `stage` takes: DropBlock off outside its stages."""
    if stage in self.dropblock_stages or self.dropblock_keep_prob >= 1.0:
      return self
    return dataclasses.replace(self, dropblock_keep_prob=1.0)

  def dropblock_ramp(self) -> int:
    """The steps over which DropBlock reaches its keep probability (0: no ramp)."""
    if self.dropblock_ramp_steps is not None:
      return self.dropblock_ramp_steps
    return self.train_steps if self.dropblock_schedule == "linear" else 0

  def dropblock_strength(self, step):
    """The fraction of DropBlock's drop rate applied at training `step` (None: the
    target): min(step / ramp, 1), or 1 without a ramp (`dropblock_ramp`)."""
    ramp = self.dropblock_ramp()
    if step is None or not ramp:
      return jnp.ones((), jnp.float32)
    return jnp.minimum(step / ramp, 1.0).astype(jnp.float32)

  def dropblock(self, y, train: bool, step, name: str):
    """DropBlock on `y` (the identity when it is off); call it inside a compact method."""
    if self.dropblock_keep_prob >= 1.0:
      return y
    return layers.DropBlock(self.dropblock_keep_prob, self.dropblock_size,
                            self.dropblock_per_channel, name=name)(
                                y, train, self.dropblock_strength(step))

  def residual(self, module, branch_fn, x, shortcut, *, train: bool, survival_prob):
    """shortcut + branch under this stochastic depth (layers.stochastic_residual)."""
    return layers.stochastic_residual(module, branch_fn, x, shortcut, train=train,
                                      survival_prob=survival_prob,
                                      mode=self.stochastic_depth_mode,
                                      per=self.stochastic_depth_per)


def gather(kwargs: dict) -> dict:
  """`kwargs` with its regularizer keywords folded into `regularization` (over the
  one given, else the defaults): for factories that build a family's module."""
  kwargs, flat = pack(kwargs)
  if flat:
    kwargs["regularization"] = kwargs.get("regularization", Regularization()).override(**flat)
  return kwargs


def pack(kwargs: dict) -> Tuple[dict, dict]:
  """(model keywords, regularization keywords) of flat keywords."""
  names = set(Regularization.fields())
  return ({k: v for k, v in kwargs.items() if k not in names},
          {k: v for k, v in kwargs.items() if k in names})
