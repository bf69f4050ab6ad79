"""Sweeps launched as separate jobs (flaxcnn/sweep/launchers/, through submitit): N
variants at once on this machine, each with its share of the cores; a killed variant
resumed by a relaunch; a preempted one requeued; a failing one recorded while the
others go on; the SLURM job array written for a cluster; two sweep processes on one
folder."""
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types

import pytest

from conftest import ROOT, one_host_device_flags, tiny_sweep_file
from flaxcnn import metrics, sweep
from flaxcnn.sweep import launchers

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"),
                                reason="CPU shares need Linux's sched_setaffinity")


def _json(path):
  with open(path) as f:
    return json.load(f)


def _config_file(tmp_path, num_steps=12, sweep_text="sweep.seeds(4)", checkpoint_every=4):
  """A digits ResNet-8 sweep file (the tests' tiny config), `num_steps` per variant."""
  return tiny_sweep_file(tmp_path, sweep_text, num_steps=num_steps, log_every_steps=2,
                         checkpoint_every_steps=checkpoint_every)


@pytest.fixture
def job_env(cache_env, monkeypatch):
  """The jobs (child processes) share a compilation cache; they import this checkout
  whether or not it is installed (the launcher puts it on their PYTHONPATH)."""
  monkeypatch.delenv("PYTHONPATH", raising=False)
  return cache_env


def _wait_until(predicate, timeout=300, every=0.05):
  deadline = time.time() + timeout
  while time.time() < deadline:
    value = predicate()
    if value:
      return value
    time.sleep(every)
  raise AssertionError(f"timed out after {timeout} s waiting for {predicate.__doc__}")


def test_two_variants_at_once_give_the_numbers_of_a_sequential_sweep(tmp_path, job_env):
  """4 seeds at --parallel=2: each variant's process gets half the cores, and its
  results equal those of a sequential sweep given the same cores, bit for bit (XLA's
  float sums depend on its thread count, so the reference runs on that many cores).
  Status passes through queued, running and finished."""
  config = _config_file(tmp_path)
  handle = sweep.launch(config, str(tmp_path / "parallel"), "local", parallel=2)
  seen = set()
  while not handle.done():
    seen.update(handle.status().status)
    time.sleep(0.05)
  records = handle.wait()
  assert [r["status"] for r in records] == ["finished"] * 4, [r.get("error") for r in records]
  assert {"queued", "running"} <= seen, seen
  table = handle.status()
  assert list(table.status) == ["finished"] * 4 and list(table.seed) == [0, 1, 2, 3]
  assert set(table.launcher) == {"local"} and table.job_id.notna().all()

  cores = sorted(os.sched_getaffinity(0))
  share = cores[:max(1, len(cores) // 2)]
  on_share = (f"import os, runpy, sys; os.sched_setaffinity(0, {share}); "
              "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
  reference = subprocess.run(
      [sys.executable, "-c", on_share, os.path.join(ROOT, "launch.py"), f"--config={config}",
       f"--workdir={tmp_path / 'sequential'}", "--sweep"], cwd=ROOT, capture_output=True,
      text=True, timeout=600, env=dict(os.environ, XLA_FLAGS=one_host_device_flags()))
  assert reference.returncode == 0, reference.stderr[-2000:]
  for name in ("seed=0", "seed=1", "seed=2", "seed=3"):
    ours = _json(tmp_path / "parallel" / name / "summary.json")
    theirs = _json(tmp_path / "sequential" / name / "summary.json")
    assert ours["test"] == theirs["test"] and ours["validation"] == theirs["validation"]


def test_a_killed_variant_resumes_on_relaunch_and_a_failing_one_does_not_stop_it(
    tmp_path, job_env):
  config = _config_file(tmp_path, num_steps=200, checkpoint_every=10, sweep_text=(
      'sweep.chain([{"model.kwargs.depth": 8}], [{"model.kwargs.depth": 9}])'))
  workdir = str(tmp_path / "sweep")
  handle = sweep.launch(config, workdir, "local", parallel=2)
  ckpts = os.path.join(workdir, "depth=8", "checkpoints")

  def trained_and_saved():
    """variant depth=8 running with a checkpoint"""
    r = sweep.records(workdir)[0]
    return r if r["status"] == "running" and os.path.isdir(ckpts) and os.listdir(ckpts) \
        and r.get("step", 0) >= 20 else None
  running = _wait_until(trained_and_saved)
  os.kill(running["pid"], signal.SIGKILL)
  records = handle.wait()
  assert [r["status"] for r in records] == ["interrupted", "failed"]
  assert "6n+2" in records[1]["error"]

  again = sweep.launch(config, workdir, "local", parallel=2, retry_failed=False)
  assert again.indices == [0]              # the failed variant is not run again
  first, second = again.wait()[0], sweep.records(workdir)[1]
  assert first["status"] == "finished" and first["attempts"] == 2
  assert second["status"] == "failed"
  steps = [r["step"] for r in metrics.read_jsonl(os.path.join(workdir, "depth=8"))
           if r["split"] == "train"]
  assert steps[-1] == 200 and steps == sorted(set(steps))   # resumed, no step twice
  assert _json(os.path.join(workdir, "depth=8", "summary.json"))["step"] == 200


def test_a_variant_warned_of_its_time_limit_is_requeued_and_resumes(tmp_path, job_env):
  """SIGUSR2 (SLURM's warning before the time limit, as submitit asks for it): the
  trainer saves a checkpoint, submitit requeues the job, and it resumes there."""
  config = _config_file(tmp_path, num_steps=500, checkpoint_every=250,
                        sweep_text='[{"seed": 0}]')
  workdir = str(tmp_path / "sweep")
  handle = sweep.launch(config, workdir, "local")

  def training():
    """the variant past step 20"""
    r = sweep.records(workdir)[0]
    return r if r["status"] == "running" and 20 <= r.get("step", 0) < 240 else None
  os.kill(_wait_until(training)["pid"], signal.SIGUSR2)
  record = handle.wait()[0]
  assert record["status"] == "finished" and record["attempts"] == 2
  vdir = os.path.join(workdir, "seed=0")
  assert _json(os.path.join(vdir, "summary.json"))["step"] == 500
  steps = [r["step"] for r in metrics.read_jsonl(vdir) if r["split"] == "train"]
  assert steps[-1] == 500 and steps == sorted(set(steps))


def test_a_variant_of_two_processes_runs_on_its_two_host_devices(tmp_path, job_env):
  """processes_per_variant=2: two processes joined by jax.distributed (gloo), one
  host device each, the coordinator on this machine."""
  config = _config_file(tmp_path, num_steps=4, sweep_text='[{"seed": 0}]')
  workdir = str(tmp_path / "sweep")
  handle = sweep.launch(config, workdir, "local", parallel=1, devices_per_variant=2,
                        processes_per_variant=2)
  record = handle.wait()[0]
  assert record["status"] == "finished", record.get("error")
  logs = "".join(open(os.path.join(workdir, ".submitit", f)).read()
                 for f in os.listdir(os.path.join(workdir, ".submitit")) if f.endswith(".out"))
  assert "on 2 cpu device(s)" in logs and "2 process" in logs


def test_sigint_to_the_launcher_stops_its_variants_after_a_checkpoint(tmp_path, job_env):
  """`kill -INT` of a launcher started in the background (SIGINT ignored, as a shell
  starts it) was ignored: the variants trained on, and a SIGKILLed launcher left them
  without it. Now SIGINT (or SIGTERM) to the launcher passes on to the running variant,
  which saves and stops, the queued one stays pending, and the launcher ends."""
  config = _config_file(tmp_path, num_steps=100000, checkpoint_every=10000,
                        sweep_text="sweep.seeds(2)")
  workdir = str(tmp_path / "sweep")
  env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1",
             XLA_FLAGS=one_host_device_flags())
  launcher = subprocess.Popen(
      [sys.executable, os.path.join(ROOT, "launch.py"), f"--config={config}",
       f"--workdir={workdir}", "--launcher=local", "--parallel=1"], cwd=ROOT, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
  try:
    def training():
      """the first variant past step 20"""
      r = sweep.records(workdir)[0] if os.path.exists(os.path.join(workdir, "sweep.json")) \
          else {}
      return r if r.get("status") == "running" and r.get("step", 0) >= 20 else None
    pid = _wait_until(training, timeout=120)["pid"]
    launcher.send_signal(signal.SIGINT)
    out, _ = launcher.communicate(timeout=60)
  finally:
    launcher.kill()
    for r in sweep.records(workdir):
      if r["status"] == "running":
        os.kill(r["pid"], signal.SIGKILL)
  assert "[sweep] SIGINT: stopping the running variants after their checkpoint" in out
  first, second = sweep.records(workdir)
  assert first["status"] == "interrupted" and first["pid"] == pid, first
  assert first["launcher_pid"] == launcher.pid
  assert second["status"] == "pending"
  assert os.listdir(os.path.join(workdir, "seed=0", "checkpoints"))
  assert not os.path.exists(os.path.join(workdir, "seed=1", "metrics.jsonl"))


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
  """sbatch and srun on PATH: sbatch answers with job 4242, as SLURM does."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'Submitted batch job 4242'\n")
  (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
  for f in bin_dir.iterdir():
    f.chmod(0o755)
  monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_the_slurm_job_array_has_a_task_per_pending_variant_and_its_resources(
    tmp_path, fake_slurm):
  config = _config_file(tmp_path)
  workdir = tmp_path / "sweep"
  (workdir / "seed=0").mkdir(parents=True)
  (workdir / "seed=0" / "summary.json").write_text('{"step": 12}')     # finished
  handle = sweep.launch(config, str(workdir), "slurm", parallel=2, slurm_partition="gpu",
                        devices_per_variant=2, cpus_per_task=8, mem_gb=32, timeout_min=90,
                        slurm_options={"account": "proj"})
  assert handle.indices == [1, 2, 3]
  script = (workdir / ".submitit" / "4242_submission.sh").read_text()
  assert f"export PYTHONPATH={ROOT}" in script
  for line in ("--array=0-2%2", "--partition=gpu", "--gpus-per-node=2", "--cpus-per-task=8",
               "--mem=32GB", "--time=90", "--signal=USR2@", "--account=proj", "--nodes=1"):
    assert f"#SBATCH {line}" in script, (line, script)
  table = sweep.status(str(workdir))
  assert list(table.status) == ["finished", "queued", "queued", "queued"]
  assert list(table.job_id[1:]) == ["4242_0", "4242_1", "4242_2"]
  # array task k runs variant handle.indices[k]
  import cloudpickle
  for k, index in enumerate(handle.indices):
    with open(workdir / ".submitit" / f"4242_{k}_submitted.pkl", "rb") as f:
      job = cloudpickle.load(f).function
    assert isinstance(job, launchers.VariantJob) and job.index == index
    assert job.overrides[index] == {"seed": index}
  # launching again submits nothing: every variant is finished or queued
  assert sweep.launch(config, str(workdir), "slurm").indices == []
  listing = sweep.describe(config, workdir=str(workdir)).splitlines()
  assert listing[2].endswith("\tqueued (job 4242_0)")


def test_slurm_without_sbatch_and_impossible_shares_are_one_line(tmp_path, monkeypatch):
  config = _config_file(tmp_path)
  monkeypatch.setenv("PATH", str(tmp_path))
  with pytest.raises(ValueError, match=r"--launcher=slurm: this machine has no sbatch"):
    sweep.launch(config, str(tmp_path / "s"), "slurm")
  with pytest.raises(ValueError, match=r"--devices_per_variant=3 must be a multiple"):
    sweep.launch(config, str(tmp_path / "s"), "local", devices_per_variant=3,
                 processes_per_variant=2)
  with pytest.raises(ValueError, match=r"needs 4 GPU devices; this machine has 2"):
    launchers.local.shares(launchers.Resources(parallel=2, devices_per_variant=2), "gpu", 2, [0])
  gpu = launchers.local.shares(launchers.Resources(devices_per_variant=2), "gpu", 4, [0, 1])
  assert [s["devices"] for s in gpu] == [[0, 1], [2, 3]]
  cpu = launchers.local.shares(launchers.Resources(parallel=2), "cpu", 1, [0, 1, 2, 3])
  assert [s["cores"] for s in cpu] == [[0, 1], [2, 3]]
  assert launchers.slurm.Slurm.parse_flag(["partition=gpu", "time=720", "mem_gb=64", "qos=high"]) == {
      "slurm_partition": "gpu", "timeout_min": 720, "mem_gb": 64.0,
      "slurm_options": {"qos": "high"}}
  with pytest.raises(ValueError, match=r"--slurm: time='2h' is not an integer"):
    launchers.slurm.Slurm.parse_flag(["time=2h"])


def test_two_sweep_processes_on_one_folder_leave_each_other_their_variants(tmp_path):
  """A variant whose workdir another live process holds is left to it (not failed):
  two --sweep processes on one folder both end without an error."""
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    plan = [{"seed": 0}, {"seed": 1}]
    busy = tmp_path / "seed=0"
    busy.mkdir()
    (busy / ".lock").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": holder.pid, "start": "now"}))
    trained = []

    def fake_train(config, vdir, data_cache):
      trained.append(os.path.basename(vdir))
      with open(os.path.join(vdir, "summary.json"), "w") as f:
        json.dump({"step": 1}, f)
      return {"step": 1}
    from conftest import tiny_config
    records = sweep.run(tiny_config(), str(tmp_path), sweep=plan, train_fn=fake_train,
                        compilation_cache=False)
    assert trained == ["seed=1"]
    assert [(r["status"], r.get("elsewhere")) for r in records] == [
        ("running", True), ("finished", None)]
    line = sweep.summary_line(records, str(tmp_path))
    assert "1 running (in another process)" in line and "failed" not in line
    assert not (busy / "variant.json").exists()       # its record is the holder's
  finally:
    holder.kill()


def test_jobs_import_this_checkout_not_its_package_folder_as_top_level():
  from flaxcnn.sweep import launchers
  (line,) = launchers.setup_lines()
  root = line.split("=", 1)[1].split("$", 1)[0].strip("'\"")
  assert os.path.isdir(os.path.join(root, "flaxcnn")) and os.path.samefile(root, ROOT)


def test_a_launcher_is_one_registered_class_with_its_own_options(tmp_path, monkeypatch):
  """A toy launcher declared here alone: sweep.launch takes its name and options,
  records its jobs as queued, and asks it whether a queued job has ended."""
  from flaxcnn.sweep.launchers import base
  monkeypatch.setattr(base, "REGISTRY", dict(base.REGISTRY))
  monkeypatch.setattr(launchers, "REGISTRY", base.REGISTRY)

  @base.register
  class Toy(base.Launcher):
    name = "toy"

    @dataclasses.dataclass
    class Options:
      queue: str = "default"

    def submit(self, handle, jobs, folder):
      for job in jobs:
        handle.jobs[job.index] = types.SimpleNamespace(done=lambda: True, job_id="7")
        base.mark_queued(handle.workdir, job, self.name, job_id=f"{self.options.queue}-7")

    @classmethod
    def job_over(cls, record, folder):
      return record["job_id"].startswith("lost")

  config, workdir = _config_file(tmp_path), str(tmp_path / "sweep")
  assert "toy" in launchers.names()
  handle = sweep.launch(config, workdir, "toy", queue="lost", parallel=2)
  assert handle.indices == [0, 1, 2, 3] and handle.runner.options.queue == "lost"
  assert list(sweep.status(workdir).job_id) == ["lost-7"] * 4
  assert sweep.launch(config, workdir, "toy").indices == [0, 1, 2, 3]   # jobs over: again
  assert sweep.launch(config, workdir, "toy").indices == []             # queued in "default"
  with pytest.raises(ValueError, match=r"--launcher=toy: no setting mem_gb"):
    sweep.launch(config, workdir, "toy", mem_gb=3)


def test_the_local_launcher_starts_each_settings_first_seed_before_any_repeat():
  overrides = [{"model.kwargs.depth": d, "seed": s} for d in (8, 14) for s in (0, 1)]
  jobs = [types.SimpleNamespace(index=i, overrides=overrides) for i in range(4)]
  order = [j.index for j in launchers.local.settings_first(jobs)]
  assert order == [0, 2, 1, 3]          # depth 8 and 14 seed 0, then both seeds 1
  seeds_only = [types.SimpleNamespace(index=i, overrides=[{"seed": s} for s in range(3)])
                for i in range(3)]
  assert [j.index for j in launchers.local.settings_first(seeds_only)] == [0, 1, 2]
