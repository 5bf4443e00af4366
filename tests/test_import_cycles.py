"""No import cycle among vidmem's modules, counting imports inside functions.

Why: an import cycle hidden inside a function works until someone moves the import to the top of
the module (or imports the modules in another order), and it says the two modules are one design
split in two files. The graph is read from the source with ``ast``: every ``import`` and ``from
... import`` anywhere in a module (module level, functions, methods), except those under ``if
TYPE_CHECKING:`` (annotations only, never executed). Relative imports are resolved against the
module's package.

Edges: ``import vidmem.a.b`` and ``from vidmem.a import b`` (``b`` a module) are an edge to
``vidmem.a.b``; ``from vidmem.a import name`` (``name`` not a module) is an edge to ``vidmem.a``
(the package's ``__init__``). Importing ``vidmem.a.b`` also runs ``vidmem/a/__init__.py``, but
that is not counted as an edge: otherwise every module inside a package whose ``__init__``
re-exports it would be in a cycle with it, which is how packages are meant to work.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vidmem

PACKAGE_DIR = Path(vidmem.__file__).resolve().parent
PACKAGE = "vidmem"


def module_names() -> dict[str, Path]:
    """``{dotted module name: source path}`` for every module of the package."""
    names: dict[str, Path] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join([PACKAGE, *parts])] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree`` outside ``if TYPE_CHECKING:`` bodies."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # the ``else`` of a TYPE_CHECKING block runs
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``."""
    modules = module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base_parts = package.split(".")
                    base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                # ``import vidmem.a.b.c`` where ``c`` is a name: the longest module prefix
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith(PACKAGE):
                    graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components of more than one module (each one a cycle or more)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def connect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return components


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One cycle through the first module of ``component`` (a shortest one, by breadth-first
    search inside the component), as ``[a, b, ..., a]``."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]  # back from v to start through the search tree
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return list(reversed(path)) + [start]
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return component


def describe(graph: dict[str, set[str]], components: list[list[str]]) -> str:
    lines = []
    for component in components:
        cycle = a_cycle(graph, component)
        edges = sorted((a, b) for a in component for b in graph[a] if b in component)
        lines.append(f"cycle: {' -> '.join(cycle)}\n  modules: {', '.join(component)}\n  "
                     f"edges inside: " + "; ".join(f"{a} -> {b}" for a, b in edges))
    return "\n".join(lines)


def test_the_graph_sees_imports_inside_functions_and_skips_type_checking(tmp_path):
    tree = ast.parse("from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from .a import x\nelse:\n    from .b import y\n"
                     "def f():\n    from .c import z\n")
    modules = [node.module for node in _imports(tree)]
    assert modules == ["typing", "b", "c"]


def test_cycles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    components = strongly_connected(graph)
    assert components == [["a", "b", "c"]]
    assert a_cycle(graph, components[0]) == ["a", "b", "c", "a"]


def test_vidmem_has_no_import_cycle():
    graph = import_graph()
    assert "vidmem.decode.stream" in graph["vidmem.decode.fallback"]  # the graph is read at all
    components = strongly_connected(graph)
    assert not components, "import cycles among vidmem's modules:\n" + describe(graph, components)
