"""Trains and evaluates a flaxcnn experiment; see flaxcnn/cli.py for the flags.

  python launch.py --config=experiments/quickstart.py --workdir=runs/quickstart
  python launch.py --config=experiments/wrn_28_10.py --workdir=runs/wrn \
      --config.optimizer.lr=0.05 --config.model.kwargs.dropout=0.3
  python launch.py --config=experiments/ablations/digits_depth.py --workdir=runs/depth --sweep
"""
from flaxcnn.__main__ import main

if __name__ == "__main__":
  main()
