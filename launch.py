"""Trains and evaluates a flaxcnn experiment.

  python launch.py --config=experiments/quickstart.py --workdir=runs/quickstart
  python launch.py --config=experiments/wrn_28_10.py --workdir=runs/wrn \
      --config.optimizer.lr=0.05 --config.model.kwargs.dropout=0.3

A workdir that has checkpoints is resumed from the latest one. Several processes
(multi-host): pass --num_processes, --process_id and --coordinator_address (or set
the usual cluster environment and pass --distributed).
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
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  import jax
  from flaxcnn import config as config_lib, distributed, train
  distributed.initialize(FLAGS.num_processes, FLAGS.process_id,
                         FLAGS.coordinator_address, FLAGS.distributed)
  config = FLAGS.config
  try:
    config_lib.validate(config, jax.device_count())
  except ValueError as e:
    sys.exit(f"error: {e}")
  if jax.process_index() == 0:
    logging.info("config:\n%s", config)
    print(f"{jax.process_count()} process(es), {jax.device_count()} {jax.devices()[0].platform} "
          f"device(s); workdir {FLAGS.workdir}", flush=True)
  try:
    if config.mode == "eval":
      train.evaluate_checkpoint(config, FLAGS.workdir)
    else:
      train.train_and_evaluate(config, FLAGS.workdir)
  except (FileNotFoundError, ValueError, train.NonFiniteLoss) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
