"""Feature extraction: a trained backbone's pooled features, cached, and a
linear classifier (logistic regression) trained on them.

    python launch.py --config=experiments/feature_extraction.py \
        --workdir=runs/features --config.features.backbone=runs/quickstart

The job `config.job='features'` (launch.py dispatches it here), configured by
`config.features`.

1. The backbone: a flaxcnn workdir (its latest checkpoint, read as raw arrays
   like `checkpoint.load_raw`, with the run's own workdir/config.json and the
   normalization statistics training saved in workdir/data.json), or imported
   weights (`flaxcnn.pretrained`: .safetensors / .pth / .npz of torchvision /
   timm models, preset `config.model.name`).
2. Its classifier is dropped: every classification model's classifier is the
   module `head` and `model.apply(..., pre_logits=True)` returns what it would
   receive, the (N, D) global-average-pooled features; the head's parameters are
   never read.
3. The features of every split of `config.data` are computed once (jitted,
   batches of config.eval_batch_size sharded over the devices) and cached in
   CACHE/features/<backbone key>/<dataset key>.npz, keyed by the backbone (preset,
   checkpoint step, a hash of its variables) and the dataset (source, name, a
   hash of the images and labels of every split, the preprocessing). A second
   call with the same backbone and data reads the cache and never runs the
   backbone.
4. A logistic-regression head (softmax over classes, L2 penalty
   `config.features.head_l2`) is trained on the standardized train features
   with optax (Adam, `config.features.head_steps` full-batch steps, one jitted
   loop) and evaluated on the validation / test features.

Results: WORKDIR/summary.json ({'validation', 'test'}: loss, accuracy, count;
'cache': path, 'from_cache'), WORKDIR/metrics.jsonl, WORKDIR/head.npz (kernel,
bias, feature mean and std).
"""
import dataclasses
import functools
import hashlib
import os
import time
from typing import Any, Dict, Optional, Tuple

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flaxcnn import augment, backend, checkpoint, data as data_lib, models, parallel, pretrained
from flaxcnn import workdir as workdir_lib
from flaxcnn.data.sources import default_cache_dir
from flaxcnn.metrics import MetricWriter

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass
class Backbone:
  model: Any               # the flaxcnn module (its classifier is not used)
  variables: Dict          # {'params', 'batch_stats'}
  mean: Tuple[float, ...]  # the input normalization it was trained with
  std: Tuple[float, ...]
  key: str                 # cache key: preset, checkpoint step, hash of the variables
  description: str = ""


@dataclasses.dataclass
class FeatureSet:
  splits: Dict[str, Tuple[np.ndarray, np.ndarray]]   # split -> (features (N, D), labels (N,))
  path: str
  from_cache: bool

  @property
  def dim(self) -> int:
    return next(iter(self.splits.values()))[0].shape[1]


# ----------------------------------------------------------------------------- backbones

def _hash_tree(tree) -> str:
  h = hashlib.sha1()
  flat = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]
  for path, leaf in sorted(flat, key=lambda kv: jax.tree_util.keystr(kv[0])):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(jax.tree_util.keystr(path).encode())
    h.update(str((a.dtype, a.shape)).encode())
    h.update(a.tobytes())
  return h.hexdigest()[:12]


def load_run_config(workdir: str):
  """The config of the backbone's run (workdir_lib.read_config), or one line saying
  that `workdir` is not a training workdir."""
  if not os.path.exists(os.path.join(workdir, workdir_lib.CONFIG)):
    raise FileNotFoundError(f"config.features.backbone={workdir}: no config.json there; "
                            "give a flaxcnn training workdir or a weights file")
  return workdir_lib.read_config(workdir)


def latest_checkpoint(workdir: str):
  """(step, {'params', 'batch_stats'}) of the newest readable checkpoint in
  workdir/checkpoints, read without building the train state (no compilation)."""
  return checkpoint.load_raw(workdir, with_step=True)


def training_data(workdir: str, run_config) -> dict:
  """{'num_classes', 'mean', 'std', ...} of the data a run trained on: its
  workdir/data.json (written when training starts), else, for runs older than
  that file, the statistics of its data loaded again."""
  saved = workdir_lib.read_data_stats(workdir)
  if saved is not None:
    return saved
  dataset = data_lib.load(run_config)
  return {"num_classes": dataset.num_classes, "mean": dataset.mean, "std": dataset.std}


def backbone_from_workdir(workdir: str, run_config=None) -> Backbone:
  """The latest checkpoint of a flaxcnn training run (the run's model from
  workdir/config.json, the input normalization of its training data)."""
  run_config = run_config or load_run_config(workdir)
  step, variables = latest_checkpoint(workdir)
  data = training_data(workdir, run_config)
  model = models.build_model(run_config, data["num_classes"])
  key = f"{run_config.model.name}-step{step}-{_hash_tree(variables)}"
  return Backbone(model, variables, tuple(data["mean"]), tuple(data["std"]), key,
                  f"{run_config.model.name} from {workdir} (step {step})")


def backbone_from_weights(preset: str, path: str, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                          **model_kwargs) -> Backbone:
  """Imported torchvision / timm weights (flaxcnn.pretrained) of `preset`."""
  variables = pretrained.load(preset, path, **model_kwargs)
  num_classes = _head_outputs(variables["params"])
  model = models.create_model(preset, num_classes=num_classes, **model_kwargs)
  key = f"{preset}-imported-{_hash_tree(variables)}"
  return Backbone(model, variables, tuple(mean), tuple(std), key,
                  f"{preset} from {os.path.basename(path)}")


def _head_outputs(params) -> int:
  """The number of classes of a model's classifier (params['head'])."""
  kernels = [x for x in jax.tree.leaves(params.get("head", {})) if np.ndim(x) == 2]
  return int(kernels[-1].shape[-1]) if kernels else 1000


def backbone_from_config(config) -> Backbone:
  """config.features.backbone: a workdir (has config.json) or a weights file."""
  source = config.features.backbone
  if not source:
    raise ValueError("config.features.backbone must name a flaxcnn workdir or a weights "
                     "file (.safetensors / .pth / .npz)")
  if os.path.isdir(source):
    return backbone_from_workdir(source)
  if not os.path.exists(source):
    raise FileNotFoundError(f"config.features.backbone={source} does not exist")
  mean = tuple(config.features.mean) if config.features.mean else IMAGENET_MEAN
  std = tuple(config.features.std) if config.features.std else IMAGENET_STD
  return backbone_from_weights(config.model.name, source, mean, std)


# ----------------------------------------------------------------------------- features

class NoClassifier(ValueError):
  pass


def pooled_features(model, variables, x):
  """The global-average-pooled features the model's classifier (`head`) receives:
  `model.apply(..., pre_logits=True)`, (N, D) float32."""
  if "pre_logits" not in inspect.signature(type(model).__call__).parameters:
    raise NoClassifier(f"{type(model).__name__} has no classifier head to drop")
  return model.apply(variables, x, train=False, pre_logits=True).astype(jnp.float32)


def _input_channels(backbone: Backbone, image_shape) -> int:
  """The channels the backbone takes: the data's, or 3 for grayscale data and
  an RGB backbone (the gray channel is repeated)."""
  h, w, c = image_shape
  for channels in ([c, 3] if c == 1 else [c]):
    try:
      jax.eval_shape(lambda x: pooled_features(backbone.model, backbone.variables, x),
                     jax.ShapeDtypeStruct((1, h, w, channels), jnp.float32))
      return channels
    except NoClassifier:
      raise
    except Exception:  # a kernel shape mismatch (flax raises several kinds)
      continue
  raise ValueError(f"the backbone {backbone.description} does not take images of shape "
                   f"{tuple(image_shape)}")


def extract_features(backbone: Backbone, dataset, batch_size: int,
                     image_size: Optional[int] = None) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """Runs the backbone once over every split: {split: (features, labels)}."""
  mesh = parallel.make_mesh()
  batch_sharding = parallel.batch_sharded(mesh)
  channels = _input_channels(backbone, dataset.image_shape if not image_size else
                             (image_size, image_size, dataset.image_shape[-1]))
  mean = np.resize(np.asarray(backbone.mean, np.float32), channels)
  std = np.resize(np.asarray(backbone.std, np.float32), channels)

  # Keep the residual blocks' optimization barriers on the CPU (backend.compiler_options).
  @functools.partial(jax.jit, compiler_options=backend.compiler_options(
      mesh.devices.flat[0].platform))
  def features(variables, images):
    x = images
    if x.shape[-1] != channels:
      x = jnp.repeat(x, channels, axis=-1)
    if image_size:
      x = augment.resize(x, image_size)
    x = augment.normalize(x, mean, std)
    return pooled_features(backbone.model, variables, x)

  variables = jax.device_put(backbone.variables, parallel.replicated(mesh))
  out = {}
  for name, split in dataset.splits.items():
    chunks = []
    for images, labels, mask in parallel.padded_batches(split, batch_size):
      f = features(variables, parallel.global_array(images, batch_sharding))
      chunks.append(np.asarray(jax.device_get(f))[mask > 0])
    out[name] = (np.concatenate(chunks).astype(np.float32), np.asarray(split.labels))
  return out


def dataset_key(config, dataset, image_size=None) -> str:
  """The dataset part of the cache key: source, name and a hash of the data."""
  h = hashlib.sha1()
  for name in sorted(dataset.splits):
    split = dataset.splits[name]
    h.update(name.encode())
    for a in (split.images, split.labels):
      a = np.ascontiguousarray(a)
      h.update(str((a.dtype, a.shape)).encode())
      h.update(a.tobytes())
  h.update(str(image_size).encode())
  label = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in
                  f"{config.data.source}-{config.data.name}")
  return f"{label}-{h.hexdigest()[:12]}"


def cache_dir(config) -> str:
  return config.features.cache_dir or os.path.join(default_cache_dir(config.data.cache_dir),
                                                   "features")


def cached_features(config, backbone: Backbone, dataset) -> FeatureSet:
  """The pooled features of every split, from the cache or computed once and cached."""
  image_size = config.features.image_size
  path = os.path.join(cache_dir(config), backbone.key,
                      dataset_key(config, dataset, image_size) + ".npz")
  if os.path.exists(path):
    try:
      with np.load(path, allow_pickle=False) as z:
        names = sorted({k.split("/")[0] for k in z.files})
        splits = {s: (z[f"{s}/features"], z[f"{s}/labels"]) for s in names}
      return FeatureSet(splits, path, True)
    except Exception as e:  # a truncated file: compute again
      print(f"WARNING: unreadable feature cache {path} ({e}); recomputing", flush=True)
  splits = extract_features(backbone, dataset, config.eval_batch_size, image_size)
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + f".tmp{os.getpid()}.npz"
    arrays = {}
    for s, (f, y) in splits.items():
      arrays[f"{s}/features"], arrays[f"{s}/labels"] = f, y
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
  return FeatureSet(splits, path, False)


# ----------------------------------------------------------------------------- the head

def train_head(features: np.ndarray, labels: np.ndarray, num_classes: int, steps: int = 500,
               lr: float = 0.05, l2: float = 1e-4, seed: int = 0) -> Dict[str, np.ndarray]:
  """Multinomial logistic regression on standardized features, full-batch Adam.

  Minimizes mean cross-entropy + l2/2 ||W||^2. Returns {'kernel' (D, K),
  'bias' (K,), 'mean', 'std'} (the standardization is part of the head).
  """
  mu = features.mean(0)
  sd = features.std(0) + 1e-6
  x = jnp.asarray((features - mu) / sd, jnp.float32)
  y = jnp.asarray(labels, jnp.int32)
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
  params = {"kernel": jnp.zeros((x.shape[1], num_classes), jnp.float32),
            "bias": jnp.zeros((num_classes,), jnp.float32)}

  def loss_fn(p):
    logits = x @ p["kernel"] + p["bias"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return ce + 0.5 * l2 * jnp.sum(p["kernel"] ** 2)

  @jax.jit
  def fit(params):
    def body(_, carry):
      p, s = carry
      g = jax.grad(loss_fn)(p)
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s
    return jax.lax.fori_loop(0, steps, body, (params, tx.init(params)))[0]

  del seed  # zero initialization: the convex problem needs no random start
  head = jax.device_get(fit(params))
  return {"kernel": np.asarray(head["kernel"]), "bias": np.asarray(head["bias"]),
          "mean": mu.astype(np.float32), "std": sd.astype(np.float32)}


def head_logits(head, features):
  return ((features - head["mean"]) / head["std"]) @ head["kernel"] + head["bias"]


def evaluate_head(head, features, labels) -> dict:
  logits = head_logits(head, np.asarray(features, np.float32))
  logp = logits - logits.max(-1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
  return {"loss": float(-logp[np.arange(len(labels)), labels].mean()),
          "accuracy": float((logits.argmax(-1) == labels).mean()),
          "count": float(len(labels))}


# ----------------------------------------------------------------------------- the command

def run(config, workdir: str, backbone: Optional[Backbone] = None, dataset=None) -> dict:
  """Backbone -> cached features -> logistic-regression head; returns the summary."""
  source = config.features.backbone
  if source and os.path.isdir(source) and os.path.realpath(source) == os.path.realpath(
      workdir):
    raise ValueError(f"--workdir={workdir} is the backbone's own run "
                     "(config.features.backbone): its metrics, summary and config would be "
                     "replaced by the linear head's; give the head another --workdir")
  lock = workdir_lib.prepare(workdir)   # one-line errors; a busy workdir is refused
  try:
    return run_locked(config, workdir, backbone, dataset)
  finally:
    lock.release()


def run_locked(config, workdir, backbone=None, dataset=None) -> dict:
  """`run` in a workdir this process holds already (a sweep's variant)."""
  t0 = time.time()
  n = jax.device_count()
  if config.eval_batch_size % n:   # the backbone's batches are split over the devices
    raise ValueError(f"config.eval_batch_size={config.eval_batch_size} must be divisible "
                     f"by the {n} devices; use a multiple of {n}")
  if backbone is None:
    backbone = backbone_from_config(config)
  if dataset is None:
    dataset = data_lib.load(config)
  feats = cached_features(config, backbone, dataset)
  print(f"features: {backbone.description}, {feats.dim} dims, "
        f"{'read from' if feats.from_cache else 'computed and cached in'} {feats.path}",
        flush=True)
  f = config.features
  x_train, y_train = feats.splits["train"]
  head = train_head(x_train, y_train, dataset.num_classes, f.head_steps, f.head_lr, f.head_l2)
  summary = {"train": evaluate_head(head, x_train, y_train)}
  writer = MetricWriter(workdir, resume_step=0)   # a head's lines replace the old ones
  for name in ("validation", "test"):
    if name in feats.splits:
      summary[name] = evaluate_head(head, *feats.splits[name])
      writer.write(f.head_steps, name, summary[name])
      print(f"head {name:10s} accuracy {summary[name]['accuracy']:.4f}  loss "
            f"{summary[name]['loss']:.4f}  ({int(summary[name]['count'])} examples)", flush=True)
  writer.close()
  summary.update(backbone=backbone.key, cache=feats.path, from_cache=feats.from_cache,
                 feature_dim=feats.dim, seconds=time.time() - t0)
  if jax.process_index() == 0:
    workdir_lib.save_config(config, workdir)
    np.savez(os.path.join(workdir, "head.npz"), **head)
    workdir_lib.write_json(os.path.join(workdir, workdir_lib.SUMMARY), summary)
  return summary

