"""Imports every model family so that their presets are registered."""
# Each family module calls `registry.register(...)` at import time.
import importlib

for _name in ("resnet", "wide_resnet", "resnext", "densenet", "pyramidnet",
              "efficientnet", "unet"):
  try:
    importlib.import_module(f"flaxcnn.models.{_name}")
  except ModuleNotFoundError as e:  # a family not written yet
    if e.name != f"flaxcnn.models.{_name}":
      raise
