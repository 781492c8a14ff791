"""The modules of stir_jax import each other without a cycle.

The graph is read from the source with ast: every import statement, at module level or inside a
function (a lazy import closes a cycle at run time all the same), gives an edge from the importing
module to each stir_jax module it names (`from pkg import name` is an edge to pkg.name when that is a
module, else to pkg). A cycle fails the test with the modules on it.
"""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "stir_jax"


def _modules(package: pathlib.Path) -> dict[str, pathlib.Path]:
  out = {}
  for path in package.rglob("*.py"):
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts.pop()
    out[".".join(parts)] = path
  return out


def import_graph(package: pathlib.Path = PACKAGE) -> dict[str, set[str]]:
  """module -> the modules of `package` (a folder) it imports."""
  modules = _modules(package)
  graph = {}
  for name, path in modules.items():
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        for alias in node.names:
          target = alias.name
          while target and target not in modules:  # `import a.b.c`: the deepest module there is
            target = target.rpartition(".")[0]
          if target:
            edges.add(target)
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the package, up level - 1 times
          anchor = package
          for _ in range(node.level - 1):
            anchor = anchor.rpartition(".")[0]
          base = f"{anchor}.{base}" if base else anchor
        for alias in node.names:
          if f"{base}.{alias.name}" in modules:
            edges.add(f"{base}.{alias.name}")
          elif base in modules:
            edges.add(base)
    graph[name] = edges - {name}
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """A cycle as a list of modules (first == last), or None; depth-first, iterative."""
  state = {}  # absent: unseen; 1: on the current path; 2: done
  for root in sorted(graph):
    if root in state:
      continue
    path, stack = [root], [iter(sorted(graph[root]))]
    state[root] = 1
    while stack:
      nxt = next(stack[-1], None)
      if nxt is None:
        state[path.pop()] = 2
        stack.pop()
      elif state.get(nxt) == 1:
        return path[path.index(nxt):] + [nxt]
      elif nxt not in state:
        state[nxt] = 1
        path.append(nxt)
        stack.append(iter(sorted(graph.get(nxt, ()))))
  return None


def test_find_cycle_finds_one_and_only_one():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond is no cycle


def test_the_graph_sees_lazy_and_package_imports():
  graph = import_graph()
  assert len(graph) > 50
  # module level, function level (pipeline imports tfds_stir inside _tfds_builder), a package
  assert "stir_jax.data.stir_file" in graph["stir_jax.data.pipeline"]
  assert "stir_jax.data.tfds_stir" in graph["stir_jax.data.pipeline"]
  assert "stir_jax.models" in graph["stir_jax.bench.device"]


def test_stir_jax_has_no_import_cycle():
  cycle = find_cycle(import_graph())
  assert cycle is None, "import cycle: " + " -> ".join(cycle)
