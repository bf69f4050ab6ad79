r"""The command line of every flaxcnn job (launch.py, `python -m flaxcnn`).

    python launch.py --config=experiments/quickstart.py --workdir=runs/quickstart
    python launch.py --config=experiments/wrn_28_10.py --workdir=runs/wrn \
        --config.optimizer.lr=0.05 --config.model.kwargs.dropout=0.3
    flaxcnn --config=wrn_28_10.py:dropout --workdir=runs/wrn_d   # pip-installed, any dir

--config takes a file, or one of experiments/ by name (config.find_config_file).

A workdir that has checkpoints is resumed from the latest one. `config.job` picks the
job (`run_job`): 'train' (the default; the task, classification or segmentation,
follows from the model or config.task), 'eval' (the latest checkpoint) or 'features'
(feature extraction, flaxcnn/features.py). Several processes (multi-host): pass
--num_processes, --process_id and --coordinator_address (or --distributed).

A config file that declares a sweep (get_sweep, see flaxcnn/sweep/) runs all its
variants with --sweep, one of them with --sweep_index=i, and lists them with
--list_variants; --launcher=local --parallel=N runs N at a time on this machine,
--launcher=slurm submits them as a SLURM job array (flaxcnn/sweep/launchers/).

The console shows a header, progress, evaluations, warnings and errors; the full
config and library INFO lines go to WORKDIR/logs/ (--verbosity=1 shows them too).
`--jax_*` flags set JAX options (e.g. --jax_log_compiles).
"""
import difflib
import logging as std_logging
import os
import re
import sys
import traceback

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from flaxcnn import backend, checkpoint, distributed, jobs, papers, sweep, train
from flaxcnn import config as config_lib, workdir as workdir_lib
from flaxcnn.config import default_config, parse_model_kwarg

config_flags.DEFINE_config_file("config", None, "experiment config file (experiments/*.py)",
                                lock_config=False)  # default_config() locks all but model.kwargs
flags.DEFINE_string("workdir", None, "directory for checkpoints, metrics and logs")
flags.DEFINE_integer("num_processes", 1, "number of processes (hosts) in the run")
flags.DEFINE_integer("process_id", 0, "this process's index")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0")
flags.DEFINE_integer("distributed_timeout", 300, "seconds a process waits for the others "
                     "(and for the coordinator) before it stops with one line")
flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() with the "
                  "cluster's auto-detected settings (TPU pods, SLURM)")
flags.DEFINE_bool("sweep", False, "run every variant of the config file's get_sweep() into "
                  "WORKDIR/<variant>/ (finished ones are skipped, interrupted ones resumed)")
flags.DEFINE_integer("sweep_index", None, "run only variant i of the sweep (one variant per "
                     "job of a cluster array or pod slice); implies --sweep")
flags.DEFINE_bool("list_variants", False, "print the sweep's variants (index, name, overrides, "
                  "status in WORKDIR) and their count, and exit")
flags.DEFINE_enum("launcher", None, sweep.launchers.names(), "run the sweep's variants as "
                  "separate jobs (implies --sweep): 'local' N at a time on this machine, 'slurm' as a "
                  "job array (flaxcnn/sweep/launchers/)")
flags.DEFINE_integer("parallel", None, "variants at once (default: this machine's devices // "
                     "--devices_per_variant; slurm: the array's limit, default all)")
flags.DEFINE_integer("devices_per_variant", 1, "GPUs / TPU chips per variant (on a CPU: host "
                     "devices, with an equal share of the cores)")
flags.DEFINE_integer("processes_per_variant", 1, "processes (slurm: nodes) per variant, "
                     "joined by jax.distributed")
for _launcher in sweep.launchers.REGISTRY.values():   # each launcher's own flag (--slurm)
  if _launcher.flag:
    flags.DEFINE_list(_launcher.flag, [], _launcher.flag_help)
flags.DEFINE_bool("retry_failed", True, "rerun the sweep's failed variants (otherwise only "
                  "pending and interrupted ones)")
FLAGS = flags.FLAGS


def run_job(config, workdir: str):
  """Runs config.job: 'train' (train.train_and_evaluate), 'eval'
  (train.evaluate_checkpoint), 'features' (features.run), or another of jobs.JOBS."""
  return jobs.get(config.job)(config, workdir)


def _library_errors_to_log_file(record) -> bool:
  """Errors that Orbax logs from its background threads (a failed asynchronous
  save: pages of traceback) go to the log file only; flaxcnn reports them as one
  line (checkpoint.CheckpointWriteError)."""
  if "/orbax/" in record.pathname.replace(os.sep, "/") and record.levelno >= std_logging.ERROR:
    record.levelno, record.levelname = std_logging.INFO, "INFO"
  return True


def _unraisable_to_log_file(unraisable, default=sys.unraisablehook) -> None:
  """Tensorstore callbacks of an aborted asynchronous save find Orbax's event loop
  closed; that is the same failure, already reported as one line: log it only."""
  if (isinstance(unraisable.exc_value, RuntimeError)
      and "Event loop is closed" in str(unraisable.exc_value)):
    logging.info("after a failed save: %r", unraisable.exc_value)
    return
  default(unraisable)


def _log_to_workdir(workdir: str) -> None:
  """Library INFO lines (Orbax, JAX) and the config go to WORKDIR/logs/; the console
  keeps warnings and errors, or everything with --verbosity=1."""
  log_dir = os.path.join(workdir, "logs")
  try:
    os.makedirs(log_dir, exist_ok=True)
  except OSError:
    return   # the workdir check reports it in one line
  handler = logging.get_absl_handler()
  handler.use_absl_log_file("flaxcnn", log_dir)
  if not FLAGS["stderrthreshold"].present:
    FLAGS.stderrthreshold = "info" if FLAGS.verbosity >= 1 else "warning"
    handler.addFilter(_library_errors_to_log_file)
    sys.unraisablehook = _unraisable_to_log_file
  if FLAGS.verbosity < 0 and not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.INFO)   # to the log file


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.config is None:
    raise app.UsageError("--config is required (a file under experiments/)")
  if FLAGS.list_variants:
    sys.exit(sweep.main(FLAGS["config"].config_filename, FLAGS.config, FLAGS.workdir,
                        list_only=True, fixed=_command_line_fields()))
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required (checkpoints, metrics and logs go there)")
  config, workdir = FLAGS.config, FLAGS.workdir
  try:
    workdir_lib.check_writable(workdir)
    _log_to_workdir(workdir)
    distributed.initialize(FLAGS.num_processes, FLAGS.process_id,
                           FLAGS.coordinator_address, FLAGS.distributed,
                           FLAGS.distributed_timeout)
    distributed.check_same_config(config)
    logging.info("config:\n%s", config)
    if FLAGS.sweep or FLAGS.sweep_index is not None or FLAGS.launcher:
      sys.exit(sweep.main(FLAGS["config"].config_filename, config, workdir,
                          index=FLAGS.sweep_index, fixed=_command_line_fields(),
                          launcher=FLAGS.launcher, settings=_launcher_settings(),
                          retry_failed=FLAGS.retry_failed))
    run_job(config, workdir)
  except checkpoint.CheckpointWriteError as e:
    # Orbax's aborted asynchronous writes leave futures that print pages when the
    # interpreter shuts down; everything is saved or cleaned up by now: leave at once.
    sys.stderr.write(f"error: {e}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    logging.flush()
    os._exit(1)
  except (OSError, ValueError, RuntimeError, train.NonFiniteLoss) as e:
    if jax.process_count() > 1:
      logging.error("process %d: %s", jax.process_index(), e)
    sys.exit(f"error: {e}")
  except MemoryError:   # numpy, while loading or decoding the data (XLA's: train.memory)
    sys.exit("error: out of memory while loading the data: lower --config.data.image_size "
             "or stream the images from disk (--config.data.source=folder or tfds)")
  except KeyboardInterrupt:   # before the loop's own handler (loading, compiling)
    sys.stderr.write(f"interrupted; the checkpoints in {workdir} are as they were "
                     "(each is written whole or not at all): rerun to resume\n")
    sys.exit(130)


def _launcher_settings() -> dict:
  """The launcher's flags as sweep.launch's keywords: the shared resources and the
  options of the chosen launcher's own flag."""
  if FLAGS.launcher and FLAGS.sweep_index is not None:
    raise ValueError("--sweep_index runs one variant here; --launcher runs them all as "
                     "jobs: give one of the two")
  settings = dict(parallel=FLAGS.parallel, devices_per_variant=FLAGS.devices_per_variant,
                  processes_per_variant=FLAGS.processes_per_variant)
  chosen = sweep.launchers.REGISTRY.get(FLAGS.launcher)
  if chosen is not None and chosen.flag:
    settings.update(chosen.parse_flag(FLAGS[chosen.flag].value))
  return settings


# Names other frameworks use for config fields, and where flaxcnn keeps them.
SYNONYMS = {"learning_rate": "optimizer.lr", "lr": "optimizer.lr",
            "weight_decay": "optimizer.weight_decay", "momentum": "optimizer.momentum",
            "epochs": "num_epochs", "steps": "num_steps", "warmup_epochs":
            "schedule.warmup_epochs", "model": "model.name", "arch": "model.name",
            "dataset": "data.name", "image_size": "data.image_size", "mixup": "augment.mixup_alpha",
            "cutout": "augment.cutout", "label_smoothing": "label_smoothing"}


def closest_field(dotted: str):
  """The field of default_config() a mistyped `dotted` most likely means, or None."""
  fields = list(papers.flatten(default_config()))
  leaf = dotted.split(".")[-1]
  if leaf in SYNONYMS:
    return SYNONYMS[leaf]
  close = difflib.get_close_matches(dotted, fields, n=1, cutoff=0.6)
  if close:
    return close[0]
  by_leaf = {f.split(".")[-1]: f for f in fields}
  close = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
  return by_leaf[close[0]] if close else None


def _unknown_field(e: BaseException, argv, path: str):
  """One line for a field the config does not have (on the command line or set in
  the config file), naming where and the field it most likely means; else None."""
  text = str(e).replace("\\", "")
  m = (re.search(r"""Key ["']([\w.]+)["'] does not exist""", text)
       or re.match(r"""\s*["']+([\w.]+)["']""", text))
  if not isinstance(e, (AttributeError, KeyError)) or not m:
    return None
  key = m.group(1)
  flag = next((a.split("=", 1)[0] for a in argv if a.startswith("--config.")
               and (a.split("=", 1)[0] + ".").endswith(f".{key}.")), None)
  if flag:
    where, dotted = flag, flag[len("--config."):]
  else:
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if path and os.path.abspath(f.filename) == os.path.abspath(path.split(":")[0])]
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else f"--config={path}"
    dotted = key
  hint = closest_field(dotted)
  return (f"{where}: the config has no field {dotted!r}"
          + (f"; did you mean {hint!r}?" if hint else "")
          + " (flaxcnn/config.py documents every field)")


def _config_error(e: BaseException, argv) -> str:
  """A flag or config-file error as one line (absl and ml_collections give pages)."""
  text = str(e)
  path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "")
  unknown = _unknown_field(e, argv, path)
  if unknown:
    return unknown
  if isinstance(e, AttributeError) or "Did you mean" in text:
    words = [w.strip("'\\\" ") for w in text.replace("\\n", "\n").split()]
    hint = text.split("Did you mean", 1)[1].split("instead")[0].strip(" '\\\"") \
        if "Did you mean" in text else ""
    field = words[0] if words else "?"
    return (f"--config: the config has no field {field!r}"
            + (f"; did you mean {hint!r}?" if hint else "")
            + " (flaxcnn/config.py documents every field)")
  if "No such file" in text or "Errno 2" in text or "could not be loaded" in text.lower():
    return f"--config={path}: no such config file (see experiments/)"
  lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
  if "Traceback" in text:          # an exception inside the config file: its last line
    last = lines[-1]
    if last.startswith("SyntaxError") or "SyntaxError" in text:
      where = next((ln for ln in lines if ln.startswith("File ") and path.split(":")[0]
                    in ln), "")
      return f"--config={path}: syntax error ({last}) {where}".strip()
    return f"--config={path}: {last}"
  if isinstance(e, SyntaxError):
    return f"--config={path}: syntax error in {e.filename} line {e.lineno}: {e.msg}"
  return " ".join(lines)[:400]


_KWARGS_FLAG = "--config.model.kwargs."
_MODEL_KWARGS = []   # the (KEY, VALUE) pairs of the command line, set by _parse_flags


def _command_line_fields():
  """The dotted config fields the command line overrides."""
  return (list(config_flags.get_override_values(FLAGS["config"]))
          + [f"model.kwargs.{key}" for key, _ in _MODEL_KWARGS])


def _pop_nones(argv):
  """(argv without its --config.FIELD=None flags, [FIELD]): ml_collections parses None
  as its field's type ('invalid literal for int()'); an optional field such as
  num_steps (unset: num_epochs counts) is set to None after the config loads."""
  rest, fields = [], []
  for arg in argv:
    field, _, value = arg[len("--config."):].partition("=")
    if arg.startswith("--config.") and value == "None" and not arg.startswith(_KWARGS_FLAG):
      fields.append(field)
    else:
      rest.append(arg)
  return rest, fields


def _set_none(config, field: str) -> None:
  """Unsets an optional field (None in `default_config()`, e.g. num_steps)."""
  default, node, parts = default_config(), config, field.split(".")
  try:
    for part in parts[:-1]:
      node, default = node[part], default[part]
    optional = default[parts[-1]] is None
  except (KeyError, AttributeError, TypeError):
    raise ValueError(f"--config.{field}=None: the config has no field {field!r} "
                     "(flaxcnn/config.py documents every field)") from None
  if not optional:
    raise ValueError(f"--config.{field}=None: {field} is not optional; give it a value")
  node[parts[-1]] = None


def _pop_model_kwargs(argv):
  """(argv without its --config.model.kwargs.KEY=VALUE flags, [(KEY, VALUE)]): those
  are applied after the config loads (`config.parse_model_kwarg`), since a preset's
  keyword is not a field of the config until a config file sets it. KEY=None drops
  a keyword the config file sets: the preset's default applies."""
  rest, pairs, i = [], [], 0
  while i < len(argv):
    arg = argv[i]
    key = arg[len(_KWARGS_FLAG):] if arg.startswith(_KWARGS_FLAG) else ""
    if key and "=" in key and "." not in key.split("=", 1)[0]:
      pairs.append(tuple(key.split("=", 1)))
    elif key and "." not in key:   # --config.model.kwargs.KEY VALUE, or a bare KEY: true
      if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
        pairs.append((key, argv[i + 1]))
        i += 1
      else:
        pairs.append((key, "true"))
    else:
      rest.append(arg)
    i += 1
  return rest, pairs


def _parse_flags(argv):
  """absl's flag parsing, with a config-file or override error as one line."""
  try:
    argv = [f"--config={config_lib.find_config_file(a[len('--config='):])}"
            if a.startswith("--config=") else a for a in argv]
    argv, model_kwargs = _pop_model_kwargs(argv)
    argv, nones = _pop_nones(argv)
    saved, sys.argv = sys.argv, argv   # ml_collections reads its overrides from sys.argv
    try:
      args = FLAGS(argv)
    finally:
      sys.argv = saved
    if FLAGS.config is not None:
      "seed" in FLAGS.config   # a file that failed to load raises here  # noqa: B015
      for field in nones:
        _set_none(FLAGS.config, field)
      kwargs = FLAGS.config.model.kwargs
      _MODEL_KWARGS[:] = model_kwargs
      for key, text in model_kwargs:
        with kwargs.unlocked():          # a config file may have locked it
          if text == "None":             # drop it: the preset's default applies
            if key in kwargs:
              del kwargs[key]
          else:
            kwargs[key] = parse_model_kwarg(FLAGS.config, key, text)
    return args
  except Exception as e:  # noqa: BLE001 (any error of a config file or flag)
    sys.stderr.write(f"error: {_config_error(e, argv)}\n")
    sys.exit(2)


def usage() -> str:
  """--help: what this command does and its own flags (absl's and JAX's: --helpfull)."""
  own = FLAGS.module_help(sys.modules[__name__]).split("\n", 1)[-1]
  return (__doc__.strip() + "\n\nflags:\n" + own + "\n\n  --config.FIELD=VALUE\n"
          "    any field of the config (flaxcnn/config.py:default_config documents them),\n"
          "    e.g. --config.model.kwargs.depth=56 (KEY=None: the preset's default again)\n\n"
          "--helpfull lists absl's and JAX's flags too (--jax_* set JAX options).")


def run():
  """Parses --jax_* flags and the flags above, then runs `main`."""
  if any(a in ("--help", "-h", "--helpshort", "-?") for a in sys.argv[1:]):
    print(usage())
    sys.exit(0)
  backend.configure()   # the CPU tuning; before JAX starts its backends
  jax.config.config_with_absl()
  app.run(main, flags_parser=_parse_flags)
