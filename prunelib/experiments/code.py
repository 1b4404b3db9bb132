"""What code computed a result: prunelib's import graph and a hash of the code a run depends on.

A cached result is only as good as the code that produced it. :func:`code_hash` hashes the
syntax tree of each module a run reaches through its imports (:func:`reached`), so a change to
what a module *does* changes the hash, while a changed docstring, comment or blank line does not.
:func:`import_graph` is also what the layering test reads.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path
from typing import Iterable

PACKAGE = Path(__file__).resolve().parent.parent
NAME = PACKAGE.name


def module_files() -> dict[str, Path]:
    """``{"prunelib.core.masks": path, ...}`` for every module of the package."""
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, files: dict[str, Path] | None = None) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its code (inside functions too)."""
    files = files or module_files()
    path = files[module]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path.name == "__init__.py", node)
            # ``from . import data`` imports a module; ``from .masks import NM`` a name
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in files:  # ``import a.b.c`` where only ``a.b`` is a module
                target = target.rpartition(".")[0]
            if target.split(".")[0] == NAME and target != module:
                found.add(target)
    return found


@functools.lru_cache(maxsize=None)
def import_graph() -> dict[str, frozenset[str]]:
    """``{module: modules it imports}`` over the whole package (read once per process)."""
    files = module_files()
    return {module: frozenset(imports_of(module, files)) for module in files}


def reached(entries: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
    """The modules reachable from ``entries`` through imports, not entering ``exclude``, sorted.

    A package's ``__init__`` is not entered through its submodules: only an explicit import counts."""
    graph, excluded = import_graph(), set(exclude)
    seen, todo = set(), [entry for entry in entries if entry not in excluded]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += [m for m in graph[module] if m not in excluded and m not in seen]
    return sorted(seen)


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@functools.lru_cache(maxsize=None)
def _module_digest(path: Path, mtime_ns: int) -> str:
    tree = _without_docstrings(ast.parse(path.read_text()))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


def code_hash(modules: Iterable[str]) -> str:
    """sha256 (first 12 hex digits) of the named modules' syntax trees without docstrings, in
    name order: equal exactly when the code (not its documentation) is the same."""
    files = module_files()
    digest = hashlib.sha256()
    for module in sorted(set(modules)):
        path = files[module]
        digest.update(f"{module}:{_module_digest(path, path.stat().st_mtime_ns)}\n".encode())
    return digest.hexdigest()[:12]
