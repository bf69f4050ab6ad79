"""What a person reads during a run: the header line, progress (a live bar on a
terminal, plain lines otherwise), evaluation lines and warnings. Only process 0
prints; the files a run writes are flaxcnn/metrics.py's."""
import sys
import time
from typing import Optional

import jax
import numpy as np
from absl import logging

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

  def progress(self, step: int, start: float, first_step: int):
    if not self.tty or time.time() - self._t < 0.25:
      return
    self._t = time.time()
    frac = step / max(self.total, 1)
    done = int(30 * frac)
    rate = (step - first_step) / max(self._t - start, 1e-9)
    sys.stdout.write(f"\r[{'#' * done}{'.' * (30 - done)}] {step}/{self.total} "
                     f"{rate:.2f} steps/s")
    sys.stdout.flush()
    self._bar = True


def header(config, run, dataset, workdir: str, resumed: Optional[int]) -> str:
  """One line: model, parameters, multiply-adds, data, devices, steps, workdir."""
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
  start = f"Resumed from checkpoint at step {resumed}" if resumed is not None \
      else "from scratch"
  return (f"{model_label(config)}: {n_params:,} params{macs}, on {dataset.name} "
          f"({sizes}; {'x'.join(map(str, dataset.image_shape))}, {dataset.num_classes} "
          f"classes) | {devices} | {run.total_steps:,} steps "
          f"({run.total_steps / run.steps_per_epoch:.1f} epochs), {config.dtype} | "
          f"{workdir} | {start}")
