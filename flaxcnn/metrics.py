"""Run outputs: WORKDIR/metrics.jsonl, TensorBoard event files, durations.

Only process 0 writes. TensorBoard event files are written with tensorboard's
pure-Python record writer onto a plain file (TensorFlow is never imported, so the
GPU/TPU path stays free of it); without tensorboard only metrics.jsonl is written.

The history always matches the checkpoints: a run that resumes at step S drops the
lines after S (steps repeated after a SIGKILL are written once), and a run that
starts from scratch in a workdir with an old history moves it aside
(`metrics.jsonl.old-<time>`, `tensorboard.old-<time>`) instead of appending to it.
"""
import io
import json
import os
import socket
import time
from typing import Optional

import jax
import numpy as np
from absl import logging
from flax import traverse_util
from PIL import Image

from flaxcnn.workdir import METRICS


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(v, (bool, int, float, str)):
      out[f"{prefix}{k}"] = v
    elif isinstance(v, (list, tuple)) or v is None:
      out[f"{prefix}{k}"] = str(v)
  return out


NOT_CHARTED = ("count",)   # in metrics.jsonl, not a TensorBoard chart


def image_grid(images, pad: int = 2) -> np.ndarray:
  """(N, H, W, C) uint8 images tiled on a square-ish grid, `pad` pixels apart."""
  images = np.asarray(images)
  n, h, w, c = images.shape
  cols = int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / cols))
  grid = np.zeros((rows * (h + pad) - pad, cols * (w + pad) - pad, c), np.uint8)
  for i, image in enumerate(images):
    r, k = divmod(i, cols)
    grid[r * (h + pad):r * (h + pad) + h, k * (w + pad):k * (w + pad) + w] = image
  return grid


class WandbRun:
  """The run in Weights & Biases (config.wandb.project): the same scalars, images and
  histograms as TensorBoard, the config as the run's config. Its id is kept in
  WORKDIR/wandb_run_id, so a resumed run goes on in the same W&B run."""

  def __init__(self, workdir: str, settings, hparams):
    try:
      import wandb   # optional: pip install wandb
    except ImportError:
      raise ValueError("config.wandb.project is set but wandb is not installed: pip install "
                       "wandb (or leave config.wandb.project empty)") from None
    self.wandb = wandb
    id_file = os.path.join(workdir, "wandb_run_id")
    run_id = open(id_file).read().strip() if os.path.exists(id_file) else wandb.util.generate_id()
    with open(id_file, "w") as f:
      f.write(run_id)
    self.run = wandb.init(project=settings.project, entity=settings.entity or None,
                          name=os.path.basename(os.path.abspath(workdir)), id=run_id,
                          resume="allow", dir=workdir, config=hparams, mode=settings.mode)

  def log(self, step: int, values: dict) -> None:
    self.run.log(values, step=int(step))

  def image(self, step: int, tag: str, grid) -> None:
    self.log(step, {tag: self.wandb.Image(grid[..., 0] if grid.shape[-1] == 1 else grid)})

  def histograms(self, step: int, histograms: dict) -> None:
    self.log(step, {tag: self.wandb.Histogram(np_histogram=h)
                    for tag, h in histograms.items()})

  def close(self) -> None:
    self.run.finish()


class MetricWriter:

  def __init__(self, workdir: str, resume_step: Optional[int] = None, hparams=None,
               wandb=None):
    """`resume_step`: the step the run resumes at (None: a fresh start).
    `hparams`: a (nested) dict shown in TensorBoard's HParams view (and W&B's config).
    `wandb`: config.wandb; with a project, the metrics go to W&B too."""
    self.active = jax.process_index() == 0
    self._tb = self._wandb = None
    if not self.active:
      return
    if wandb is not None and wandb.project:
      self._wandb = WandbRun(workdir, wandb, hparams)
    os.makedirs(workdir, exist_ok=True)
    self._images_dir = os.path.join(workdir, "images")
    path = os.path.join(workdir, METRICS)
    tb_dir = os.path.join(workdir, "tensorboard")
    if resume_step is None and os.path.exists(path) and os.path.getsize(path):
      stamp = time.strftime("%Y%m%d-%H%M%S")
      os.replace(path, f"{path}.old-{stamp}")
      if os.path.isdir(tb_dir):
        os.replace(tb_dir, f"{tb_dir}.old-{stamp}")
      print(f"Starting a fresh history: the old metrics.jsonl (no checkpoint to resume) "
            f"is kept as {path}.old-{stamp}", flush=True)
    elif resume_step is not None and os.path.exists(path):
      self._truncate(path, resume_step)
    self._jsonl = open(path, "a")
    try:
      from tensorboard.compat.proto import event_pb2, summary_pb2
      from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError:
      logging.warning("tensorboard is not installed: writing metrics.jsonl only")
      return
    os.makedirs(tb_dir, exist_ok=True)
    name = f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}.{os.getpid()}"
    self._tb_file = open(os.path.join(tb_dir, name), "ab")
    self._tb = RecordWriter(self._tb_file)
    self._pb = (event_pb2, summary_pb2)
    self._event(file_version="brain.Event:2")
    if resume_step is not None:   # TensorBoard drops the older events after this step
      self._event(step=int(resume_step),
                  session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))
    if hparams:
      try:
        from tensorboard.plugins.hparams import summary_v2 as hp
        self._event(summary=hp.hparams_pb(_flatten(hparams)))
      except Exception as e:  # an old tensorboard: scalars still work
        logging.warning("could not write TensorBoard hparams: %s", e)
    self._tb_file.flush()

  @staticmethod
  def _truncate(path: str, step: int) -> None:
    with open(path) as f:
      lines = [line for line in f if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
      tmp = path + ".tmp"
      with open(tmp, "w") as f:
        f.writelines(kept)
      os.replace(tmp, path)

  def _event(self, **fields):
    event_pb2, _ = self._pb
    self._tb.write(event_pb2.Event(wall_time=time.time(), **fields).SerializeToString())

  def write(self, step: int, split: str, values: dict, **fields):
    """One JSON line {step, split, **fields, **values} and TensorBoard scalars (not
    the bookkeeping ones, NOT_CHARTED: an evaluation's example count)."""
    if not self.active:
      return
    record = {"step": int(step), "split": split, **fields,
              **{k: float(v) for k, v in values.items()}, "time": time.time()}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._wandb is not None:
      self._wandb.log(step, {f"{split}/{k}": float(v) for k, v in values.items()
                             if k not in NOT_CHARTED})
    if self._tb is not None:
      _, summary_pb2 = self._pb
      summary = summary_pb2.Summary(value=[
          summary_pb2.Summary.Value(tag=f"{split}/{k}", simple_value=float(v))
          for k, v in values.items() if k not in NOT_CHARTED])
      self._event(step=int(step), summary=summary)
      self._tb_file.flush()

  def image(self, step: int, tag: str, images) -> None:
    """A TensorBoard image: `images` (N, H, W, C) uint8, tiled into one grid; the
    latest of each tag is also WORKDIR/images/<tag, '/' as '_'>.png (figures, pages)."""
    if not self.active:
      return
    grid = image_grid(images)
    if self._wandb is not None:
      self._wandb.image(step, tag, grid)
    buffer = io.BytesIO()
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(buffer, format="PNG")
    os.makedirs(self._images_dir, exist_ok=True)
    with open(os.path.join(self._images_dir, tag.replace("/", "_") + ".png"), "wb") as f:
      f.write(buffer.getvalue())
    if self._tb is None:
      return
    _, summary_pb2 = self._pb
    value = summary_pb2.Summary.Value(tag=tag, image=summary_pb2.Summary.Image(
        height=grid.shape[0], width=grid.shape[1], colorspace=grid.shape[-1],
        encoded_image_string=buffer.getvalue()))
    self._event(step=int(step), summary=summary_pb2.Summary(value=[value]))
    self._tb_file.flush()

  def histograms(self, step: int, tree: dict, bins: int = 30) -> None:
    """A TensorBoard histogram per array of `tree` (nested dicts of arrays), tagged by
    its path: 'params/stage1_block1/conv1/kernel'."""
    if not self.active:
      return
    arrays = {tag: np.asarray(x, np.float64).ravel()
              for tag, x in traverse_util.flatten_dict(tree, sep="/").items()}
    arrays = {tag: x for tag, x in arrays.items() if x.size and np.all(np.isfinite(x))}
    hists = {tag: np.histogram(x, bins=bins if x.min() < x.max() else 1)
             for tag, x in arrays.items()}
    if self._wandb is not None:
      self._wandb.histograms(step, hists)
    if self._tb is None:
      return
    _, summary_pb2 = self._pb
    values = [summary_pb2.Summary.Value(tag=tag, histo=summary_pb2.HistogramProto(
        min=float(x.min()), max=float(x.max()), num=float(x.size), sum=float(x.sum()),
        sum_squares=float(np.dot(x, x)), bucket_limit=hists[tag][1][1:].tolist(),
        bucket=hists[tag][0].astype(float).tolist())) for tag, x in arrays.items()]
    self._event(step=int(step), summary=summary_pb2.Summary(value=values))
    self._tb_file.flush()

  def close(self):
    if self.active:
      self._jsonl.close()
      if self._wandb is not None:
        self._wandb.close()
      if self._tb is not None:
        self._tb_file.close()


def read_jsonl(workdir: str, name: str = METRICS):
  """The records of WORKDIR/`name` (metrics.jsonl, evaluations.jsonl) as dicts; a
  line cut short by a killed writer is skipped."""
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except ValueError:
        continue
  return records


def format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
