"""The model zoo: one module per family, shared blocks in `layers`."""
from flaxcnn.models.registry import create_model, get_preset, list_models, register

__all__ = ["create_model", "get_preset", "list_models", "register"]
