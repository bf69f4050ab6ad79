"""What a person reads during a run: the header line, progress (a live bar on a
terminal, plain lines otherwise), evaluation lines and warnings. Only process 0
prints; the files a run writes are flaxcnn/metrics.py's."""
import sys
import time
from typing import Optional

import jax
import numpy as np
from absl import logging

from flaxcnn.metrics import format_duration
from flaxcnn.models import model_label, summary


class Console:

  def __init__(self, total: int):
    self.active = jax.process_index() == 0
    self.tty = self.active and sys.stdout.isatty()
    self.total, self._bar, self._t = total, False, 0.0

  def line(self, text: str):
    if not self.active:
      return
    if self._bar:
      sys.stdout.write("\r\033[K")
      self._bar = False
    print(text, flush=True)

  def progress(self, step: int, rate: Optional[float]):
    """The live bar (terminals only): `rate` is the training steps per second
    measured without evaluations, checkpoints and compiles (None: not yet)."""
    if not self.tty or time.time() - self._t < 0.25:
      return
    self._t = time.time()
    done = int(30 * step / max(self.total, 1))
    speed = (f"  {rate:.2f} steps/s  ETA {format_duration((self.total - step) / rate)}"
             if rate else "")
    sys.stdout.write(f"\r[{'#' * done}{'.' * (30 - done)}] {step}/{self.total}{speed}")
    sys.stdout.flush()
    self._bar = True


def data_label(config, dataset) -> str:
  """The data as the run names it: config.data.label, else the dataset's name."""
  return config.data.label or dataset.name


def start_label(config, run, resumed: Optional[int]) -> str:
  """Where the parameters come from: the checkpoint, init_from (and its phases), or
  a random initialization."""
  if resumed is not None:
    return f"Resumed from checkpoint at step {resumed}"
  if not config.init_from:
    return "from scratch"
  head = run.finetune[2] if run.finetune else 0
  phases = (f"; the head alone for {head} steps, then all parameters at "
            f"{config.finetune.lr_mult:g} x the rate" if head else "")
  return f"from {config.init_from} (init_from{phases})"


def header(config, run, dataset, workdir: str, resumed: Optional[int]) -> str:
  """A few short lines: the model (parameters, multiply-adds, dtype), the data, the
  budget and devices, the workdir and where the parameters start from."""
  h, w, c = dataset.image_shape
  abstract = jax.eval_shape(lambda: run.model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
      np.zeros((1, h, w, c), np.float32), train=False))
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(abstract["params"]))
  macs = ""
  if h == w:
    try:
      macs = f", {summary.count_macs(run.model, h, c) / 1e6:,.1f}M MACs"
    except Exception as e:  # noqa: BLE001 - the header never stops a run
      logging.info("no MAC count: %s", e)
  sizes = " / ".join(f"{k} {v:,}" for k, v in dataset.sizes.items())
  devices = f"{jax.device_count()} {jax.devices()[0].platform} device(s)"
  if jax.process_count() > 1:
    devices += f" in {jax.process_count()} processes"
  return "\n".join([
      f"{model_label(config)}: {n_params:,} params{macs}, {config.dtype}",
      f"  data:    {data_label(config, dataset)} ({sizes}; "
      f"{'x'.join(map(str, dataset.image_shape))}, {dataset.num_classes} classes)",
      f"  run:     {run.total_steps:,} steps ({run.total_steps / run.steps_per_epoch:.1f} "
      f"epochs) on {devices}",
      f"  workdir: {workdir}",
      f"  start:   {start_label(config, run, resumed)}"])
