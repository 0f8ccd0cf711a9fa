"""The package's rooms: no import cycle (function-level imports included), and no library
room that imports the command-line tools (README, "Layout")."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "poolnet_jax"


def _modules():
  """{dotted module name: path} of every module of the package."""
  modules = {}
  for path in PACKAGE.rglob("*.py"):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return modules


def import_graph():
  """{module: modules of the package it imports anywhere in its file}."""
  modules = _modules()
  graph = {}
  for name, path in modules.items():
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        found = [f"{node.module}.{alias.name}" for alias in node.names] or [node.module]
      elif isinstance(node, ast.Import):
        found = [alias.name for alias in node.names]
      else:
        continue
      for target in found:
        while target and target not in modules:
          target = target.rpartition(".")[0]
        if target and target != name:
          targets.add(target)
    graph[name] = targets
  return graph


def cycles(graph):
  """The strongly connected groups of more than one module (Tarjan's algorithm)."""
  index, low, stack, on_stack, groups = {}, {}, [], set(), []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for target in sorted(graph[node]):
      if target not in index:
        visit(target)
        low[node] = min(low[node], low[target])
      elif target in on_stack:
        low[node] = min(low[node], index[target])
    if low[node] == index[node]:
      group = set()
      while not group or node not in group:
        group.add(stack.pop())
      on_stack.difference_update(group)
      if len(group) > 1:
        groups.append(sorted(group))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return groups


def test_the_graph_sees_the_imports_it_is_about():
  graph = import_graph()
  assert "poolnet_jax.weights.torch_io.variants" in graph["poolnet_jax.weights.torch_io.mapping"]
  assert "poolnet_jax.errors" in graph["poolnet_jax.weights.torch_io.pth"]
  assert "poolnet_jax.cli" in graph["poolnet_jax.cli.predict"]
  # the algorithm finds a circle where there is one, a lazy import's included
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_the_package():
  assert cycles(import_graph()) == []


def test_no_library_room_imports_the_command_line_tools():
  graph = import_graph()
  offenders = {
    name: sorted(t for t in targets if t == "poolnet_jax.cli" or t.startswith("poolnet_jax.cli."))
    for name, targets in graph.items()
    if not (name == "poolnet_jax.cli" or name.startswith("poolnet_jax.cli."))
  }
  assert {name: t for name, t in offenders.items() if t} == {}


def test_the_package_root_holds_only_the_api_and_the_errors():
  assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "errors.py"]
