"""Trains and evaluates a flaxcnn experiment.

  python launch.py --config=experiments/quickstart.py --workdir=runs/quickstart
  python launch.py --config=experiments/wrn_28_10.py --workdir=runs/wrn \
      --config.optimizer.lr=0.05 --config.model.kwargs.dropout=0.3

A workdir that has checkpoints is resumed from the latest one. Several processes
(multi-host): pass --num_processes, --process_id and --coordinator_address (or set
the usual cluster environment and pass --distributed).

A config file that declares a sweep (get_sweep, see flaxcnn/sweep.py) runs all its
variants with --sweep, one of them with --sweep_index=i, and lists them with
--list_variants:

  python launch.py --config=experiments/ablations/digits_depth.py --workdir=runs/depth --sweep
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "experiment config file (experiments/*.py)",
                                lock_config=False)  # default_config() locks all but model.kwargs
flags.DEFINE_string("workdir", None, "directory for checkpoints, metrics and logs")
flags.DEFINE_integer("num_processes", 1, "number of processes (hosts) in the run")
flags.DEFINE_integer("process_id", 0, "this process's index")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0")
flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() with the "
                  "cluster's auto-detected settings (TPU pods, SLURM)")
flags.DEFINE_bool("sweep", False, "run every variant of the config file's get_sweep() into "
                  "WORKDIR/<variant>/ (finished ones are skipped, interrupted ones resumed)")
flags.DEFINE_integer("sweep_index", None, "run only variant i of the sweep (one variant per "
                     "job of a cluster array or pod slice); implies --sweep")
flags.DEFINE_bool("list_variants", False, "print the sweep's variants (index, name, overrides, "
                  "status in WORKDIR) and their count, and exit")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.list_variants:
    from flaxcnn import sweep
    sys.exit(sweep.main(FLAGS["config"].config_filename, FLAGS.config, FLAGS.workdir,
                        list_only=True))
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required (checkpoints, metrics and logs go there)")
  import jax
  from flaxcnn import config as config_lib, distributed, train
  distributed.initialize(FLAGS.num_processes, FLAGS.process_id,
                         FLAGS.coordinator_address, FLAGS.distributed)
  if FLAGS.sweep or FLAGS.sweep_index is not None:
    from flaxcnn import sweep
    sys.exit(sweep.main(FLAGS["config"].config_filename, FLAGS.config, FLAGS.workdir,
                        index=FLAGS.sweep_index))
  from flaxcnn import segmentation
  config = FLAGS.config
  try:
    seg = segmentation.is_segmentation(config)
    (segmentation.validate if seg else config_lib.validate)(config, jax.device_count())
  except ValueError as e:
    sys.exit(f"error: {e}")
  if jax.process_index() == 0:
    logging.info("config:\n%s", config)
    print(f"{jax.process_count()} process(es), {jax.device_count()} {jax.devices()[0].platform} "
          f"device(s); workdir {FLAGS.workdir}", flush=True)
  try:
    task = segmentation if seg else train
    if config.mode == "eval":
      task.evaluate_checkpoint(config, FLAGS.workdir)
    else:
      task.train_and_evaluate(config, FLAGS.workdir)
  except (FileNotFoundError, ValueError, train.NonFiniteLoss) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
