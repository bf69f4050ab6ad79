"""Imports ImageNet weights published for torchvision / timm models into flaxcnn.

    variables = pretrained.load("resnet50", "resnet50-11ad3fa6.pth")
    logits = create_model("resnet50").apply(variables, images, train=False)

    # fine-tuning: a new, freshly initialized 10-class head
    variables = pretrained.load("resnet50", "model.safetensors", num_classes=10)

Supported presets and the checkpoints whose architecture they match exactly
(`SUPPORTED` below; `python -m flaxcnn.pretrained --list`):

- resnet18/34/50/101/152:           torchvision resnet*, timm resnet* (same key layout:
                                     conv1, bn1, layer{1-4}.{i}.conv{1-3}/bn{1-3}/downsample, fc)
- resnext50_32x4d, resnext101_32x8d, resnext101_64x4d: torchvision / timm resnext*
- wrn50_2, wrn101_2:                torchvision / timm wide_resnet{50,101}_2
- densenet121/161/169/201:          torchvision / timm densenet* (the legacy
                                     `norm.1`-style keys of the old torchvision files too)
- efficientnet_b0..b7:              timm tf_efficientnet_b0..b7 (ported from the TF
                                     reference: TF 'SAME' padding, BN eps 1e-3)
- efficientnetv2_s/m/l:             timm tf_efficientnetv2_s/m/l

Not supported, because the architecture differs: torchvision's efficientnet_b*
and efficientnet_v2_* (and timm's non-`tf_` efficientnet_b*) pad symmetrically
((k-1)//2 on both sides), while flaxcnn's EfficientNets use TF 'SAME' padding,
which pads stride-2 convolutions on even inputs asymmetrically (0 before, 1
after); the outputs differ, so those files are refused with that reason. The
torch model must also be in the layout above (not a TorchScript archive).

Inputs: flaxcnn models take NHWC images; normalize them as the checkpoint was
trained (ImageNet mean/std for torchvision; timm's `pretrained_cfg`, which for
the tf_ models is mean = std = 0.5 for the V2 ones, ImageNet mean/std for B0-B7).

Files: `.safetensors` is read with the `safetensors` package's numpy API (no
torch needed), `.pth`/`.pt`/`.bin` needs PyTorch, `.npz` is a state dict saved
with numpy (`np.savez(path, **{k: v.numpy() for k, v in sd.items()})`).
`convert(preset_name, state_dict)` works on a dict of numpy arrays, so torch
is optional at run time.

Errors name what is wrong: the torch keys that are missing from the file, the
keys the file has that the model has no place for, and each shape mismatch.
"""
import argparse
import os
import re
import warnings
from typing import Dict, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from flaxcnn import models
from flaxcnn.models import densenet, efficientnet, layers, resnet

# preset -> the published checkpoints of that exact architecture.
SUPPORTED = {
    **{f"resnet{d}": f"torchvision resnet{d}, timm resnet{d}" for d in (18, 34, 50, 101, 152)},
    "resnext50_32x4d": "torchvision resnext50_32x4d, timm resnext50_32x4d",
    "resnext101_32x8d": "torchvision resnext101_32x8d, timm resnext101_32x8d",
    "resnext101_64x4d": "torchvision resnext101_64x4d, timm resnext101_64x4d",
    "wrn50_2": "torchvision wide_resnet50_2, timm wide_resnet50_2",
    "wrn101_2": "torchvision wide_resnet101_2, timm wide_resnet101_2",
    **{f"densenet{d}": f"torchvision densenet{d}, timm densenet{d}"
       for d in (121, 161, 169, 201)},
    **{f"efficientnet_b{i}": f"timm tf_efficientnet_b{i}" for i in range(8)},
    **{f"efficientnetv2_{v}": f"timm tf_efficientnetv2_{v}" for v in "sml"},
}

_IGNORED = re.compile(r"(^|\.)num_batches_tracked$")


class ConversionError(ValueError):
  """The state dict does not fit the flaxcnn model (missing/unexpected keys, shapes)."""


# ----------------------------------------------------------------------------- reading

def read_state_dict(path: str) -> Dict[str, np.ndarray]:
  """A torch state dict from `path` as {key: float32/int numpy array}.

  .safetensors: `safetensors.numpy` (no torch); .npz: numpy; .pth/.pt/.bin/.ckpt:
  `torch.load(weights_only=True)`. Wrappers of training checkpoints ('state_dict',
  'model', 'state_dict_ema') and DataParallel's 'module.' prefix are removed.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"pretrained weights {path} do not exist")
  try:
    sd = _read_raw(path)
  except (ImportError, ConversionError):
    raise
  except Exception as e:  # truncated, not of its suffix's format: many kinds
    kind = os.path.splitext(path)[1] or "weights"
    first = str(e).splitlines()[0][:160] if str(e) else ""
    raise ConversionError(f"pretrained weights {path} cannot be read as a {kind} file "
                          f"({type(e).__name__}: {first}); is it complete, and of the "
                          "format its name says (.safetensors, .npz, .pth/.pt)?") from None
  if sd and all(k.startswith("module.") for k in sd):
    sd = {k[len("module."):]: v for k, v in sd.items()}
  return sd


def _read_raw(path: str) -> Dict[str, np.ndarray]:
  lower = path.lower()
  if lower.endswith(".safetensors"):
    try:
      from safetensors.numpy import load_file
    except ImportError:
      raise ImportError("reading .safetensors needs the safetensors package "
                        "(pip install safetensors)") from None
    try:
      sd = load_file(path)
    except TypeError as e:  # bfloat16 and other dtypes numpy lacks
      sd = _read_safetensors_via_torch(path, e)
  elif lower.endswith(".npz"):
    with np.load(path, allow_pickle=False) as z:
      sd = {k: z[k] for k in z.files}
  else:
    try:
      import torch
    except ImportError:
      raise ImportError(f"reading {os.path.basename(path)} (a pickled torch checkpoint) "
                        "needs PyTorch (pip install torch); or save it as .safetensors "
                        "and read that without torch") from None
    with warnings.catch_warnings():   # torch's note on the pickle protocol: noise here
      warnings.simplefilter("ignore", UserWarning)
      obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema", "model_ema"):
      if isinstance(obj, dict) and isinstance(obj.get(key), dict):
        obj = obj[key]
        break
    if not isinstance(obj, dict):
      raise ConversionError(f"{path} holds a {type(obj).__name__}, not a state dict")
    sd = {k: _torch_to_numpy(v) for k, v in obj.items() if hasattr(v, "detach")}
  return sd


def _torch_to_numpy(t):
  t = t.detach().cpu()
  if t.is_floating_point():
    t = t.float()
  return t.numpy()


def _read_safetensors_via_torch(path, error):
  try:
    from safetensors.torch import load_file
  except ImportError:
    raise ImportError(f"{path}: numpy cannot hold its dtype ({error}); install torch "
                      "to read it") from None
  return {k: _torch_to_numpy(v) for k, v in load_file(path).items()}


# ----------------------------------------------------------------------------- key maps

def _leaf(path: Tuple[str, ...], module_key: str) -> Tuple[str, str]:
  """(torch key, transform) of the flax leaf `path` of a module named `module_key`."""
  leaf = path[-1]
  return module_key + "." + {"kernel": "weight", "scale": "weight", "bias": "bias",
                             "mean": "running_mean", "var": "running_var"}[leaf], leaf


def _resnet_keys(model):
  m = model
  unsupported = []
  if m.stem != "imagenet":   # (any stem_width and stage_planes: the same keys)
    unsupported.append(f"stem={m.stem!r}")
  if m.shortcut != "B" or m.shortcut_variant != "identity":
    unsupported.append(f"shortcut={m.shortcut!r}/{m.shortcut_variant!r}")
  if m.placement != "original":
    unsupported.append(f"placement={m.placement!r}")
  if m.se_reduction:
    unsupported.append(f"se_reduction={m.se_reduction}")
  if unsupported:
    raise ConversionError(f"no torchvision/timm layout for this ResNet ({', '.join(unsupported)})")

  def key(path):
    top = path[0]
    if top in ("stem_conv", "stem_bn"):
      return {"stem_conv": "conv1", "stem_bn": "bn1"}[top]
    if top == "head":
      return "fc"
    if top.startswith("stage"):                  # stage{s}_block{b}/conv{i}, bn{i}, shortcut
      stage, block = top[len("stage"):].split("_block")
      prefix = f"layer{stage}.{int(block) - 1}."
      if path[1] == "shortcut":
        return prefix + {"conv": "downsample.0", "bn": "downsample.1"}[path[2]]
      return prefix + path[1]
    raise KeyError(path)
  return key


def _densenet_keys(model):
  m = model
  if m.stem != "imagenet" or not m.bottleneck or m.bottleneck_width != 4:
    raise ConversionError("no torchvision/timm layout for this DenseNet (stem "
                          f"{m.stem!r}, bottleneck={m.bottleneck}, bottleneck_width="
                          f"{m.bottleneck_width}); only the ImageNet DenseNet-BC")

  def key(path):
    top = path[0]
    if top in ("stem_conv", "stem_bn"):
      return {"stem_conv": "features.conv0", "stem_bn": "features.norm0"}[top]
    if top == "final_norm":
      return "features.norm5"
    if top == "head":
      return "classifier"
    if top.startswith("block"):                  # block{b}/layer{l}/norm1, conv1, ...
      return f"features.denseblock{top[5:]}.denselayer{path[1][5:]}.{path[2]}"
    if top.startswith("transition"):
      return f"features.{top}.{path[1]}"
    raise KeyError(path)
  return key


def _efficientnet_keys(model):
  eff = efficientnet
  m = model
  if m.act not in ("swish", "silu") or m.depth_divisor != 8:
    raise ConversionError(f"no timm layout for this EfficientNet (act={m.act!r}, "
                          f"depth_divisor={m.depth_divisor})")
  # flax block{i} -> (timm stage, index in stage, block type)
  where = []
  for s, st in enumerate(map(lambda x: eff.Stage(*x), m.stages)):
    for j in range(eff.round_repeats(st.repeats, m.depth_mult)):
      if st.fused:
        kind = "cn" if st.expand_ratio == 1 else "er"
      else:
        kind = "ds" if st.expand_ratio == 1 else "ir"
      where.append((s, j, kind))
  names = {
      "ir": {"expand": ("conv_pw", "bn1"), "depthwise": ("conv_dw", "bn2"),
             "project": ("conv_pwl", "bn3")},
      "ds": {"depthwise": ("conv_dw", "bn1"), "project": ("conv_pw", "bn2")},
      "er": {"expand": ("conv_exp", "bn1"), "project": ("conv_pwl", "bn2")},
      "cn": {"fused": ("conv", "bn1")},
  }

  def key(path):
    top = path[0]
    if top in ("stem_conv", "stem_bn"):
      return {"stem_conv": "conv_stem", "stem_bn": "bn1"}[top]
    if top in ("head_conv", "head_bn"):
      return {"head_conv": "conv_head", "head_bn": "bn2"}[top]
    if top == "head":
      return "classifier"
    if top.startswith("block"):
      s, j, kind = where[int(top[5:]) - 1]
      prefix = f"blocks.{s}.{j}."
      if path[1] == "se":
        return prefix + {"reduce": "se.conv_reduce", "expand": "se.conv_expand"}[path[2]]
      unit, part = path[1].rsplit("_", 1)
      conv, bn = names[kind][unit]
      return prefix + (conv if part == "conv" else bn)
    raise KeyError(path)
  return key


def _key_function(model):
  if isinstance(model, resnet.ResNet):
    return _resnet_keys(model)
  if isinstance(model, densenet.DenseNet):
    return _densenet_keys(model)
  if isinstance(model, efficientnet.EfficientNet):
    return _efficientnet_keys(model)
  raise ConversionError(f"{type(model).__name__}: no torchvision/timm weights to import; "
                        f"supported presets: {', '.join(SUPPORTED)}")


def _build(preset_name: str, num_classes: Optional[int], model_kwargs):
  if preset_name not in SUPPORTED and not model_kwargs:
    raise ConversionError(f"no pretrained import for preset {preset_name!r}; supported: "
                          f"{', '.join(SUPPORTED)}")
  kwargs = dict(model_kwargs)
  if num_classes is not None:
    kwargs["num_classes"] = num_classes
  return models.create_model(preset_name, **kwargs)


def _abstract_variables(model):
  return jax.eval_shape(lambda: model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
      jnp.zeros((1, 64, 64, 3), jnp.float32), train=False))


def _torch_shape(flax_shape, transform):
  if transform == "kernel" and len(flax_shape) == 4:   # HWIO -> OIHW
    h, w, i, o = flax_shape
    return (o, i, h, w)
  if transform == "kernel" and len(flax_shape) == 2:   # (in, out) -> (out, in)
    return tuple(reversed(flax_shape))
  return tuple(flax_shape)


def key_map(preset_name: str, num_classes: Optional[int] = None, **model_kwargs):
  """{torch key: (collection, flax path, torch shape)} of the flaxcnn model: the
  state dict the model needs, exactly (no num_batches_tracked)."""
  model = _build(preset_name, num_classes, model_kwargs)
  return _key_map(model)


def _key_map(model):
  key = _key_function(model)
  out = {}
  abstract = _abstract_variables(model)
  for collection in ("params", "batch_stats"):
    for path, leaf in traverse_util.flatten_dict(abstract.get(collection, {})).items():
      try:
        module_key = key(path[:-1])
      except (KeyError, ValueError, IndexError):
        raise ConversionError(f"{type(model).__name__}: flaxcnn variable "
                              f"{collection}/{'/'.join(path)} has no torchvision/timm "
                              "counterpart") from None
      tkey, transform = _leaf(path, module_key)
      if tkey in out:
        raise AssertionError(f"two flax variables map to {tkey}")
      out[tkey] = (collection, path, _torch_shape(leaf.shape, transform))
  return out


def _legacy_densenet(sd: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Old torchvision DenseNet files name layers 'norm.1' instead of 'norm1'."""
  pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|"
                       r"running_mean|running_var|num_batches_tracked))$")
  out = {}
  for k, v in sd.items():
    match = pattern.match(k)
    out[match.group(1) + match.group(2) if match else k] = v
  return out


def _to_flax(array: np.ndarray, transform: str) -> np.ndarray:
  array = np.asarray(array, np.float32)
  if transform == "kernel" and array.ndim == 4:        # OIHW -> HWIO
    return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
  if transform == "kernel" and array.ndim == 2:
    return np.ascontiguousarray(array.T)
  return array


def _head_names(kmap):
  return [k for k, (_, path, _) in kmap.items() if path[0] == "head"]


def _check_known_mismatch(model, sd):
  if isinstance(model, efficientnet.EfficientNet) and "features.0.0.weight" in sd:
    raise ConversionError(
        "this is a torchvision EfficientNet state dict: torchvision pads symmetrically, "
        "flaxcnn's EfficientNet uses TF 'SAME' padding (as the TF reference), so the "
        "weights do not fit exactly; use timm's tf_efficientnet_b* / tf_efficientnetv2_* "
        "checkpoints")


def convert(preset_name: str, state_dict: Mapping[str, np.ndarray],
            num_classes: Optional[int] = None, seed: int = 0, **model_kwargs) -> dict:
  """flaxcnn variables {'params', 'batch_stats'} from a torch state dict of numpy
  arrays (or anything `np.asarray` takes).

  num_classes None keeps the checkpoint's classifier; another number than the
  checkpoint's gives a freshly initialized head (LeCun-normal kernel, zero bias,
  from `seed`) for fine-tuning, as does a file without classifier (num_classes
  None: the preset's). `model_kwargs` override the preset's arguments
  (tests use smaller variants of a family).
  Raises ConversionError naming missing / unexpected keys and shape mismatches.
  """
  sd = {k: v for k, v in state_dict.items() if not _IGNORED.search(k)}
  sd = _legacy_densenet(sd)
  if num_classes is None:
    for head in ("fc.weight", "classifier.weight"):
      if head in sd and np.ndim(sd[head]) == 2:
        num_classes = int(np.shape(sd[head])[0])
  model = _build(preset_name, num_classes, model_kwargs)
  scan_groups = model.scan_groups if getattr(model, "scan_blocks", False) else None
  if scan_groups is not None:   # convert to the unscanned layout, then stack the blocks
    model = model.clone(scan_blocks=False)
  _check_known_mismatch(model, sd)
  kmap = _key_map(model)
  fresh_head = set()
  head_keys = _head_names(kmap)
  w = next((k for k in head_keys if k.endswith("weight")), None)
  if w in sd and np.ndim(sd[w]) == 2 and np.shape(sd[w])[0] != kmap[w][2][0] \
      and np.shape(sd[w])[1] == kmap[w][2][1]:
    fresh_head = set(head_keys)   # a new head of num_classes outputs
  elif not any(k in sd for k in head_keys):
    fresh_head = set(head_keys)   # a headless file (timm num_classes=0): a fresh head

  missing = [k for k in kmap if k not in sd and k not in fresh_head]
  unexpected = [k for k in sd if k not in kmap]
  mismatched = [f"{k}: file {tuple(np.shape(sd[k]))}, model {kmap[k][2]}"
                for k in kmap if k in sd and k not in fresh_head
                and tuple(np.shape(sd[k])) != kmap[k][2]]
  problems = []
  if missing:
    problems.append(f"{len(missing)} missing key(s): {_list(missing)}")
  if unexpected:
    problems.append(f"{len(unexpected)} unexpected key(s): {_list(unexpected)}")
  if mismatched:
    problems.append(f"{len(mismatched)} shape mismatch(es): {_list(mismatched)}")
  if problems:
    raise ConversionError(f"state dict does not fit flaxcnn {preset_name!r} "
                          f"({SUPPORTED.get(preset_name, 'custom variant')}): "
                          + "; ".join(problems))

  flat = {}
  for tkey, (collection, path, _) in kmap.items():
    if tkey in fresh_head:
      continue
    flat[(collection,) + tuple(path)] = _to_flax(sd[tkey], path[-1])
  if fresh_head:
    rng = np.random.RandomState(seed)
    for tkey in fresh_head:
      collection, path, shape = kmap[tkey]
      if path[-1] == "kernel":
        fan_in = shape[1]
        value = rng.standard_normal(shape[::-1]).astype(np.float32) / np.sqrt(fan_in)
      else:
        value = np.zeros(shape, np.float32)
      flat[(collection,) + tuple(path)] = value
  variables = traverse_util.unflatten_dict(flat)
  variables.setdefault("batch_stats", {})
  if scan_groups is not None:
    variables = layers.stack_blocks(variables, scan_groups)
  return variables


def _list(items, limit=12):
  items = list(items)
  shown = ", ".join(items[:limit])
  return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def load(preset_name: str, path: str, num_classes: Optional[int] = None,
         seed: int = 0, **model_kwargs) -> dict:
  """flaxcnn variables {'params', 'batch_stats'} (numpy arrays) of preset
  `preset_name` from a torchvision/timm checkpoint file (.safetensors, .pth, .npz).

  num_classes None keeps the checkpoint's classifier (1000 ImageNet classes);
  another number replaces it by a freshly initialized head (fine-tuning).
  """
  return convert(preset_name, read_state_dict(path), num_classes, seed, **model_kwargs)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("preset", nargs="?")
  parser.add_argument("path", nargs="?", help=".safetensors / .pth / .npz state dict")
  parser.add_argument("--out", help="write the flax variables here (.msgpack)")
  parser.add_argument("--list", action="store_true", help="list supported presets")
  args = parser.parse_args(argv)
  if args.list or not args.preset:
    for name, source in SUPPORTED.items():
      print(f"{name:20s} {source}")
    return
  try:
    variables = load(args.preset, args.path)
  except Exception as e:  # noqa: BLE001 - a refused or unreadable file: one line
    raise SystemExit(f"error: {args.path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
  n = sum(int(np.size(v)) for v in __import__("jax").tree.leaves(variables["params"]))
  print(f"{args.preset}: {n:,} parameters converted from {args.path}")
  if args.out:
    with open(args.out, "wb") as f:
      f.write(serialization.msgpack_serialize(variables))
    print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
