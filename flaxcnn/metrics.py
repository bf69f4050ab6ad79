"""Run outputs: WORKDIR/metrics.jsonl, TensorBoard event files, the console line.

Only process 0 writes. TensorBoard event files are written with tensorboard's
pure-Python record writer onto a plain file (TensorFlow is never imported, so the
GPU/TPU path stays free of it); without tensorboard only metrics.jsonl is written.
"""
import json
import os
import socket
import time

import jax
from absl import logging


class MetricWriter:

  def __init__(self, workdir: str):
    self.active = jax.process_index() == 0
    self._tb = None
    if not self.active:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    try:
      from tensorboard.compat.proto import event_pb2, summary_pb2
      from tensorboard.summary.writer.record_writer import RecordWriter
      tb_dir = os.path.join(workdir, "tensorboard")
      os.makedirs(tb_dir, exist_ok=True)
      name = f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}"
      self._tb_file = open(os.path.join(tb_dir, name), "ab")
      self._tb = RecordWriter(self._tb_file)
      self._pb = (event_pb2, summary_pb2)
      self._tb.write(event_pb2.Event(wall_time=time.time(),
                                     file_version="brain.Event:2").SerializeToString())
    except ImportError:
      logging.warning("tensorboard is not installed: writing metrics.jsonl only")

  def write(self, step: int, split: str, values: dict, **fields):
    """One JSON line {step, split, **fields, **values} and TensorBoard scalars."""
    if not self.active:
      return
    record = {"step": int(step), "split": split, **fields,
              **{k: float(v) for k, v in values.items()}, "time": time.time()}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      event_pb2, summary_pb2 = self._pb
      summary = summary_pb2.Summary(value=[
          summary_pb2.Summary.Value(tag=f"{split}/{k}", simple_value=float(v))
          for k, v in values.items()])
      self._tb.write(event_pb2.Event(wall_time=time.time(), step=int(step),
                                     summary=summary).SerializeToString())
      self._tb_file.flush()

  def close(self):
    if self.active:
      self._jsonl.close()
      if self._tb is not None:
        self._tb_file.close()


def read_jsonl(workdir: str):
  """The records of WORKDIR/metrics.jsonl as a list of dicts."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
