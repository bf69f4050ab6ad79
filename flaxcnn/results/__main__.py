"""`python -m flaxcnn.results DIR [--paper [FILE.py[:ARG]]]`: see flaxcnn/results/cli.py."""
from flaxcnn.results import cli

cli.main()
