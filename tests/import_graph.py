"""The project's import graph, read from the source: every import, at the top of a module or
inside a function, is an edge (a lazy import is still a dependency, so it may not close a circle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("depth_core", "orchestration", "benchmarks", "tests")


@cache
def project_modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every Python file of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = project_modules()[module].name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(module: str) -> Iterator[tuple[str, str | None, int]]:
    """(imported module, name taken from it or None, line) for each import in `module`."""
    tree = ast.parse(project_modules()[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for alias in node.names:
                yield source, alias.name, node.lineno


def edges(module: str) -> set[str]:
    """The project modules `module` imports (a submodule when a name is one, else its module)."""
    known = project_modules()
    out = set()
    for source, name, _ in imports(module):
        if name is not None and f"{source}.{name}" in known:
            out.add(f"{source}.{name}")
        elif source in known:
            out.add(source)
    out.discard(module)
    return out


def cycles(packages: tuple[str, ...]) -> list[list[str]]:
    """Each set of modules of `packages` that import one another in a circle (Tarjan's SCCs)."""
    graph = {
        m: {e for e in edges(m) if e.split(".")[0] in packages}
        for m in project_modules()
        if m.split(".")[0] in packages
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        # iterative depth-first search: (node, iterator over its successors)
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def private_imports() -> list[str]:
    """`module:line takes _name from other.module` for each private name taken across modules."""
    known = project_modules()
    out = []
    for module in known:
        for source, name, line in imports(module):
            if source.split(".")[0] not in PACKAGES or source == module:
                continue
            taken = name or source.rsplit(".", 1)[-1]
            if taken.startswith("_") and not taken.startswith("__"):
                out.append(f"{module}:{line} takes {taken} from {source}")
    return out
