"""The README's commands work as written: every command of its code blocks is run
here (in a temporary folder for its outputs) or named in NOT_RUN with the reason."""
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, one_host_device_flags
from flaxcnn import metrics

# command fragment -> why the suite does not run it
NOT_RUN = {
    "pip install -e \".[test]\" && python -m pytest tests": "it is this suite",
    "wrn_28_10.py": "CIFAR-10 through TFDS (a download)",
    "resnet_cifar.py": "CIFAR-10 through TFDS (a download)",
    "--launcher=slurm": "a SLURM cluster",
    "experiments/lecture/run.py": "CPU-hours; tests/test_lecture.py runs the same command at "
                                  "its smoke budget",
}


def _blocks():
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  return re.findall(r"```(\w*)\n(.*?)```", text, re.S)


def _commands(lang):
  """The shell commands of the README's blocks in `lang` ('' or 'bash'), with their
  continuation lines joined and comments dropped, in the README's order."""
  out = []
  for block_lang, body in _blocks():
    if block_lang != lang:
      continue
    for line in body.replace("\\\n", " ").splitlines():
      line = line.split("  #")[0].strip()
      if line.startswith(("python ", "pip ")):
        out.append(" ".join(line.split()))
  return out


def _run(command, tmp_path, timeout=900):
  """`command` from the repository root, its runs/ and /scratch/ folders under tmp_path."""
  if " && " in command:                    # "pip install -e . && python launch.py ..."
    command = command.split(" && ", 1)[1]
  command = command.replace("runs/", f"{tmp_path}/runs/").replace("/scratch/",
                                                                   f"{tmp_path}/scratch/")
  argv = shlex.split(command)
  assert argv[0] == "python", command
  env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1",
             XLA_FLAGS=one_host_device_flags())
  r = subprocess.run([sys.executable] + argv[1:], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=timeout)
  assert r.returncode == 0, f"{command}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
  return r.stdout + r.stderr


def test_every_readme_command_is_run_here_or_says_why_not():
  commands = [c for lang in ("", "bash") for c in _commands(lang)]
  assert len(commands) >= 8
  run = [c for c in commands if not any(k in c for k in NOT_RUN)]
  assert set(run) == set(RUN), "a README command is neither run by this file nor in NOT_RUN"


QUICKSTART = ("pip install -e . && python launch.py --config=experiments/quickstart.py "
              "--workdir=runs/quickstart")
EVAL = ("python launch.py --config=experiments/quickstart.py --workdir=runs/quickstart "
        "--config.job=eval")
PARALLEL = ("python launch.py --config=experiments/ablations/digits_depth.py --workdir=runs/dd "
            "--launcher=local --parallel=2")
LIST = ("python launch.py --config=experiments/ablations/wrn_width.py "
        "--workdir=/scratch/wrn_width --list_variants")
RUN = (QUICKSTART, EVAL, PARALLEL, LIST)


def test_the_quick_start_reaches_97_percent_and_its_checkpoint_evaluates(tmp_path):
  """The README's main job (ResNet-8 on the embedded digits), then its eval example."""
  out = _run(QUICKSTART, tmp_path)
  workdir = tmp_path / "runs" / "quickstart"
  with open(workdir / "summary.json") as f:
    summary = json.load(f)
  assert summary["test"]["accuracy"] >= 0.97 and summary["test"]["count"] == 360
  assert "Finished resnet20_cifar (depth=8) on digits" in out
  evals = [x for x in metrics.read_jsonl(str(workdir)) if x["split"] == "test"]
  assert evals and all({"step", "epoch", "split", "accuracy"} <= set(x) for x in evals)
  assert os.listdir(workdir / "tensorboard") and (workdir / "config.json").exists()
  out = _run(EVAL, tmp_path)
  top1 = re.search(r"eval test .*top-1 ([\d.]+)", out)
  assert top1 and float(top1.group(1)) >= 0.95, out[-2000:]


def test_the_parallel_sweep_and_the_variant_list_run_as_written(tmp_path):
  out = _run(PARALLEL, tmp_path)
  # a line per change of status, the finished ones with their figures (not a line a step)
  assert len(re.findall(r": finished: validation top-1 [\d.]+, test top-1 [\d.]+", out)) == 4
  assert len(re.findall(r": running", out)) <= 4, out
  names = os.listdir(tmp_path / "runs" / "dd")
  finished = [n for n in names
              if os.path.exists(tmp_path / "runs" / "dd" / n / "summary.json")]
  assert len(finished) == 4, names                       # 2 depths x 2 seeds
  out = _run(LIST, tmp_path)
  assert "pending" in out


@pytest.mark.parametrize("index", range(sum(lang == "python" for lang, _ in _blocks())))
def test_the_readme_python_blocks_run(index):
  code = [body for lang, body in _blocks() if lang == "python"][index]
  r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                     env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
