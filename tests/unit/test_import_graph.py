"""No import circles in linx_spec (lazy imports inside functions count; imports
under `if TYPE_CHECKING:` do not: they never run).  The lifecycle sits below
runner.py, tty.py and detach.py: they import it, it imports none of them."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "linx_spec"


def _name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PKG.rglob("*.py")}


def _imports(name: str, path: Path) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            if getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name for a in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for a in node.names:  # `from . import x` imports the module x
                found.add(f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module)

    Visitor().visit(ast.parse(path.read_text()))
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan: strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert _cycles() == []


def test_the_lifecycle_depends_on_nothing_that_uses_it():
    assert GRAPH["linx_spec.lifecycle"] <= {"linx_spec.errors"}
    assert GRAPH["linx_spec.tty"] <= {"linx_spec.lifecycle"}
    for user in ("linx_spec.runner", "linx_spec.tty", "linx_spec.detach", "linx_spec.apply"):
        assert "linx_spec.lifecycle" in GRAPH[user], user


def test_the_graph_sees_lazy_imports():
    # apply.py imports runner.py and tty.py inside functions; the graph must see that.
    assert {"linx_spec.runner", "linx_spec.tty"} <= GRAPH["linx_spec.apply"]
