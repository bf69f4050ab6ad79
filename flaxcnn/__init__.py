"""flaxcnn: modern convolutional networks and their training recipes in JAX/Flax.

Importing flaxcnn changes nothing in JAX or XLA; `flaxcnn.backend.configure()`
turns on the CPU tuning (the command line, benchmarks and tests call it).
"""
__version__ = "0.1.0"
