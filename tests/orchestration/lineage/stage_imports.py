"""The code each lineage stage runs, derived from its imports: what dvc.yaml's deps must list.

A stage starts at its function, named in `orchestration.stages.registry.STAGE_FUNCTIONS` and
defined in the stage's own module (the registry itself is the runner, not the stage). From there:

- the names a piece of code uses are followed to their definitions (functions, classes,
  constants; directly, through a module alias such as `L.TEACHER`, or imported inside a
  function), so a module counts when the stage runs its code;
- importing a depth_core module runs its top level, so the module counts, with every module its
  top level imports (and each package `__init__.py` above it that holds more than a docstring);
  its functions count through the names used, a package's lazy `__getattr__` included;
- an orchestration module counts only through the names a stage uses: every runner imports the
  params schema and the stages module, which import every config class and every stage.

The result is a set of repository-relative files; `folded` replaces a folder by its name when
every Python file under it is in the set (dvc.yaml then lists the folder).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("depth_core", "orchestration")
REGISTRY = "orchestration.stages.registry"


def module_file(module: str) -> Path | None:
    """The source file of a module of the project's packages, or None (stdlib, third party)."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


@cache
def _tree(module: str) -> ast.Module:
    return ast.parse(module_file(module).read_text(), filename=str(module_file(module)))


def _is_package(module: str) -> bool:
    return module_file(module).name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if _is_package(module) else parts[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _bindings(module: str, node: ast.Import | ast.ImportFrom) -> dict[str, tuple[str, str | None]]:
    """name -> (module, attribute or None) for one import statement of the project's code."""
    out: dict[str, tuple[str, str | None]] = {}
    if isinstance(node, ast.Import):
        for alias in node.names:
            if module_file(alias.name) is None:
                continue
            if alias.asname:
                out[alias.asname] = (alias.name, None)
            else:
                out[alias.name.split(".")[0]] = (alias.name, None)
        return out
    source = _absolute(module, node)
    if module_file(source) is None:
        return out
    for alias in node.names:
        name = alias.asname or alias.name
        submodule = f"{source}.{alias.name}"
        out[name] = (submodule, None) if module_file(submodule) else (source, alias.name)
    return out


def _parents(module: str) -> list[str]:
    """The packages Python imports before `module`: a.b.c -> a, a.b."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _has_code(module: str) -> bool:
    """False for a package __init__ that holds only its docstring."""
    body = _tree(module).body
    return any(not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)) for s in body)


def _top_level(module: str) -> dict[str, ast.AST]:
    """Top-level definitions: functions, classes and assigned names."""
    defs: dict[str, ast.AST] = {}
    for node in _tree(module).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        defs[name.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defs[node.target.id] = node
    return defs


def _top_imports(module: str) -> dict[str, tuple[str, str | None]]:
    names: dict[str, tuple[str, str | None]] = {}
    for node in _import_time(_tree(module)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(_bindings(module, node))
    return names


def _annotations(node: ast.AST) -> set[int]:
    """Annotations are strings here (`from __future__ import annotations`), never evaluated."""
    skip = set()
    for child in ast.walk(node):
        if isinstance(child, ast.arg) and child.annotation is not None:
            skip.add(id(child.annotation))
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and child.returns:
            skip.add(id(child.returns))
        elif isinstance(child, ast.AnnAssign):
            skip.add(id(child.annotation))
    return skip


def _running(node: ast.AST):
    """The nodes of `node` that run when it runs (a function called, a class used)."""
    skip = _annotations(node)
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in skip:
            continue
        yield current
        stack.extend(ast.iter_child_nodes(current))


def _import_time(tree: ast.Module):
    """The nodes that run when the module is imported: everything but function bodies (a
    function's decorators and default values do run)."""
    skip = _annotations(tree)
    stack = list(tree.body)
    while stack:
        current = stack.pop()
        if id(current) in skip:
            continue
        yield current
        if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef)):
            stack.extend([*current.decorator_list, *current.args.defaults])
            stack.extend(d for d in current.args.kw_defaults if d is not None)
        elif not isinstance(current, ast.Lambda):
            stack.extend(ast.iter_child_nodes(current))


class Closure:
    """The modules reached from some starting names by the rules of this module's docstring;
    `add_name` and `imported` grow it."""

    def __init__(self) -> None:
        self.modules: set[str] = set()  # project modules whose file is part of the stage's code
        self._names: set[tuple[str, str]] = set()
        self._imported: set[str] = set()

    def imported(self, module: str) -> None:
        """`module` is imported: its parents' and its own top level run."""
        if module in self._imported:
            return
        self._imported.add(module)
        for parent in _parents(module):
            if module_file(parent) is not None and _has_code(parent):
                self.imported(parent)
        self.modules.add(module)
        if module.startswith("depth_core"):
            self._run(module, _import_time(_tree(module)), node=None)

    def add_name(self, module: str, name: str) -> None:
        """The stage uses `module.name`: the module is imported and the name's code runs."""
        self.imported(module)
        if (module, name) in self._names:
            return
        self._names.add((module, name))
        defs = _top_level(module)
        node = defs.get(name)
        if node is None:
            bound = _top_imports(module).get(name)
            if bound is not None:  # re-exported
                self._use(*bound)
            elif "__getattr__" in defs:  # a package that imports on first use
                self.add_name(module, "__getattr__")
            return
        self._run(module, _running(node), node)

    def _use(self, module: str, attribute: str | None) -> None:
        if attribute is None:
            self.imported(module)
        else:
            self.add_name(module, attribute)

    def _run(self, module: str, nodes, node: ast.AST | None) -> None:
        """Follow what these nodes of `module` import and use."""
        nodes = list(nodes)
        defs, imports = _top_level(module), _top_imports(module)
        local: dict[str, tuple[str, str | None]] = {}
        for child in nodes:
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                bound = _bindings(module, child)
                local.update(bound)
                for target, _ in bound.values():
                    self.imported(target)
        for child in nodes:
            if isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name):
                target = local.get(child.value.id) or imports.get(child.value.id)
                if target is not None and target[1] is None:  # a module alias: L.TEACHER
                    self.add_name(target[0], child.attr)
            elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load):
                bound = local.get(child.id) or imports.get(child.id)
                if bound is not None:
                    if bound[1] is not None:
                        self.add_name(*bound)
                elif child.id in defs and defs[child.id] is not node:
                    self.add_name(module, child.id)

    def files(self) -> set[str]:
        return {module_file(m).relative_to(ROOT).as_posix() for m in self.modules}


def stage_functions() -> dict[str, tuple[str, str]]:
    """stage name -> (module, function) of its function, read from `STAGE_FUNCTIONS` in the
    registry and the import that brings the function there."""
    imports = _top_imports(REGISTRY)
    for node in _tree(REGISTRY).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "STAGE_FUNCTIONS" for t in targets):
            return {
                key.value: imports[value.id]
                for key, value in zip(node.value.keys, node.value.values)
                if isinstance(key, ast.Constant) and isinstance(value, ast.Name)
            }
    raise LookupError(f"{REGISTRY}: no STAGE_FUNCTIONS mapping")


def stage_code(stage: str) -> set[str]:
    """Repository-relative files of the code `depth-distill stage <stage>` runs."""
    closure = Closure()
    closure.add_name(*stage_functions()[stage])
    return closure.files()


def folded(files: set[str]) -> set[str]:
    """`files` with each folder whose Python files are all included named once (the largest)."""
    out = set(files)
    folders = sorted(
        {p for f in files for p in Path(f).parents if p != Path(".")}, key=lambda p: len(p.parts)
    )
    taken: list[Path] = []
    for folder in folders:
        if any(t in folder.parents for t in taken):
            continue
        members = _python_files(folder)
        if members and members <= files:
            out = (out - members) | {folder.as_posix()}
            taken.append(folder)
    return out


def _python_files(folder: Path) -> set[str]:
    """The files under `folder` that can be part of a stage's code."""
    found = set()
    for path in (ROOT / folder).rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if path.name == "__init__.py" and not _has_code(module.removesuffix(".__init__")):
            continue
        found.add(path.relative_to(ROOT).as_posix())
    return found
