"""The model zoo: every registered preset with its family, parameters, multiply-adds,
paper and the config files that train it, as the Markdown table of the README.

    python -m flaxcnn.zoo                   # print the table
    python -m flaxcnn.zoo --readme README.md   # rewrite the README's table in place

Counts come from the models themselves (flaxcnn.models.summary, one traced `init`
per preset, in a process per core); the config files of a preset are the files of
experiments/ (and experiments/ablations/) whose default config, paper rows or sweep
variants name it.
"""
import argparse
import glob
import os
import sys
from typing import Dict, List, Optional, Sequence

from flaxcnn import config as config_lib, papers
from flaxcnn.models import registry, summary
from flaxcnn.sweep import declare

BEGIN = "<!-- model zoo: python -m flaxcnn.zoo --readme README.md -->"
END = "<!-- end of model zoo -->"
HEADER = ("| preset | family | parameters | multiply-adds | input | paper | config |\n"
          "|---|---|---:|---:|---:|---|---|")


def config_files(root: Optional[str] = None) -> Dict[str, List[str]]:
  """{preset: [config files, relative to experiments/]} of the files under `root`."""
  root = root or config_lib.experiments_dirs()[0]
  paths = sorted(glob.glob(os.path.join(root, "*.py"))
                 + glob.glob(os.path.join(root, "ablations", "*.py")))
  out: Dict[str, List[str]] = {}
  for path in paths:
    module = declare.load_module(path)
    names = {module.get_config().model.name}
    names |= {row.match.get("model.name") for row in papers.rows_of(module)}
    if hasattr(module, "get_sweep"):
      names |= {ov.get("model.name") for ov in declare.overrides_of(path)}
    for name in names - {None}:
      out.setdefault(name, []).append(os.path.relpath(path, root))
  return out


def family(name: str) -> str:
  """The module of flaxcnn.models that builds preset `name` ('resnet', 'densenet')."""
  return registry.get_preset(name).constructor.__module__.rsplit(".", 1)[-1]


def row(name: str, params: int, macs: int, size: int, configs: Sequence[str]) -> str:
  files = ", ".join(f"`{c}`" for c in configs) or "-"
  return (f"| `{name}` | {family(name)} | {params / 1e6:.2f}M | {macs / 1e9:.3f}G | "
          f"{size} | {registry.get_preset(name).paper.split(',')[0]} | {files} |")


def table(names: Optional[Sequence[str]] = None, jobs: Optional[int] = None) -> str:
  """The Markdown table of `names` (default: every preset)."""
  names = list(names or registry.list_models())
  counts = list(summary.summarize_many(names, jobs=jobs))
  configs = config_files()
  return "\n".join([HEADER] + [row(n, p, m, s, configs.get(n, [])) for n, p, m, s in counts])


def replace_in(text: str, new_table: str) -> str:
  """`text` with the part between BEGIN and END replaced by `new_table`."""
  if BEGIN not in text or END not in text:
    raise ValueError(f"no model zoo block: the file needs the lines {BEGIN!r} and {END!r}")
  head, rest = text.split(BEGIN, 1)
  return head + BEGIN + "\n" + new_table + "\n" + END + rest.split(END, 1)[1]


def main(argv) -> int:
  parser = argparse.ArgumentParser(prog="python -m flaxcnn.zoo",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("presets", nargs="*", help="preset names (default: all)")
  parser.add_argument("--readme", default="", help="rewrite this file's model zoo block")
  parser.add_argument("--jobs", type=int, default=None, help="worker processes")
  args = parser.parse_args(argv[1:])
  for name in args.presets:
    registry.get_preset(name)   # an unknown name fails before any work
  text = table(args.presets, args.jobs)
  if not args.readme:
    print(text)
    return 0
  with open(args.readme) as f:
    old = f.read()
  with open(args.readme, "w") as f:
    f.write(replace_in(old, text))
  print(f"{args.readme}: model zoo of {len(text.splitlines()) - 2} presets written")
  return 0


if __name__ == "__main__":
  try:
    sys.exit(main(sys.argv))
  except ValueError as e:
    sys.exit(f"error: {e}")
