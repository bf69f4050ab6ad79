"""Transfer learning: start from a trained run or imported weights, train the new
head first, then everything (but frozen paths) at a multiple of the learning rate."""
import os
import re

import jax
import jax.numpy as jnp
import numpy as np

from flaxcnn import checkpoint as ckpt_lib, pretrained
from flaxcnn import workdir as workdir_lib

HEAD = "head"   # every classification model's classifier module (params['head'])


def path_str(path) -> str:
  return "/".join(str(getattr(k, "key", k)) for k in path)


def finetune_masks(config, params, steps_per_epoch: int):
  """(head_mask, trainable_mask, head_steps) as float trees for fine-tuning."""
  patterns = [re.compile(p) for p in config.finetune.freeze]
  paths = [path_str(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  for p in patterns:
    if not any(p.search(x) for x in paths):
      raise ValueError(f"config.finetune.freeze: {p.pattern!r} matches no parameter of "
                       f"{config.model.name}, whose paths look like "
                       f"{', '.join(sorted({x.split('/')[0] for x in paths})[:4])}, ... "
                       f"(e.g. {paths[0]!r}); `python -m flaxcnn.models.summary "
                       f"{config.model.name} --params` lists them")
  head = jax.tree_util.tree_map_with_path(
      lambda path, _: np.float32(getattr(path[0], "key", None) == HEAD), params)
  trainable = jax.tree_util.tree_map_with_path(
      lambda path, _: np.float32(not any(p.search(path_str(path)) for p in patterns)),
      params)
  return head, trainable, int(round(config.finetune.head_epochs * steps_per_epoch))


def _load_source(config):
  source = config.init_from
  if os.path.isdir(source):
    return ckpt_lib.load_raw(source)
  if os.path.isfile(source):
    return pretrained.load(config.model.name, source)
  raise FileNotFoundError(f"config.init_from={source} is neither a run directory nor a "
                          "weights file")


def _source_model(source: str) -> str:
  """The model a source was made for: a run's config.json model.name, else the file."""
  try:
    return workdir_lib.read_config_json(source)["model"]["name"]
  except (KeyError, TypeError):
    return os.path.basename(source.rstrip("/"))


def load_initial_weights(config, state, run):
  """Copies the parameters and BatchNorm statistics of `config.init_from` (a workdir
  or a weights file) into a fresh state wherever the shapes match; a new head (other
  number of classes, or config.finetune.new_head: other classes) keeps its fresh
  initialization. `state`: a fresh TrainState of `run` (flaxcnn/train/state.py)."""
  source, loaded = config.init_from, _load_source(config)
  kept, fresh_paths = 0, []

  def merge(path, fresh):
    nonlocal kept
    if config.finetune.new_head and getattr(path[1], "key", None) == HEAD:
      fresh_paths.append(path_str(path))
      return fresh
    node = loaded
    for k in path:
      key = getattr(k, "key", None)
      if not isinstance(node, dict) or key not in node:
        fresh_paths.append(path_str(path))
        return fresh
      node = node[key]
    if tuple(np.shape(node)) != tuple(fresh.shape):
      fresh_paths.append(path_str(path))
      return fresh
    kept += 1
    return jnp.asarray(node, fresh.dtype)

  variables = jax.tree_util.tree_map_with_path(
      merge, {"params": state.params, "batch_stats": state.batch_stats})
  if not kept:
    raise ValueError(f"config.init_from={source}: no parameter matches model "
                     f"{config.model.name}; is it the same architecture?")
  total = kept + len(fresh_paths)
  if kept < total / 2 and not config.finetune.allow_partial:
    raise ValueError(
        f"config.init_from={source} ({_source_model(source)}) matches only {kept} of the "
        f"{total} arrays of {config.model.name} (fresh: {', '.join(fresh_paths[:4])}, ...): "
        "most of the model would start from scratch. Use a source of the same "
        "architecture, or --config.finetune.allow_partial=True to go on")
  if jax.process_index() == 0:
    print(f"Initialized {kept} arrays from {source}; fresh: "
          f"{', '.join(fresh_paths[:6]) or 'none'}{' ...' if len(fresh_paths) > 6 else ''}",
          flush=True)
  variables = jax.device_put(variables, run.replicated)
  return state.replace(params=variables["params"], batch_stats=variables["batch_stats"],
                       opt_state=jax.jit(run.tx.init, out_shardings=run.replicated)(
                           variables["params"]),
                       ema=({"params": variables["params"],
                             "batch_stats": variables["batch_stats"]}
                            if config.ema_decay else {}))
