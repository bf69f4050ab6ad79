"""`python -m flaxcnn --config=... --workdir=...`: the same command line as launch.py."""
from flaxcnn import hugepages


def main():
  """The command line (launch.py, `python -m flaxcnn`, the `flaxcnn` script)."""
  hugepages.restart_with_huge_pages()   # first: glibc reads it only at a process's start
  from flaxcnn import cli   # after the restart, so that it imports JAX once
  cli.run()


if __name__ == "__main__":
  main()
