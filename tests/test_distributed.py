"""Data parallelism: 8 devices and 2 processes give the losses of 1 device."""
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from conftest import ROOT, one_host_device_flags, run_launch
from flaxcnn import checkpoint, metrics

ARGS = ["--config=experiments/quickstart.py", "--config.num_steps=6",
        "--config.log_every_steps=1", "--config.eval_every_epochs=100",
        "--config.checkpoint_every_steps=3", "--config.batch_size=64"]


def _train_losses(workdir):
  return np.array([l["loss"] for l in metrics.read_jsonl(str(workdir)) if l["split"] == "train"])


@pytest.fixture(scope="module")
def single_device_losses(tmp_path_factory):
  d = tmp_path_factory.mktemp("one")
  r = run_launch(ARGS + [f"--workdir={d}"], env={"XLA_FLAGS": one_host_device_flags()})
  assert r.returncode == 0, r.stderr[-2000:]
  assert "1 cpu device(s)" in r.stdout
  return _train_losses(d)


def test_eight_devices_match_one(single_device_losses, tmp_path):
  r = run_launch(ARGS + [f"--workdir={tmp_path}"],
                 env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert r.returncode == 0, r.stderr[-2000:]
  assert "8 cpu device(s)" in r.stdout
  losses = _train_losses(tmp_path)
  assert len(losses) == 6
  np.testing.assert_allclose(losses, single_device_losses, rtol=2e-4)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _two_processes(workdir, extra=((), ()), ids=(0, 1)):
  """(processes, outputs) of a 2-process launch on this machine; extra[i]: flags of
  process i only; ids: their --process_id."""
  port = _free_port()
  env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1",
             XLA_FLAGS=one_host_device_flags())   # 2 processes x 1 device, as one process
  procs = [subprocess.Popen(
      [sys.executable, "launch.py"] + ARGS + [
          f"--workdir={workdir}", "--num_processes=2", f"--process_id={ids[i]}",
          f"--coordinator_address=127.0.0.1:{port}"] + list(extra[i]),
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  return procs, [p.communicate(timeout=600)[0] for p in procs]


def test_two_processes_match_one(single_device_losses, tmp_path):
  procs, outs = _two_processes(tmp_path)
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  assert "2 cpu device(s) in 2 processes" in outs[0]
  losses = _train_losses(tmp_path)
  assert len(losses) == 6          # only process 0 writes metrics
  np.testing.assert_allclose(losses, single_device_losses, rtol=2e-4)
  assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()) == [3, 6]
  # One process reads the 2-process checkpoint (init_from, a features backbone): it
  # was "unreadable" (an Orbax topology mismatch) when restored as it was sharded.
  step, variables = checkpoint.load_raw(str(tmp_path), with_step=True)
  assert step == 6 and variables["params"]["head"]["kernel"].shape[-1] == 10


def test_a_one_device_checkpoint_resumes_on_eight_devices(tmp_path):
  """The checkpoint checksums (uint32 sums of the arrays' bits) are exact whatever the
  sharding: a run checkpointed on 1 device resumes on 8 (not set aside as corrupt)."""
  r = run_launch(ARGS + [f"--workdir={tmp_path}"])
  assert r.returncode == 0, r.stderr[-2000:]
  r = run_launch(ARGS[:1] + ["--config.num_steps=9"] + ARGS[2:] + [f"--workdir={tmp_path}"],
                 env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert r.returncode == 0, r.stderr[-2000:]
  assert "8 cpu device(s)" in r.stdout and "Resumed from checkpoint at step 6" in r.stdout
  assert "corrupt" not in r.stdout + r.stderr
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "6", "9"]


def test_processes_given_different_configs_stop_before_training(tmp_path):
  """Two processes of one run with different batch sizes both exited 0 with a model
  at chance level; now every process stops with the same line naming the field."""
  procs, outs = _two_processes(tmp_path, extra=((), ("--config.batch_size=32",)))
  for p, out in zip(procs, outs):
    assert p.returncode != 0, out[-3000:]
    assert "batch_size: 64 (process 0) vs 32 (process 1)" in out, out[-3000:]
  assert not (tmp_path / "checkpoints").exists()


def test_a_lone_process_stops_with_one_line_naming_the_flags(tmp_path):
  """Process 1 of 2 with no process 0 was silent for about 305 s, then aborted with a
  27-line C++ trace."""
  env = dict(os.environ, PYTHONPATH=ROOT)
  r = subprocess.run([sys.executable, "launch.py"] + ARGS + [
      f"--workdir={tmp_path}", "--num_processes=2", "--process_id=1",
      f"--coordinator_address=127.0.0.1:{_free_port()}", "--distributed_timeout=3"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr[-2000:]
  assert "process 1 of 2 could not reach the coordinator" in r.stderr
  assert "--process_id=0" in r.stderr


def test_a_process_0_whose_others_never_come_stops_with_one_line(tmp_path):
  """Process 0 of 2 with no process 1 waited about 305 s, then aborted with a C++
  trace; now one line after --distributed_timeout seconds."""
  env = dict(os.environ, PYTHONPATH=ROOT)
  t0 = time.time()
  r = subprocess.run([sys.executable, "launch.py"] + ARGS + [
      f"--workdir={tmp_path}", "--num_processes=2", "--process_id=0",
      f"--coordinator_address=127.0.0.1:{_free_port()}", "--distributed_timeout=5"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert r.returncode != 0 and time.time() - t0 < 60
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, r.stderr[-2000:]
  assert "did not all join" in lines[0] and "--process_id from 0 to 1" in lines[0]


def test_two_processes_both_given_process_id_0_stop_with_one_line(tmp_path):
  """Both given --process_id=0: one of them aborted with JAX's C++ trace (the
  coordination service saw task 0 twice); now the second stops at once, naming the
  flag, and the first after --distributed_timeout, each with one line."""
  procs, outs = _two_processes(tmp_path, extra=(("--distributed_timeout=10",),
                                                ("--distributed_timeout=10",)),
                               ids=(0, 0))
  for p, out in zip(procs, outs):
    assert p.returncode != 0, out[-3000:]
    errors = [l for l in out.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in out, out[-3000:]
    assert "--process_id" in errors[0]
  assert sum("is taken by another process 0" in out for out in outs) == 1


def test_process_0s_claim_on_its_port_is_removed_when_it_exits():
  """The coordinator's lock file (which stops a second process 0) was left in the
  temporary folder after every run; a claim still stops a second claimant."""
  port = _free_port()
  path = os.path.join(tempfile.gettempdir(), f"flaxcnn-coordinator-{port}.lock")
  code = ("import sys; from flaxcnn import distributed as d\n"
          f"d._claim_coordinator('127.0.0.1:{port}')\n"
          "print('claimed', flush=True); sys.stdin.readline()")
  env = dict(os.environ, PYTHONPATH=ROOT)
  first = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
  try:
    assert first.stdout.readline().strip() == "claimed"
    assert os.path.exists(path)
    second = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                            input="", capture_output=True, timeout=60)
    assert second.returncode != 0 and "is taken by another process 0" in second.stderr
  finally:
    first.communicate("\n", timeout=60)
  assert first.returncode == 0 and not os.path.exists(path)


def _processes_from(dirs, args, workdir, env=None):
  """(returncodes, outputs) of a 2-process run whose process i starts in dirs[i] as
  `python -m flaxcnn` (so it imports the flaxcnn found there, else this checkout's)."""
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "flaxcnn"] + args + [
          f"--workdir={workdir}", "--num_processes=2", f"--process_id={i}",
          f"--coordinator_address=127.0.0.1:{port}", "--distributed_timeout=60"],
      cwd=str(d), env=dict(os.environ, PYTHONPATH=f"{d}{os.pathsep}{ROOT}",
                           PYTHONUNBUFFERED="1", **(env or {})),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i, d in enumerate(dirs)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  return [p.returncode for p in procs], outs


def test_processes_running_different_flaxcnn_code_stop_before_training(tmp_path):
  """Hosts with different checkouts: one line naming the code hash, on every process."""
  import shutil
  other = tmp_path / "other"
  shutil.copytree(os.path.join(ROOT, "flaxcnn"), other / "flaxcnn",
                  ignore=shutil.ignore_patterns("__pycache__"))
  with open(other / "flaxcnn" / "optim.py", "a") as f:
    f.write("# another checkout\n")
  args = [f"--config={os.path.join(ROOT, 'experiments', 'quickstart.py')}"] + ARGS[1:]
  codes, outs = _processes_from([ROOT, other], args, tmp_path / "wd")
  for code, out in zip(codes, outs):
    assert code != 0 and "run different flaxcnn code (flaxcnn code: '" in out, out[-3000:]
  assert not (tmp_path / "wd" / "checkpoints").exists()


def test_processes_that_loaded_different_data_stop_before_training(tmp_path, cache_env):
  """The same config, a folder whose content differs on one host (data.root relative
  to each process's directory here): one line naming the split, on every process."""
  from PIL import Image
  rng = np.random.RandomState(0)
  for host in ("a", "b"):
    for split, n in (("train", 8), ("test", 2)):
      for label in ("cat", "dog"):
        folder = tmp_path / host / "imgs" / split / label
        folder.mkdir(parents=True)
        for i in range(n):
          Image.fromarray(rng.randint(0, 255, (8, 8, 3), np.uint8)).save(folder / f"{i}.png")
  args = [f"--config={os.path.join(ROOT, 'experiments', 'quickstart.py')}"] + ARGS[1:] + [
      "--config.data.source=folder", "--config.data.name=imgs",
      "--config.data.root=imgs", "--config.data.validation_size=4",
      "--config.batch_size=4", "--config.eval_batch_size=4"]
  codes, outs = _processes_from([tmp_path / "a", tmp_path / "b"], args, tmp_path / "wd")
  for code, out in zip(codes, outs):
    assert code != 0 and "loaded different data (test: '4:" in out, out[-3000:]
  assert not (tmp_path / "wd" / "checkpoints").exists()
