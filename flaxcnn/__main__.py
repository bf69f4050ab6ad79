"""`python -m flaxcnn --config=... --workdir=...`: the same command line as launch.py."""
from flaxcnn import cli

cli.run()
