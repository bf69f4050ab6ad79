"""Tasks (classification, segmentation) and the registry that picks one per config.

    launch -> config -> task (data, augmentation, loss, evaluation) -> train loop

`for_config(config)` returns the task named by `config.task`, or, when that is
None, the first registered task that `handles` the config's model (segmentation
for per-pixel models), else classification.
"""
from flaxcnn.tasks.base import REGISTRY, Task, cross_entropy, register  # noqa: F401
from flaxcnn.tasks.classification import Classification
from flaxcnn.tasks.segmentation import Segmentation  # noqa: F401

DEFAULT = Classification.name


def names():
  return tuple(REGISTRY)


def get(name: str) -> Task:
  if name not in REGISTRY:
    raise ValueError(f"config.task={name!r} is not a task; choose one of "
                     f"{', '.join(REGISTRY)} (or None: follow the model)")
  return REGISTRY[name]()


def for_config(config) -> Task:
  """The task of a config: config.task, else the one that handles its model."""
  name = config.get("task")
  if name is None:
    name = next((n for n, cls in REGISTRY.items() if cls.handles(config)), DEFAULT)
  return get(name)
