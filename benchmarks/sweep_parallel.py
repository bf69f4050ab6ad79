"""Wall time of a 4-variant sweep: one variant after another in one process, against
the local launcher running `--parallel=2` (each variant in its own process with half
the cores), and against one variant per device on 2 host devices (the launcher's
default parallelism with XLA_FLAGS=--xla_force_host_platform_device_count=2).

Each configuration runs the whole sweep from the command line into a fresh folder
(`launch.py --sweep` / `--launcher=local`), with a warm JAX compilation cache (one
untimed sequential pass first), so the figures are training, evaluation and process
start-up. Usage: python benchmarks/sweep_parallel.py [--config=...] [--repeats=2]
"""
import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(ROOT, "experiments", "ablations", "digits_depth.py")


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def sweep_seconds(config, flags, env, folder) -> float:
  shutil.rmtree(folder, ignore_errors=True)
  t0 = time.time()
  out = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), f"--config={config}",
                        f"--workdir={folder}"] + flags, env=env, capture_output=True,
                       text=True, cwd=ROOT)
  if out.returncode:
    raise SystemExit(f"{' '.join(flags)} failed:\n{out.stderr[-2000:]}")
  return time.time() - t0


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default=DEFAULT)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  tmp = tempfile.mkdtemp(prefix="flaxcnn-sweep-bench-")
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.path.join(tmp, "xla-cache"),
             FLAXCNN_CACHE=os.path.join(tmp, "cache"))
  fake2 = dict(env, XLA_FLAGS=(env.get("XLA_FLAGS", "") +
                               " --xla_force_host_platform_device_count=2").strip())
  runs = [("sequential (--sweep)", ["--sweep"], env),
          ("--launcher=local --parallel=2", ["--launcher=local", "--parallel=2"], env),
          ("--launcher=local, 2 host devices, one variant each", ["--launcher=local"], fake2)]
  sweep_seconds(args.config, ["--sweep"], env, os.path.join(tmp, "warm"))
  times = {name: [] for name, _, _ in runs}
  for r in range(args.repeats):         # interleaved: a shared machine's load hits all
    for name, flags, e in runs:
      times[name].append(sweep_seconds(args.config, flags, e, os.path.join(tmp, f"run{r}")))
  print(f"machine: {cpu_model()}, {len(os.sched_getaffinity(0))} cores, "
        f"{time.strftime('%Y-%m-%d')}")
  print(f"sweep: {os.path.relpath(args.config, ROOT)} (best of {args.repeats})")
  base = min(times[runs[0][0]])
  for name, _, _ in runs:
    best = min(times[name])
    print(f"  {name:52s} {best:6.1f} s  ({base / best:.2f}x)")
  shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
  main()
