"""Imports every model family so that their presets are registered: each module of
this package but the shared infrastructure below calls `registry.register(...)` at
import time, so adding a family is adding its module. A family that fails to import
is named with its error (its presets would be missing otherwise)."""
import importlib
import os
import pkgutil

# Modules of flaxcnn.models that hold no family.
INFRASTRUCTURE = {"build", "layers", "registry", "regularization", "summary"}


def family_modules():
  """The names of the family modules of this package (discovered, not listed)."""
  return sorted(m.name for m in pkgutil.iter_modules([os.path.dirname(__file__)])
                if not m.name.startswith("_") and m.name not in INFRASTRUCTURE)


for _name in family_modules():
  try:
    importlib.import_module(f"flaxcnn.models.{_name}")
  except Exception as e:
    raise ImportError(f"model family flaxcnn/models/{_name}.py failed to import, so its "
                      f"presets are missing: {type(e).__name__}: {e}") from e
