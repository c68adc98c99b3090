"""The medimage import graph as the source states it: every import statement, lazy ones inside functions
included (they run on some path), ``if TYPE_CHECKING:`` blocks left out (they never run)."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the medimage package, by dotted name."""
    return {module_name(path): path for path in sorted((SRC / "medimage").rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return hidden


def _resolve(name: str) -> str | None:
    """The medimage module an imported name lives in (a module, or a name defined in one)."""
    known = modules()
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _with_parents(name: str) -> set[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ first."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & modules().keys()


def imports_of(path: Path, name: str) -> set[str]:
    """The medimage modules the file at ``path`` (module ``name``) imports, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = _type_checking_nodes(tree)
    is_package = path.name == "__init__.py"
    wanted: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            wanted.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            wanted.add(module)
            wanted.update(f"{module}.{alias.name}" for alias in node.names)
    found: set[str] = set()
    for candidate in wanted:
        resolved = _resolve(candidate)
        if resolved and resolved.split(".")[0] == "medimage":
            found |= _with_parents(resolved)
    found.discard(name)
    return found


@cache
def graph() -> dict[str, frozenset[str]]:
    return {name: frozenset(imports_of(path, name)) for name, path in modules().items()}


def closure(starts: Iterable[str]) -> dict[str, str | None]:
    """Every module reachable from ``starts``, each with the module that first imported it."""
    edges = graph()
    reached: dict[str, str | None] = {}
    todo: list[tuple[str, str | None]] = [(start, None) for start in starts]
    while todo:
        name, parent = todo.pop()
        if name in reached:
            continue
        reached[name] = parent
        todo.extend((child, name) for child in sorted(edges.get(name, ())))
    return reached


def chain(reached: dict[str, str | None], name: str) -> str:
    """How ``name`` was reached: ``entry -> a -> b -> name``."""
    steps = [name]
    while (parent := reached[steps[-1]]) is not None:
        steps.append(parent)
    return " -> ".join(reversed(steps))


def loops() -> list[list[str]]:
    """The import loops: strongly connected components of more than one module (Tarjan's algorithm)."""
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in sorted(edges[node]):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found
