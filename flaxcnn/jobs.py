"""The jobs a config runs (config.job), each a function `run(config, workdir)`.

JOBS names each job once, with where its function lives ("module:function", imported
when the job runs, so that naming them costs nothing). A new job is a line here, or
a function of its own module decorated `@jobs.register("name")` (that module then
imported by the config file that uses it).
"""
import importlib

from flaxcnn import registration

JOBS = {
    "train": "flaxcnn.train:train_and_evaluate",   # train, evaluate, checkpoint (the default)
    "eval": "flaxcnn.train:evaluate_checkpoint",   # the latest checkpoint, on validation and test
    "features": "flaxcnn.features:run",            # a trained backbone's features + a linear head
}


def register(name: str):
  """Decorator: makes `fn(config, workdir)` the job `name`."""
  return registration.add_to(JOBS, name, "a job")


def names():
  return tuple(JOBS)


def get(name: str):
  """The function of job `name`."""
  if name not in JOBS:
    raise ValueError(f"config.job={name!r} is not one of {', '.join(JOBS)}")
  job = JOBS[name]
  if isinstance(job, str):
    module, _, function = job.partition(":")
    job = getattr(importlib.import_module(module), function)
  return job
