"""The configuration schema shared by every experiment, and its validation.

Experiment files in `experiments/` start from `default_config()` and change fields:

    def get_config():
      config = default_config()
      config.model.name = "wrn28_10"
      ...
      return config

The returned ConfigDict is locked: a misspelled field in a config file or on the
command line (`--config.optimizer.lrr=0.1`) fails at once, naming the field. Only
`config.model.kwargs` is open, for the preset's own keyword arguments, which
`validate` checks by building the model before anything is compiled.
"""
import ast
import copy
import importlib.util
import math
import os
import site
import sys
import sysconfig

import ml_collections
from ml_collections import config_dict

from flaxcnn import augment, data as data_lib, jobs, models, optim

placeholder = config_dict.placeholder


def default_config() -> ml_collections.ConfigDict:
  """Every field of a config with its default: the run's own fields here, each
  section from the module that reads it (models.build, data, augment, optim), the
  rest below. Locked, but for model.kwargs."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dtype = "float32"              # computation dtype: float32 | bfloat16 (params stay float32)
  # train | eval (the latest checkpoint in workdir, on the validation and test splits)
  # | features (config.features: a trained backbone's features and a linear head)
  c.job = "train"
  # classification | segmentation (flaxcnn/tasks/); None: follow the model (per-pixel
  # models such as 'unet' segment, the rest classify)
  c.task = placeholder(str)

  c.model = models.build.config_section()
  c.data = data_lib.config_section()
  c.augment = augment.config_section()

  # DropBlock's keep_prob (model.kwargs.dropblock_*) goes linearly from 1 to its
  # target over training ("linear", Ghiasi et al. 2018) or stays at it ("fixed").
  c.dropblock_schedule = "linear"

  # Exponential moving average of the weights (0 = off), evaluated separately.
  c.ema_decay = 0.0
  # TensorFlow's ExponentialMovingAverage(num_updates=global_step) warm-up: the decay
  # of update n (1, 2, ...) is min(ema_decay, (1 + n) / (10 + n)) (the EfficientNet
  # reference's); False: ema_decay from the first step.
  c.ema_warmup = False

  c.progressive = _progressive_section()

  c.batch_size = 128               # global batch over all devices and processes
  c.eval_batch_size = 500
  c.eval_mode = "center"           # center | ten_crop | multiscale (He et al. 2015)
  c.eval_scales = (224, 256, 384, 480, 640)   # multiscale: shorter sides
  c.num_epochs = 200.0
  c.num_steps = placeholder(int)   # if set, overrides num_epochs (tests, benchmarks)
  c.label_smoothing = 0.0

  c.optimizer = optim.optimizer_section()
  c.schedule = optim.schedule_section()

  # Transfer learning (the lecture's fine-tuning recipe): start from a trained run
  # (a workdir, its latest checkpoint) or imported weights (.pth/.safetensors/.npz).
  # Parameters whose shapes match are loaded; the rest (a new head) start fresh.
  c.init_from = placeholder(str)
  c.finetune = _finetune_section()

  c.features = _features_section()
  c.log_every_steps = 50
  # TensorBoard: a grid of the first step's augmented training images (16), to check
  # the augmentation by eye (train/augmented_images)
  c.log_images = True
  # TensorBoard: histograms of the parameters and BatchNorm statistics at each
  # evaluation (params/<layer>/<name>, batch_stats/...)
  c.log_histograms = True
  c.wandb = _wandb_section()
  c.eval_every_epochs = 1.0
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 3
  # > 0: a jax.profiler trace of this many steps (after the first, compiling one)
  # under WORKDIR/tensorboard, for TensorBoard's profile tab.
  c.profile_steps = 0
  c.lock()
  c.model.kwargs.unlock()
  return c


def _progressive_section() -> ml_collections.ConfigDict:
  """config.progressive (train/stages.py reads it)."""
  # EfficientNetV2 progressive learning (Tan & Le 2021): training is split into
  # `stages` stages; image size and regularization grow linearly from the first to
  # the second value of each pair. 0 stages = off.
  s = ml_collections.ConfigDict()
  s.stages = 0
  s.image_size = (128, 300)
  s.dropout = (0.1, 0.3)          # the model's head dropout
  s.randaugment_magnitude = (5.0, 15.0)
  s.mixup_alpha = (0.0, 0.0)
  return s


def _finetune_section() -> ml_collections.ConfigDict:
  """config.finetune (train/finetune.py, optim and the train step read it)."""
  s = ml_collections.ConfigDict()
  s.head_epochs = 0.0     # first train only the new classifier head this long
  s.lr_mult = 0.1         # then everything at this multiple of the schedule's lr
  s.freeze_bn = False     # BatchNorm in inference mode (running averages frozen)
  s.new_head = False      # a fresh head even where its shape matches (the source
                          # was trained on as many, but other, classes)
  s.allow_partial = False  # go on when init_from matches under half of the arrays
  s.freeze = ()           # regexes of parameter paths kept fixed, e.g. ("^stem_conv",)
                          # (`python -m flaxcnn.models.summary NAME --params`)
  return s


def _features_section() -> ml_collections.ConfigDict:
  """config.features: the 'features' job's settings (features.py reads them)."""
  # Feature extraction (job 'features', Lecture's "use a trained network as a feature
  # extractor"): the backbone's pooled features of every split of config.data,
  # computed once and cached, and a logistic-regression head trained on them.
  s = ml_collections.ConfigDict()
  s.backbone = placeholder(str)    # a flaxcnn workdir, or .safetensors/.pth/.npz
  s.cache_dir = placeholder(str)   # default: $FLAXCNN_CACHE/features (~/.cache/flaxcnn)
  s.image_size = placeholder(int)  # resize images before the backbone (default: as is)
  s.mean = placeholder(tuple)      # imported weights: input mean/std
  s.std = placeholder(tuple)       #   (default ImageNet's)
  s.head_steps = 500      # full-batch Adam steps of the logistic regression
  s.head_lr = 0.05
  s.head_l2 = 1e-3        # L2 penalty on the head's weights
  return s


def _wandb_section() -> ml_collections.ConfigDict:
  """config.wandb: Weights & Biases (metrics.py reads it)."""
  # Weights & Biases (pip install wandb): the same metrics, images and histograms,
  # and the config, in a W&B run named after the workdir (a resume goes on in it)
  s = ml_collections.ConfigDict()
  s.project = ""             # '' = off
  s.entity = ""              # your W&B user or team ('' = the default)
  s.mode = "online"          # online | offline (synced later: `wandb sync`)
  return s


def apply_overrides(config, overrides):
  """A copy of `config` with dotted-field overrides ({'optimizer.lr': 0.05}) applied;
  a field the config lacks is a ValueError naming it (model.kwargs is open)."""
  config = copy.deepcopy(config)
  for field, value in overrides.items():
    node = config
    parts = field.split(".")
    for p in parts[:-1]:
      if p not in node:
        raise ValueError(f"override {field!r}: config has no field {p!r}")
      node = node[p]
    if parts[-1] not in node and not (parts[-2:-1] == ["kwargs"]):
      raise ValueError(f"override {field!r}: config has no field {parts[-1]!r}")
    if isinstance(value, list):
      value = tuple(value)
    node[parts[-1]] = value
  return config


def _choices() -> dict:
  """field -> the names it may take, as the modules that build them name them (read
  at each validation: a name registered later counts)."""
  return {
      "dtype": ("float32", "bfloat16"),
      "job": jobs.names(),
      "eval_mode": ("center", "ten_crop", "multiscale"),
      "dropblock_schedule": models.regularization.DROPBLOCK_SCHEDULES,
      "data.source": tuple(data_lib.SOURCES),
      "optimizer.name": tuple(optim.OPTIMIZERS),
      "schedule.name": tuple(optim.SCHEDULES),
      "schedule.warmup": tuple(optim.WARMUPS),
      "schedule.decay_begin": optim.DECAY_BEGINS,
      "augment.train_crop": data_lib.streaming.TRAIN_CROPS,
  }


def _get(config, dotted):
  for part in dotted.split("."):
    config = config[part]
  return config


def validate(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
  """Checks a config before any data is loaded or code compiled.

  Raises ValueError with one line naming the field and what to do.
  """
  for field, choices in _choices().items():
    value = _get(config, field)
    if value not in choices:
      raise ValueError(f"config.{field}={value!r} is not one of {', '.join(choices)}")
  positive = ["batch_size", "eval_batch_size", "num_epochs", "log_every_steps",
              "checkpoint_every_steps", "keep_checkpoints", "eval_every_epochs"]
  for field in positive:
    if not _get(config, field) > 0:
      raise ValueError(f"config.{field}={_get(config, field)!r} must be positive")
  if config.num_steps is not None and config.num_steps <= 0:
    raise ValueError(f"config.num_steps={config.num_steps} must be positive (or unset)")
  if config.optimizer.lr <= 0 or not math.isfinite(config.optimizer.lr):
    raise ValueError(f"config.optimizer.lr={config.optimizer.lr} must be a positive number")
  if config.optimizer.weight_decay < 0:
    raise ValueError(f"config.optimizer.weight_decay={config.optimizer.weight_decay} must be >= 0")
  if not 0 <= config.optimizer.momentum < 1:
    raise ValueError(f"config.optimizer.momentum={config.optimizer.momentum} must be in [0, 1)")
  if not 0 <= config.label_smoothing < 1:
    raise ValueError(f"config.label_smoothing={config.label_smoothing} must be in [0, 1)")
  if config.augment.cutout < 0 or config.augment.crop_padding < 0:
    raise ValueError("config.augment.cutout and crop_padding must be >= 0")
  if config.augment.mixup_alpha < 0:
    raise ValueError(f"config.augment.mixup_alpha={config.augment.mixup_alpha} must be >= 0")
  b = tuple(config.schedule.boundaries)
  if config.schedule.name == "piecewise" and list(b) != sorted(b):
    raise ValueError(f"config.schedule.boundaries={b} must be increasing epochs")
  for field in ("batch_size", "eval_batch_size"):
    if _get(config, field) % num_devices:
      raise ValueError(f"config.{field}={_get(config, field)} must be divisible by the "
                       f"{num_devices} devices; use a multiple of {num_devices}")
  if config.ema_decay and not 0 < config.ema_decay < 1:
    raise ValueError(f"config.ema_decay={config.ema_decay} must be in (0, 1) (or 0 = off)")
  if config.progressive.stages < 0:
    raise ValueError(f"config.progressive.stages={config.progressive.stages} must be >= 0")
  if config.finetune.lr_mult <= 0 or config.finetune.head_epochs < 0:
    raise ValueError("config.finetune.lr_mult must be > 0 and head_epochs >= 0")
  if config.augment.randaugment_layers < 0 or not 0 <= config.augment.randaugment_magnitude <= 30:
    raise ValueError("config.augment.randaugment_layers must be >= 0 and "
                     "randaugment_magnitude in [0, 30]")
  if config.wandb.mode not in ("online", "offline"):
    raise ValueError(f"config.wandb.mode={config.wandb.mode!r}: 'online' or 'offline'")
  if config.wandb.project and not _installed("wandb"):
    raise ValueError(f"config.wandb.project={config.wandb.project!r} but wandb is not "
                     "installed: pip install wandb (or leave config.wandb.project empty)")
  if config.augment.randaugment_ops not in ("torchvision", "tf"):
    raise ValueError(f"config.augment.randaugment_ops={config.augment.randaugment_ops!r}: "
                     "'torchvision' (magnitude of 30) or 'tf' (the TF references' levels)")
  if config.augment.autoaugment not in ("", "v0"):
    raise ValueError(f"config.augment.autoaugment={config.augment.autoaugment!r}: '' (off) "
                     "or 'v0' (the ImageNet policy)")
  if config.augment.autoaugment and config.augment.randaugment_layers:
    raise ValueError("config.augment.autoaugment and augment.randaugment_layers are both set; "
                     "use one policy (set the other to '' or 0)")
  if config.data.source == "folder" and not config.data.root:
    raise ValueError("config.data.root must name the image folder (ROOT/<split>/<class>/*.jpg) "
                     "or an archive of it when config.data.source='folder'")
  if config.data.eval_image_size is not None and (
      config.data.in_memory or config.eval_mode != "center" or config.data.eval_image_size < 1):
    raise ValueError(f"config.data.eval_image_size={config.data.eval_image_size} is a centre "
                     "crop of streamed images: it needs config.data.in_memory=False and "
                     "config.eval_mode='center' (unset it for in-memory data)")
  if config.data.source == "synthetic" and (config.data.image_size is None
                                            or config.data.num_classes is None):
    raise ValueError("config.data.image_size and config.data.num_classes must be set for "
                     "config.data.source='synthetic'")
  if config.data.num_classes is not None and config.data.source != "synthetic":
    raise ValueError(f"config.data.num_classes={config.data.num_classes}: the "
                     f"{config.data.source!r} source defines its own classes; leave it unset "
                     "(it is for config.data.source='synthetic')")
  data_lib.check_config(config)
  if config.eval_mode in ("ten_crop", "multiscale") and not config.augment.flip:
    raise ValueError(f"config.eval_mode={config.eval_mode!r} also evaluates mirrored images, "
                     "but config.augment.flip=False says the data are not mirror-symmetric "
                     "(as the digits): use eval_mode='center', or set augment.flip=True if "
                     "mirrored images are valid examples")
  models.check_model(config)


def parse_model_kwarg(config, key: str, text: str):
  """The value of `--config.model.kwargs.KEY=TEXT`, typed like the preset's default
  for KEY (else like the config file's setting of it), so that
  `--config.model.kwargs.stochastic_depth_per=batch` works on any config: ml_collections'
  flags override only fields a config already has. A keyword the preset lacks is
  parsed as a Python literal (else kept as text) and left to `validate`. A ValueError
  names the flag when TEXT does not fit. (TEXT 'None' drops the keyword: cli.py.)"""
  like = models.keyword_default(config.model.name, key)
  if like is models.NO_DEFAULT and key in config.model.kwargs:
    like = config.model.kwargs[key]

  def literal():
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return text

  try:
    if isinstance(like, bool):
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError(text)
      return text.lower() in ("true", "1")
    if isinstance(like, str):
      return text
    if isinstance(like, int):
      return int(text)
    if isinstance(like, float):
      return float(text)
    if isinstance(like, (tuple, list)):    # or a name, where a field takes either
      value = literal()
      return tuple(value) if isinstance(value, (tuple, list)) else value
    if like is None or like is models.NO_DEFAULT:
      return literal()
  except ValueError:
    raise ValueError(f"--config.model.kwargs.{key}={text}: expected a value of type "
                     f"{type(like).__name__} (the preset has {like!r}; "
                     f"--config.model.kwargs.{key}=None gives the preset's default)") from None
  raise ValueError(f"--config.model.kwargs.{key}={text}: {key} of {config.model.name} is "
                   f"{like!r}, which the command line cannot express; set it in a config file")


def _installed(module: str) -> bool:
  if module in sys.modules:
    return sys.modules[module] is not None
  return importlib.util.find_spec(module) is not None


def parse_arg(arg: str, file: str, **options) -> dict:
  """The options of a config file's ':arg' string ('b3,batch=1024'), one parser for
  every file. Each keyword names an option and gives its default:

    a tuple   one of these words (its first is the default), e.g. dataset=("cifar10", "cifar100")
    a bool    a flag, True when its name is given, e.g. plain=False
    a number  name=N, e.g. seeds=1, batch=4096

  Any option may also be written name=value. Returns {option: value}; an unknown or
  repeated word raises ValueError naming `file` and the accepted words.
  """
  out, given = {}, set()
  for name, spec in options.items():
    out[name] = spec[0] if isinstance(spec, tuple) else spec

  def usage():
    words = []
    for name, spec in options.items():
      if isinstance(spec, tuple):
        words.append("/".join(str(v) for v in spec))
      elif isinstance(spec, bool):
        words.append(name)
      else:
        words.append(f"{name}={'TEXT' if isinstance(spec, str) else 'N'}")
    return ", ".join(words)

  for part in (p.strip() for p in (arg or "").split(",")):
    if not part:
      continue
    key, _, value = part.partition("=")
    name = None
    if value and key in options:
      name, spec = key, options[key]
      if isinstance(spec, tuple):
        match = [v for v in spec if str(v) == value]
        if not match:
          raise ValueError(f"{file}: unknown argument {part!r}; use {usage()}")
        found = match[0]
      elif isinstance(spec, bool):
        if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
          raise ValueError(f"{file}: argument {part!r} is not a bool (true/false); "
                           f"use {usage()}")
        found = value.lower() in ("1", "true", "yes")
      else:
        try:
          found = type(spec)(value)
        except ValueError:
          raise ValueError(f"{file}: argument {part!r} is not a {type(spec).__name__}; "
                           f"use {usage()}") from None
    elif not value:
      for n, spec in options.items():
        if isinstance(spec, tuple) and any(str(v) == part for v in spec):
          name, found = n, next(v for v in spec if str(v) == part)
          break
        if isinstance(spec, bool) and n == part:
          name, found = n, True
          break
    if name is None:
      raise ValueError(f"{file}: unknown argument {part!r}; use {usage()}")
    if name in given:
      raise ValueError(f"{file}: argument {name!r} given twice in {arg!r}")
    given.add(name)
    out[name] = found
  return out


# ----------------------------------------------------------------------------- config files

def experiments_dirs():
  """Where config files are found by name: this checkout's experiments/ (a source
  tree or an editable install), then the copy a `pip install .` puts in
  PREFIX/share/flaxcnn/experiments (setup.cfg's data_files)."""
  checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  dirs = [os.path.join(checkout, "experiments")]
  for base in (sysconfig.get_path("data"), site.USER_BASE or ""):
    dirs.append(os.path.join(base, "share", "flaxcnn", "experiments"))
  return [d for d in dirs if os.path.isdir(d)]


def split_source(value) -> tuple:
  """(path, arg) of a config source 'FILE[:ARG]': the one parser of that form. A
  path that exists as given keeps its colons; else ARG follows the first colon."""
  value = os.fspath(value)
  if os.path.exists(value):
    return value, ""
  path, _, arg = value.partition(":")
  return path, arg


def find_config_file(value: str) -> str:
  """A --config value (PATH[:ARG]) with PATH made a real file: as given when it
  exists, else by name among experiments_dirs(): 'quickstart', 'wrn_28_10.py:dropout',
  'ablations/wrn_width.py', 'experiments/quickstart.py' from any directory."""
  path, _ = split_source(value)
  tail = value[len(path):]     # ':ARG' as given
  if path and os.path.exists(path) and not (os.path.isfile(path) and path.endswith(".py")):
    raise ValueError(f"--config={path}: a config is a Python file (.py) defining "
                     "get_config(), e.g. experiments/quickstart.py; this is "
                     f"{'a folder' if os.path.isdir(path) else 'not a .py file'}")
  if not path or os.path.exists(path):
    return value
  name = path[len("experiments/"):] if path.startswith("experiments/") else path
  name = name if name.endswith(".py") else name + ".py"
  for d in experiments_dirs():
    if os.path.isfile(os.path.join(d, name)):
      return os.path.join(d, name) + tail
  return value


def load_config_module(path: str):
  """Imports a config file by path (sweeps, paper rows, config files that build on
  another)."""
  path = os.path.abspath(path)
  name = "flaxcnn_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config_file(value: str):
  """(module, path, arg) of a config source 'FILE[:ARG]' (found as find_config_file
  finds it); FileNotFoundError when there is no such file."""
  path, arg = split_source(find_config_file(os.fspath(value)))
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file {path} does not exist")
  return load_config_module(path), path, arg
