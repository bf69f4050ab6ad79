"""flaxcnn: modern convolutional networks and their training recipes in JAX/Flax."""

__version__ = "0.1.0"
