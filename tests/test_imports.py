"""The house has no way back: no import cycles among flaxcnn's modules, counting the
imports inside functions (which hide a cycle from Python, not from a reader), and
every module imports on its own in a fresh interpreter."""
import ast
import os
import subprocess
import sys

from conftest import ROOT

PACKAGE = os.path.join(ROOT, "flaxcnn")


def _modules():
  mods = {}
  for root, _, files in os.walk(PACKAGE):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(root, f)
        name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        mods[name.removesuffix(".__init__")] = path
  return mods


def _is_main_guard(node) -> bool:
  """`if __name__ == "__main__":` runs a module as a script, not as an import."""
  return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
          and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _imports(path, name, mods):
  tree = ast.parse(open(path).read())
  tree.body = [n for n in tree.body if not _is_main_guard(n)]
  deps = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      deps.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      deps.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods
                  else node.module for a in node.names)
  return {d for d in deps if d in mods and d != name}


def import_graph():
  mods = _modules()
  return {name: _imports(path, name, mods) for name, path in mods.items()}


def find_cycle(graph):
  """One cycle [a, b, ..., a] of the graph, or None (depth-first search)."""
  state, stack = {}, []

  def visit(n):
    state[n] = "open"
    stack.append(n)
    for d in sorted(graph[n]):
      if state.get(d) == "open":
        return stack[stack.index(d):] + [d]
      if d not in state:
        found = visit(d)
        if found:
          return found
    state[n] = "done"
    stack.pop()
    return None

  for n in sorted(graph):
    if n not in state:
      found = visit(n)
      if found:
        return found
  return None


def test_find_cycle_finds_one():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
  graph = import_graph()
  assert len(graph) > 20
  assert "flaxcnn.tasks" in graph["flaxcnn.train.loop"]     # the loop uses the task,
  assert "flaxcnn.train" not in graph["flaxcnn.tasks.segmentation"]   # never the other way
  cycle = find_cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_imports_alone():
  names = sorted(n for n in _modules() if not n.endswith(".__main__"))   # a script
  code = ("import importlib, subprocess, sys\n"
          "for name in sys.argv[1:]:\n"
          "  r = subprocess.run([sys.executable, '-c', f'import {name}'], capture_output=True,"
          " text=True)\n"
          "  assert r.returncode == 0, (name, r.stderr[-800:])\n")
  # The three tools a user runs alone must not pull each other in.
  subprocess.run([sys.executable, "-c", code, "flaxcnn.models.summary", "flaxcnn.results",
                  "flaxcnn.sweep"], cwd=ROOT, check=True)
  r = subprocess.run([sys.executable, "-c", "import sys\n" + "".join(
      f"import {n}\n" for n in names) + "print('ok')"], cwd=ROOT, capture_output=True,
      text=True)
  assert r.returncode == 0, r.stderr[-2000:]


def test_summary_results_and_sweep_do_not_import_each_other():
  graph = import_graph()

  def reach(start):
    seen, todo = set(), [start]
    while todo:
      for d in graph[todo.pop()]:
        if d not in seen:
          seen.add(d)
          todo.append(d)
    return seen

  assert not {"flaxcnn.results", "flaxcnn.sweep"} & reach("flaxcnn.models.summary")
  assert "flaxcnn.results" not in reach("flaxcnn.sweep")
