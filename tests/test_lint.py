"""The code passes the project's ruff configuration (pyproject.toml)."""
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def test_ruff_passes():
  if shutil.which("ruff") is None:
    try:
      import ruff  # noqa: F401
    except ImportError:
      pytest.skip("ruff is not installed (pip install -e '.[test]')")
  r = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise",
                      "."], cwd=ROOT, capture_output=True, text=True)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]
