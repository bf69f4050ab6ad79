"""Transparent huge pages for a CPU training process's host memory.

XLA:CPU allocates a step's temporary buffers anew every step through glibc malloc,
which maps buffers of tens of MB fresh and unmaps them when freed: the kernel
faults in and zeroes every 4 KiB page of them every step (ResNet-20 b128: 57,000
faults a step, DenseNet-BC-100-12 b64: 537,000). glibc's `glibc.malloc.hugetlb=1`
tunable has malloc ask for transparent huge pages (`madvise(MADV_HUGEPAGE)`) where
the kernel gives them only on request (THP mode "madvise"): 2 MiB pages, a few
hundred faults a step, the step 0.8x (benchmarks/RESULTS.md). glibc reads its
tunables only when a process starts, so `restart_with_huge_pages()` re-executes
the command (same pid and arguments) with the tunable set; child processes
inherit it. Standard library only: launch.py calls it before importing anything
heavy. FLAXCNN_KEEP_MALLOC_DEFAULTS=1 (or malloc settings of your own in
GLIBC_TUNABLES) leaves malloc alone.
"""
import importlib.util
import os
import platform
import sys
from typing import Mapping, Optional

TUNABLE = "glibc.malloc.hugetlb=1"
THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"
_ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
                        "jax_rocm7_plugin", "libtpu", "jax_plugins")


def thp_on_request(path: str = THP_MODE) -> bool:
  """Whether this kernel gives transparent huge pages only where madvise asks."""
  try:
    with open(path) as f:
      return "[madvise]" in f.read()
  except OSError:
    return False


def cpu_only(env: Mapping[str, str]) -> bool:
  """Whether JAX can only run on the CPU here: JAX_PLATFORMS says so, or no
  accelerator plugin is installed (an accelerator host keeps its allocator)."""
  platforms = env.get("JAX_PLATFORMS", "").strip().lower()
  if platforms:
    return platforms == "cpu"
  return not any(importlib.util.find_spec(name) for name in _ACCELERATOR_PLUGINS)


def environment_with_huge_pages(env: Mapping[str, str], thp_mode: str = THP_MODE
                                ) -> Optional[dict]:
  """`env` with the tunable added to GLIBC_TUNABLES, or None where it does not
  apply: not glibc, huge pages not on request, an accelerator, malloc settings
  already given (the tunable among them), or FLAXCNN_KEEP_MALLOC_DEFAULTS=1."""
  tunables = env.get("GLIBC_TUNABLES", "")
  if ("glibc.malloc." in tunables
      or env.get("FLAXCNN_KEEP_MALLOC_DEFAULTS", "0") not in ("", "0")
      or not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc"
      or not thp_on_request(thp_mode) or not cpu_only(env)):
    return None
  return {**env, "GLIBC_TUNABLES": f"{tunables}:{TUNABLE}" if tunables else TUNABLE}


def restart_with_huge_pages() -> None:
  """Re-executes this process with the tunable, where it applies and is not set yet
  (returns otherwise). Call it first thing in a program's main module."""
  env = environment_with_huge_pages(os.environ)
  if env is not None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)
