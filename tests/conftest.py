import atexit
import os
import shutil
import sys
import tempfile

import jax
import pytest

from flaxcnn import backend, hugepages

# Huge pages for malloc (flaxcnn/hugepages.py), as launch.py asks for them: the test
# workers and every process the tests start inherit them.
os.environ.update(hugepages.environment_with_huge_pages(os.environ) or {})

# The trainer's CPU tuning (flaxcnn/backend.py), as launch.py turns it on; before
# any JAX computation, so its XLA flag applies.
backend.configure()

# The non-partitionable threefry lowering compiles a model's many random
# initializers about 4x faster on the CPU (a tiny ResNet-20's jitted init: 2.2 s
# vs 8.1 s); the trainer's create_state uses it too. Same distributions, other draws.
jax.config.update("jax_threefry_partitionable", False)

# The test processes and the processes they start (launch.py runs: restarts after
# SIGKILL, resumes, sweeps) share one persistent XLA compilation cache: a program one
# compiled, the others read back (a tiny run: 4.0 s, then 0.7 s; a restarted
# quickstart saves about 4 s of its 10 s start). The children read the environment;
# this process has imported jax already, so it is told through jax.config.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _JAX_CACHE = tempfile.mkdtemp(prefix="flaxcnn-tests-xla-cache-")
  atexit.register(shutil.rmtree, _JAX_CACHE, ignore_errors=True)
  os.environ.update(JAX_COMPILATION_CACHE_DIR=_JAX_CACHE,
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
CIFAR_JPEG = os.path.join(SHARED, "data", "cifar10-jpeg", "train.tar.xz")
sys.path.insert(0, ROOT)


def one_host_device_flags() -> str:
  """XLA_FLAGS for a child process whose reference is one host device, whatever the
  suite runs under (XLA_FLAGS=--xla_force_host_platform_device_count=N). Unchanged
  when they name no device count (one is the default): the flags are part of the
  compilation cache's key, so the child reads what this process compiled."""
  flags = os.environ.get("XLA_FLAGS", "")
  if "--xla_force_host_platform_device_count" not in flags:
    return flags
  return " ".join([f for f in flags.split()
                   if not f.startswith("--xla_force_host_platform_device_count")]
                  + ["--xla_force_host_platform_device_count=1"])


def tiny_config(**overrides):
  """ResNet-8 on the digits: a real run that compiles in seconds."""
  from flaxcnn.config import default_config
  c = default_config()
  c.model.name = "resnet20_cifar"
  c.model.kwargs.depth = 8
  c.data.source = "digits"
  c.data.name = "digits"
  c.data.validation_size = 180
  c.augment.crop_padding = 1
  c.augment.flip = False
  c.batch_size = 32
  c.eval_batch_size = 128
  c.num_steps = 12
  c.optimizer.lr = 0.05
  c.schedule.name = "cosine"
  c.log_every_steps = 1
  c.eval_every_epochs = 100.0
  c.checkpoint_every_steps = 4
  c.log_images = False        # one more compile per run; tests/test_train.py checks it
  for k, v in overrides.items():
    node = c
    parts = k.split(".")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = v
  return c


def tiny_sweep_file(tmp_path, sweep_text: str, **overrides) -> str:
  """A config file (for --config and child processes) whose get_config() is
  tiny_config(**overrides), field for field, and whose get_sweep() returns
  `sweep_text` (e.g. 'sweep.seeds(4)')."""
  import textwrap
  from flaxcnn import papers
  from flaxcnn.config import default_config
  base, mine = papers.flatten(default_config()), papers.flatten(tiny_config(**overrides))
  fields = "\n".join(f"  c.{k} = {v!r}" for k, v in mine.items()
                     if k not in base or base[k] != v)
  path = tmp_path / "tiny_sweep.py"
  path.write_text(textwrap.dedent("""\
      from flaxcnn import sweep
      from flaxcnn.config import default_config


      def get_config():   # conftest.tiny_config
        c = default_config()
      """) + fields + textwrap.dedent(f"""
        return c


      def get_sweep():
        return {sweep_text}
      """))
  return str(path)


@pytest.fixture
def cache_env(tmp_path_factory, monkeypatch):
  d = tmp_path_factory.getbasetemp() / "flaxcnn-cache"
  monkeypatch.setenv("FLAXCNN_CACHE", str(d))
  return d


def run_launch(args, env=None, timeout=600, **kw):
  """Runs launch.py in a subprocess; returns the CompletedProcess."""
  import subprocess
  e = dict(os.environ)
  e.setdefault("PYTHONPATH", ROOT)
  e["PYTHONUNBUFFERED"] = "1"
  if env:
    e.update(env)
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py")] + args,
                        cwd=ROOT, env=e, capture_output=True, text=True,
                        timeout=timeout, **kw)
