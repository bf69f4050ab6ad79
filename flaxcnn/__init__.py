"""flaxcnn: modern convolutional networks and their training recipes in JAX/Flax."""
import os

__version__ = "0.1.0"

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def _jaxlib_knows(flag: str) -> bool:
  """Whether the installed jaxlib defines an XLA flag (an unknown one in XLA_FLAGS
  aborts the process), read from its library's string table without loading it."""
  import importlib.util
  import mmap
  spec = importlib.util.find_spec("jaxlib")
  if spec is None or not spec.submodule_search_locations:
    return False
  path = os.path.join(list(spec.submodule_search_locations)[0], "libjax_common.so")
  try:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
      return m.find(flag.strip("-=").encode() + b"\0") >= 0
  except (OSError, ValueError):
    return False


def _default_xla_flags():
  """XLA:CPU (jaxlib 0.10) hands some fusions, BatchNorm's reductions among them, to
  YNNPACK; our training steps ran up to 2x slower with them (ResNet-20 batch 128:
  1.60 vs 0.79 s/step; benchmarks/RESULTS.md). Turn them off unless XLA_FLAGS already
  names the flag or FLAXCNN_KEEP_XLA_DEFAULTS=1 is set. The flag only concerns the
  CPU; it takes effect when flaxcnn is imported before JAX initializes its backends
  (launch.py, the tests, the benchmarks)."""
  flags = os.environ.get("XLA_FLAGS", "")
  if os.environ.get("FLAXCNN_KEEP_XLA_DEFAULTS", "0") not in ("", "0"):
    return
  if "xla_cpu_experimental_ynn_fusion_type" not in flags and _jaxlib_knows(YNN_FLAG):
    os.environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}".strip()


_default_xla_flags()
