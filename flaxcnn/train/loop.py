"""The training loop: a step, then the periodic actions that are due.

    state, metrics = step_fn(state, *feed.train_inputs(step))
    for action in (log, evaluate, plateau, checkpoint): if due: state = action(state, step)

Each action is a small object with `due(step, done, preempted)` and
`__call__(state, step) -> state`; what they share (config, run, data, writers,
checkpointer, console, summary) is the `Context`, not closures. Stage switches
(progressive learning), the fine-tuning phase switch and profiling happen
before a step; SIGTERM/SIGINT and preemption notices end the loop after a
checkpoint.
"""
import dataclasses
import functools
import json
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flaxcnn import console as console_lib, distributed, models, optim, tasks
from flaxcnn import workdir as workdir_lib
from flaxcnn.checkpoint import Checkpointer
from flaxcnn.data import feeds
from flaxcnn.data.core import fingerprint
from flaxcnn.metrics import MetricWriter, format_duration, read_jsonl
from flaxcnn.train import finetune, memory, stages, steps
from flaxcnn.train.state import check_resume, create_state, load_state, restore, setup


class NonFiniteLoss(FloatingPointError):
  pass


@dataclasses.dataclass
class Context:
  """What the loop's actions share."""
  config: Any
  workdir: str
  run: Any                 # the first stage's Run (optimizer, schedule, sizes)
  dataset: Any
  ckpt: Checkpointer
  writer: MetricWriter
  console: console_lib.Console
  lock: Any
  summary: dict = dataclasses.field(default_factory=dict)   # latest evaluation per split


class _Interrupt:
  """SIGTERM, SIGINT and SIGUSR2 (a cluster's warning before the job's time limit:
  SLURM's --signal, as submitit asks for) set a flag; the loop saves a checkpoint and
  returns with `interrupted` (and the signal's name) in its summary."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)

  def __init__(self):
    self.signal = None
    self._old = {}

  def __enter__(self):
    for s in self.SIGNALS:
      try:
        self._old[s] = signal.signal(s, self._handle)
      except ValueError:  # not the main thread
        pass
    return self

  def _handle(self, signum, frame):
    self.signal = signum

  def __exit__(self, *exc):
    for s, h in self._old.items():
      signal.signal(s, h)


# ----------------------------------------------------------------------------- actions

class LogMetrics:
  """Keeps each step's metrics on the device; every log_every_steps (and before
  an evaluation or a checkpoint) fetches them, stops on a non-finite loss or
  state, and writes one train line."""

  def __init__(self, ctx: Context, first_step: int):
    self.ctx, self.pending = ctx, []
    self.t_last, self.step_last = time.time(), first_step
    self.rate = None   # training steps per second, evaluations and compiles left out

  def restart(self, step):
    """Time from here: what ran since the last log (an evaluation, a checkpoint, a
    compile) is not training time, and the ETA counts training steps only."""
    self.t_last, self.step_last = time.time(), step

  def add(self, metrics):
    self.pending.append(metrics)

  def due(self, step, done, preempted):
    return step % self.ctx.config.log_every_steps == 0 or done or preempted

  def __call__(self, state, step):
    if not self.pending:
      return state
    ctx = self.ctx
    m = jax.device_get(self.pending)
    self.pending = []
    self._check_finite(m, step)
    now = time.time()
    if step > self.step_last:   # (none when the last compile or evaluation ended here)
      steps_per_sec = (step - self.step_last) / max(now - self.t_last, 1e-9)
      # smoothed over the log intervals, so one slow interval does not swing the ETA
      self.rate = steps_per_sec if self.rate is None else 0.5 * (self.rate + steps_per_sec)
    ips = (self.rate or 0.0) * ctx.run.global_batch
    values = {k: float(np.mean([x[k] for x in m]))
              for k in ("loss", "accuracy", "grad_norm", "param_norm")}
    values.update(lr=float(m[-1]["lr"]), img_per_sec=ips)
    epoch = step / ctx.run.steps_per_epoch
    ctx.writer.write(step, "train", values, epoch=epoch)
    ctx.lock.heartbeat()
    left = (ctx.run.total_steps - step) / self.rate if self.rate else None
    workdir_lib.write_progress(ctx.workdir, step, ctx.run.total_steps, left)
    eta = format_duration(left) if left is not None else "-"
    ctx.console.line(
        f"epoch {epoch:7.2f}  step {step}/{ctx.run.total_steps}  loss {values['loss']:.4f}  "
        f"{ctx.run.task.accuracy_label} {values['accuracy']:.4f}  lr {values['lr']:.4g}  "
        f"|g| {values['grad_norm']:.3g}  {ips:8.1f} img/s  ETA {eta}")
    self.t_last, self.step_last = now, step
    return state

  def _check_finite(self, m, step):
    bad = [i for i, x in enumerate(m) if x["nonfinite_loss"] or x["nonfinite_state"]]
    if not bad:
      return
    i, ckpt = bad[0], self.ctx.ckpt
    what = "loss is NaN/Inf" if m[i]["nonfinite_loss"] else \
        "parameters or BatchNorm statistics became NaN/Inf"
    last = ckpt.steps()[-1] if ckpt.steps() else None
    raise NonFiniteLoss(
        f"{what} at step {step - len(m) + i + 1}; the run stopped and "
        f"the last good checkpoint ({'step ' + str(last) if last is not None else 'none'}) "
        f"in {ckpt.directory} is kept. Lower config.optimizer.lr or add warmup "
        f"(config.schedule.warmup_epochs), then rerun to resume.")


class Evaluate:
  """The task's metrics on the validation and test splits (and of the EMA weights)
  every eval_every_epochs and at the end."""

  def __init__(self, ctx: Context):
    self.ctx = ctx
    self.every = max(1, int(round(ctx.config.eval_every_epochs * ctx.run.steps_per_epoch)))
    self.feed = feeds.make_feed(ctx.run, ctx.dataset)
    self.step_fn = steps.make_eval_step(ctx.run, feeds.eval_image_size(ctx.config.data,
                                                                       ctx.dataset))
    self.panels = None

  def due(self, step, done, preempted):
    return step % self.every == 0 or done

  def __call__(self, state, step):
    try:
      return self._evaluate(state, step)
    except Exception as e:
      if not memory.is_out_of_memory(e) or not memory.state_alive(state):
        raise
      self.ctx.ckpt.save(state)   # the steps trained so far are not lost
      self.ctx.ckpt.wait()
      raise memory.explain(self.ctx.config, "the evaluation", e, (
          f"the {step} trained steps are saved (checkpoint {step}): rerun with a smaller "
          "eval_batch_size to resume")) from None

  def _evaluate(self, state, step):
    ctx, cfg = self.ctx, self.ctx.config
    epoch = step / ctx.run.steps_per_epoch
    weights = [("", state.params, state.batch_stats)]
    if cfg.ema_decay:
      weights.append(("_ema", state.ema["params"], state.ema["batch_stats"]))
    for name in ("validation", "test"):
      if name not in ctx.dataset.splits:
        continue
      for suffix, params, stats in weights:
        res = steps.evaluate(ctx.run, self.step_fn, params, stats,
                             self.feed.eval_batches(name, cfg.eval_batch_size), ctx.dataset)
        ctx.writer.write(step, name + suffix, res, epoch=epoch)
        ctx.summary[name + suffix] = res
        ctx.console.line(f"eval {name + suffix:14s} step {step}  epoch {epoch:.2f}  "
                         + ctx.run.task.eval_line(res))
    self.log_panels(state, step)
    if cfg.log_histograms:
      ctx.writer.histograms(step, jax.device_get(
          {"params": state.params, "batch_stats": state.batch_stats}))
    return state

  def log_panels(self, state, step, count: int = 4):
    """TensorBoard: the task's evaluation panels (segmentation: image, true and
    predicted masks) of the first validation images held in memory (one process)."""
    split = self.ctx.dataset.splits.get("validation") if hasattr(self.ctx.dataset, "splits") \
        else None
    if (not self.ctx.config.log_images or getattr(split, "images", None) is None
        or jax.process_count() > 1):
      return
    if self.panels is None:   # compiled once per run
      self.panels = jax.jit(functools.partial(self.ctx.run.task.eval_panels, self.ctx.run))
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    panels = self.panels(variables, split.images[:count], split.labels[:count])
    if panels is not None:
      self.ctx.writer.image(step, "validation/predictions", jax.device_get(panels))


class Plateau:
  """schedule.name='plateau': after each evaluation, the learning-rate scale decays
  when the validation error (1 - the task's metric: accuracy, segmentation's mean
  IoU) has not improved for `patience` evaluations."""

  def __init__(self, ctx: Context, evaluation: Evaluate):
    self.ctx, self.evaluation = ctx, evaluation
    self.rule = optim.Plateau(ctx.config.schedule.patience, ctx.config.schedule.factor)

  def due(self, step, done, preempted):
    return (self.ctx.config.schedule.name == "plateau" and "validation" in self.ctx.summary
            and self.evaluation.due(step, done, preempted))

  def __call__(self, state, step):
    error = 1.0 - self.ctx.summary["validation"][self.ctx.run.task.metric]
    best, bad, mult = self.rule.update(float(state.plateau_best), int(state.plateau_bad),
                                       error)
    put = lambda x: jax.device_put(x, self.ctx.run.replicated)  # noqa: E731
    if mult != 1.0:
      self.ctx.console.line(f"validation error plateaued: learning rate x{mult}")
    return state.replace(plateau_best=put(jnp.float32(best)), plateau_bad=put(jnp.int32(bad)),
                         lr_scale=put(state.lr_scale * mult))


class SaveCheckpoint:
  """Every checkpoint_every_steps, at the end and on preemption (the loop fetches
  the metrics first: a non-finite state is never saved)."""

  def __init__(self, ctx: Context):
    self.ctx = ctx

  def due(self, step, done, preempted):
    return step % self.ctx.config.checkpoint_every_steps == 0 or done or preempted

  def __call__(self, state, step):
    self.ctx.ckpt.save(state)
    return state


class Profile:
  """config.profile_steps > 0: a jax.profiler trace of that many steps after the
  first (compiling) one, into WORKDIR/tensorboard/plugins/profile/, where
  TensorBoard's profile tab finds it (pip install tensorboard-plugin-profile)."""

  def __init__(self, ctx: Context, first_step: int):
    n = ctx.config.profile_steps
    self.ctx, self.window = ctx, (first_step + 1, first_step + 1 + n) if n else None
    self.dir = os.path.join(ctx.workdir, "tensorboard")

  def before(self, step):
    if self.window and step == self.window[0]:
      jax.profiler.start_trace(self.dir)

  def after(self, state, step):
    if self.window and step == self.window[1]:
      jax.block_until_ready(state)
      self.stop()
      self.ctx.console.line(
          f"profiled steps {self.window[0]}-{self.window[1] - 1} into {self.dir}/plugins/"
          f"profile: `tensorboard --logdir {self.dir}`, profile tab (pip install "
          "tensorboard-plugin-profile)")
      self.window = None

  def stop(self):
    if self.window:
      jax.profiler.stop_trace()


class Phases:
  """Before each step: the stage of progressive learning (its Run, feed and
  compiled step) and, when fine-tuning, the switch from head-only training to
  all parameters (a fresh optimizer state)."""

  def __init__(self, ctx: Context):
    self.ctx = ctx
    self.plan = stages.stage_plan(ctx.config, ctx.run.total_steps)
    self.head_steps = ctx.run.finetune[2] if ctx.run.finetune else 0
    self.stage, self.feed, self.step_fn, self.run = None, None, None, None

  def __call__(self, state, step):
    ctx = self.ctx
    current = next(i for i, (a, b, _) in enumerate(self.plan) if a <= step < b)
    if current != self.stage:
      self.stage = current
      run, data = stages.stage_run(ctx.config, ctx.dataset, self.plan[current][2], ctx.run)
      self.feed = feeds.make_feed(run, data, arrays=getattr(self.feed, "arrays", None))
      self.step_fn = steps.make_step_for(run, self.feed)
      self.run = run
      if len(self.plan) > 1:
        ctx.console.line(f"stage {current + 1}/{len(self.plan)} from step {step}: " + ", ".join(
            f"{k.split('.')[-1]}={v:g}" for k, v in self.plan[current][2].items()
            if not isinstance(v, tuple)))
    if self.head_steps and step == self.head_steps:   # head trained: fresh optimizer for all
      state = state.replace(opt_state=jax.jit(
          ctx.run.tx.init, out_shardings=ctx.run.replicated)(state.params))
      ctx.console.line(f"fine-tuning from step {step}: all parameters train now, at "
                       f"{ctx.config.finetune.lr_mult:g} x the rate (the head alone before)")
    return state

  def train_step(self, state, step):
    inputs = self.feed.train_inputs(step)
    if step == 0 and self.ctx.config.log_images:   # before the step: it donates the state
      self.log_images(state, inputs)
    return self.step_fn(state, *inputs)

  def log_images(self, state, inputs):
    """TensorBoard: the first step's augmented training images, to check by eye."""
    view = steps.make_view_step(self.run, self.feed.in_memory)
    images = jax.device_get(view(state, *inputs))
    self.ctx.writer.image(0, "train/augmented_images", images)


# ----------------------------------------------------------------------------- the loop

def train_and_evaluate(config, workdir: str, dataset=None) -> dict:
  """Trains per `config` in `workdir`, resuming from its latest checkpoint.

  Returns the final summary: step, epoch, seconds, interrupted, and the
  validation/test metrics of the task.
  """
  task = tasks.for_config(config)
  task.validate(config, jax.device_count())
  lock = workdir_lib.prepare(workdir)
  try:
    if dataset is None:
      dataset = task.load_data(config)
    prints = fingerprint(dataset)          # each split's size:hash, computed once here
    distributed.check_same_data(dataset, prints)
    kept = workdir_lib.keep_validation(workdir, dataset, config.data.allow_changed, prints)
    if kept is not dataset:                # the recorded validation split kept
      dataset, prints = kept, fingerprint(kept)
    run = setup(config, dataset)
    ckpt = Checkpointer(workdir, config.keep_checkpoints)
    try:
      state, resumed = _restore_or_init(config, workdir, run, dataset, ckpt)
      done = finished_summary(workdir, resumed) if resumed == run.total_steps else None
      if done is None:
        ctx = _open(config, workdir, run, dataset, ckpt, lock, resumed, prints)
    except BaseException:
      ckpt.close()
      raise
    if done is not None:   # the run had finished: nothing changes on disk
      ckpt.close()
      _say_finished(workdir, run, done)
      return done
    ctx.console.line(console_lib.header(config, run, dataset, workdir, resumed))
    return _loop(ctx, state)
  finally:
    lock.release()


def finished_summary(workdir: str, step) -> dict:
  """The summary.json of a run that finished at checkpoint `step`, else None. (Only
  process 0 writes it: a multi-process run evaluates its final state again.)"""
  if jax.process_count() > 1:
    return None
  try:
    with open(os.path.join(workdir, workdir_lib.SUMMARY)) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return None
  return summary if summary.get("step") == step and not summary.get("interrupted") else None


def _say_finished(workdir: str, run, summary: dict) -> None:
  if jax.process_index() == 0:
    parts = [f"{k} {run.task.final_line(summary[k])}" for k in
             ("validation", "test", "validation_ema", "test_ema") if k in summary]
    print(f"{workdir} finished at step {summary['step']} ({', '.join(parts)}); nothing to "
          "do (raise config.num_steps or num_epochs to train on)", flush=True)


def _restore_or_init(config, workdir, run, dataset, ckpt):
  """(state, resumed step or None): the workdir's latest checkpoint (checked against
  the config), else a fresh state (or one from config.init_from)."""
  fresh = create_state(run, dataset.image_shape)
  state, resumed = restore(config, workdir, ckpt, fresh)
  if resumed is not None:
    check_resume(config, workdir, resumed)
    return state, resumed
  return (finetune.load_initial_weights(config, fresh, run) if config.init_from
          else fresh), None


def _open(config, workdir, run, dataset, ckpt, lock, resumed, prints) -> Context:
  """The run's record opened: the data (`prints`: its fingerprint) checked against
  the run's start (on a resume) and recorded, config.json, the metric writers."""
  if resumed is not None:
    workdir_lib.check_same_data(workdir, dataset, resumed, config.data.allow_changed, prints)
    changed = workdir_lib.record_config_changes(config, workdir, resumed)
    if changed and jax.process_index() == 0:
      print(f"Resuming at step {resumed} with a changed config (kept in "
            f"{workdir_lib.CONFIG_HISTORY}): {'; '.join(changed[:6])}", flush=True)
  workdir_lib.save_config(config, workdir)
  workdir_lib.write_data_stats(workdir, dataset, prints, resumed=resumed is not None,
                               label=console_lib.data_label(config, dataset))
  writer = MetricWriter(workdir, resume_step=resumed,
                        hparams=json.loads(config.to_json_best_effort()), wandb=config.wandb)
  return Context(config=config, workdir=workdir, run=run, dataset=dataset, ckpt=ckpt,
                 writer=writer, console=console_lib.Console(run.total_steps), lock=lock)


def _loop(ctx: Context, state) -> dict:
  total = ctx.run.total_steps
  step = first_step = int(jax.device_get(state.step))
  t_start = time.time()
  log, evaluate, phases = LogMetrics(ctx, step), Evaluate(ctx), Phases(ctx)
  actions = [log, evaluate, Plateau(ctx, evaluate), SaveCheckpoint(ctx)]
  profile = Profile(ctx, step)
  interrupt = _Interrupt()
  try:
    with interrupt:
      if step < total:
        ctx.console.line(f"compiling the training step (the first step at {step} waits "
                         "for it) ...")
      while step < total:
        stage = phases.stage
        state = phases(state, step)
        profile.before(step)
        state, metrics = phases.train_step(state, step)
        step += 1
        if step == first_step + 1 or phases.stage != stage:   # the step just compiled
          log.restart(step)
        profile.after(state, step)
        log.add(metrics)
        ctx.console.progress(step, log.rate)
        done = step == total
        preempted = bool(interrupt.signal) or ctx.ckpt.reached_preemption(step)
        for action in actions:
          if action.due(step, done, preempted):
            if action is not log:
              log(state, step)   # raises before a non-finite state is evaluated or saved
            state = action(state, step)
            if action is not log:
              log.restart(step)
        if preempted:
          _stop_for(ctx, interrupt, step)
          break
    profile.stop()
    if not interrupt.signal and not ctx.summary:   # resumed from the final checkpoint
      saved = _evaluations_at(ctx.workdir, step)   # killed after its final evaluation
      if saved:
        ctx.summary.update(saved)
      else:
        evaluate(state, step)
  except Exception as e:
    if not memory.is_out_of_memory(e):
      raise
    last = ctx.ckpt.steps()
    raise memory.explain(ctx.config, "the training step", e, (
        f"the last checkpoint (step {last[-1]}) is kept: rerun to resume from it" if last
        else "")) from None
  finally:
    ctx.ckpt.close()   # waits for an asynchronous save in flight
    ctx.writer.close()
  return _finish(ctx, step, time.time() - t_start, interrupt.signal)


def _evaluations_at(workdir: str, step: int) -> dict:
  """{split: metrics} of the evaluation lines metrics.jsonl has at `step` (one
  process only: the others may not see process 0's file)."""
  if jax.process_count() > 1:
    return {}
  meta = ("step", "split", "epoch", "time")
  return {r["split"]: {k: v for k, v in r.items() if k not in meta}
          for r in read_jsonl(workdir) if r.get("step") == step and r.get("split") != "train"}


def _stop_for(ctx: Context, interrupt: _Interrupt, step: int):
  ctx.ckpt.wait()
  why = f"signal {interrupt.signal}" if interrupt.signal else "preemption"
  ctx.console.line(f"Received {why}: saved checkpoint at step {step}; "
                   "rerun the same command to resume.")
  interrupt.signal = interrupt.signal or "preemption"


def _finish(ctx: Context, step: int, seconds: float, stopped_by) -> dict:
  interrupted = bool(stopped_by)
  summary = dict(ctx.summary, step=step, epoch=step / ctx.run.steps_per_epoch,
                 seconds=seconds, interrupted=interrupted)
  if interrupted:   # (summary.json is written for finished runs only)
    summary["signal"] = (signal.Signals(stopped_by).name if isinstance(stopped_by, int)
                         else str(stopped_by))
  if jax.process_index() == 0 and not interrupted:
    parts = [f"{k} {ctx.run.task.final_line(summary[k])}" for k in
             ("validation", "test", "validation_ema", "test_ema") if k in summary]
    ctx.console.line(f"Finished {models.model_label(ctx.config)} on "
                     f"{console_lib.data_label(ctx.config, ctx.dataset)}: "
                     f"step {step}, "
                     f"epoch {summary['epoch']:.2f}, " + ", ".join(parts) +
                     f", {format_duration(seconds)}")
    workdir_lib.write_json(os.path.join(ctx.workdir, workdir_lib.SUMMARY), summary)
  return summary


def evaluate_checkpoint(config, workdir: str, dataset=None) -> dict:
  """Evaluates the latest checkpoint in `workdir` on the validation and test splits
  (classification: with `config.eval_mode`, center / ten_crop / multiscale) and
  records the results in WORKDIR/evaluations.jsonl (results --paper reads them)."""
  task = tasks.for_config(config)
  task.validate(config, jax.device_count())
  if dataset is None:
    dataset = task.load_data(config)
  run = setup(config, dataset)
  state = load_state(config, workdir, dataset)
  feed = feeds.make_feed(run, dataset)
  eval_step = steps.make_eval_step(run, feeds.eval_image_size(config.data, dataset))
  results = {}
  for name in ("validation", "test"):
    if name in dataset.splits:
      try:
        res = steps.evaluate(run, eval_step, state.params, state.batch_stats,
                             feed.eval_batches(name, config.eval_batch_size), dataset)
      except Exception as e:
        if not memory.is_out_of_memory(e):
          raise
        raise memory.explain(config, "the evaluation", e) from None
      results[name] = res
      if jax.process_index() == 0:
        print(f"eval {name:10s} ({config.eval_mode}) step {int(state.step)}: "
              + task.eval_line(res), flush=True)
  workdir_lib.record_evaluation(workdir, config, int(state.step), results)
  return results
