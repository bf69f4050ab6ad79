"""The model zoo: one module per family, shared blocks in `layers`."""
from flaxcnn.models.build import build_model, check_model, model_label
from flaxcnn.models.registry import (NO_DEFAULT, create_model, get_preset, keyword_default,
                                     list_models, register)

__all__ = ["NO_DEFAULT", "build_model", "check_model", "create_model", "get_preset",
           "keyword_default", "list_models", "model_label", "register"]
