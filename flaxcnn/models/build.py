"""A config's model: built from its preset and `config.model.kwargs`, and checked
abstractly (no compute) before any data is loaded or code compiled."""
import jax
import jax.numpy as jnp
import ml_collections

from flaxcnn.models import regularization
from flaxcnn.models.registry import create_model, get_preset


def build_model(config, num_classes: int, total_steps: int = 0):
  """The model of `config.model` (preset and keyword overrides) for `num_classes`,
  computing in `config.dtype`; its regularizers also take the run's settings
  (regularization.FROM_CONFIG) and length (`total_steps`)."""
  kwargs = {field: config[field] for field in regularization.FROM_CONFIG}
  kwargs.update(config.model.kwargs, train_steps=total_steps)
  kwargs.setdefault("num_classes", num_classes)
  kwargs.setdefault("dtype", jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32)
  return create_model(config.model.name, **kwargs)


def check_model(config) -> None:
  """Builds the model abstractly (no compute) so impossible architectures fail now."""
  model = build_model(config, num_classes=config.data.num_classes or 10)
  size = config.data.image_size or get_preset(config.model.name).image_size
  size = min(size, 64)  # the smallest input that shows a wrong architecture is cheap
  try:
    jax.eval_shape(lambda: model.init(
        {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
        jnp.zeros((1, size, size, 3), jnp.float32), train=False))
  except ValueError as e:
    raise ValueError(f"config.model ({config.model.name}): {e}") from None


def model_label(config) -> str:
  """The preset and the keywords the config overrides: 'resnet20_cifar (depth=8)'."""
  kwargs = {k: v for k, v in dict(config.model.kwargs).items()
            if k not in ("num_classes", "dtype")}
  if not kwargs:
    return config.model.name
  return f"{config.model.name} ({', '.join(f'{k}={v}' for k, v in sorted(kwargs.items()))})"


def config_section() -> ml_collections.ConfigDict:
  """config.model: the preset and its keyword overrides (build_model reads it)."""
  s = ml_collections.ConfigDict()
  s.name = "resnet20_cifar"  # a preset of flaxcnn.models (python -m flaxcnn.models.summary --list)
  s.kwargs = ml_collections.ConfigDict()   # overrides of the preset's arguments
  return s
