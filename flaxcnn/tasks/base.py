"""The task interface: what differs between training a classifier and a segmenter.

The training loop (flaxcnn/train/) is the same for every task. A `Task` owns
everything that depends on what the labels are: the config checks, loading the
data, augmenting a training batch (in memory and streamed), the targets and the
loss, the evaluation views and their per-batch sums, how the sums of a split
become its metrics, and how those metrics are printed.

To add a task: subclass `Task` in a module of this package, decorate it with
`@register`, and import the module in `flaxcnn/tasks/__init__.py`. A config picks
it with `config.task`, or by the model when that is None (`Task.handles`).
"""
import abc
from typing import Dict, Type

import jax
import jax.numpy as jnp
import optax

REGISTRY: Dict[str, Type["Task"]] = {}


def register(cls):
  """Class decorator: makes a Task selectable as `config.task = cls.name`."""
  if cls.name in REGISTRY:
    raise ValueError(f"a task named {cls.name!r} is already registered")
  REGISTRY[cls.name] = cls
  return cls


def cross_entropy(logits, targets):
  """Mean softmax cross-entropy over all examples (and pixels)."""
  return jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets))


class Task(abc.ABC):
  """A learning problem over the one training loop. Subclasses set `name`,
  `metric` (the headline evaluation metric, higher is better) and
  `accuracy_label` (how the console names the training accuracy)."""
  name: str = ""
  metric: str = "accuracy"
  accuracy_label: str = "acc"

  @classmethod
  def handles(cls, config) -> bool:
    """Whether this task is the default for `config` when config.task is None."""
    return False

  # ---------------------------------------------------------------- set-up

  @abc.abstractmethod
  def validate(self, config, num_devices: int) -> None:
    """One-line ValueErrors for a config this task cannot run (before any data)."""

  @abc.abstractmethod
  def load_data(self, config):
    """The `flaxcnn.data.Dataset` of config.data."""

  def check(self, config, model, dataset) -> None:
    """Config-against-data checks that need the dataset (before compiling)."""

  def train_size(self, config, dataset):
    """In-memory data: the side training crops are resized to, or None."""
    return None

  # ---------------------------------------------------------------- training

  @abc.abstractmethod
  def augment(self, run, rng, images, labels):
    """An in-memory training batch (uint8 on the device) -> (normalized x, labels)."""

  def augment_batch(self, run, rng, images, labels):
    """A streamed training batch (uint8, cropped/flipped by tf.data) -> (x, labels)."""
    raise ValueError(f"the {self.name} task reads its data into memory; set "
                     "config.data.in_memory=True")

  def targets(self, run, labels):
    """One-hot (label-smoothed) targets of integer labels, per example or pixel."""
    targets = jax.nn.one_hot(labels, run.num_classes)
    if run.config.label_smoothing:
      targets = optax.smooth_labels(targets, run.config.label_smoothing)
    return targets

  def loss(self, logits, targets):
    return cross_entropy(logits, targets)

  def accuracy(self, logits, labels):
    """The training accuracy of a batch (of examples, or of pixels)."""
    return jnp.mean(jnp.argmax(logits, -1) == labels)

  # ---------------------------------------------------------------- evaluation

  @abc.abstractmethod
  def eval_scores(self, run, variables, images, eval_size: int):
    """The model's scores of an evaluation batch (its views combined)."""

  @abc.abstractmethod
  def eval_sums(self, scores, labels, mask) -> dict:
    """Per-batch sums over the valid (mask 1) examples; summed over a split."""

  @abc.abstractmethod
  def reduce(self, totals, dataset) -> dict:
    """The metrics of a split from the summed (host) totals of its batches."""

  @abc.abstractmethod
  def eval_line(self, res) -> str:
    """An evaluation's console line."""

  def final_line(self, res) -> str:
    return f"{self.metric} {res[self.metric]:.4f}"

  def eval_panels(self, run, variables, images, labels):
    """Images to look at after an evaluation (uint8 (N, H, W, 3), e.g. predictions
    beside the targets; jittable), or None: TensorBoard shows them
    (config.log_images)."""
    return None
