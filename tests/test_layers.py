"""The package's layers: every import goes downward or sideways, and no module imports itself back."""

import pytest

from prunelib.experiments.code import import_graph, imports_of, module_files

#: in order: a module may import from its own layer and those before it
LAYERS = ("prunelib._version", "prunelib.errors", "prunelib.core", "prunelib.data", "prunelib.model",
          "prunelib.storage", "prunelib.eval", "prunelib.experiments", "prunelib.report", "prunelib.cli",
          "prunelib.__main__", "prunelib")


def layer(module: str) -> int:
    """Index in :data:`LAYERS` of the longest prefix of ``module`` (``prunelib`` itself is the facade on top)."""
    matches = [i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + ".")]
    return max(matches, key=lambda i: len(LAYERS[i]))


def upward(graph: dict) -> list[tuple[str, str]]:
    return sorted((m, t) for m, targets in graph.items() for t in targets if layer(t) > layer(m))


def cycles(graph: dict) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), each sorted."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checks_catch_an_upward_import_and_a_cycle():
    graph = {"prunelib.core.a": {"prunelib.model.b"}, "prunelib.model.b": {"prunelib.model.c"},
             "prunelib.model.c": {"prunelib.model.b"}}
    assert upward(graph) == [("prunelib.core.a", "prunelib.model.b")]
    assert cycles(graph) == [["prunelib.model.b", "prunelib.model.c"]]


def test_every_module_belongs_to_a_layer():
    assert set(module_files()) >= {"prunelib.core.masks", "prunelib.cli", "prunelib.experiments.runs"}
    for module in module_files():
        assert layer(module) is not None


def test_imports_are_found_inside_functions_and_relative_ones_resolved():
    assert "prunelib.storage.compact" in imports_of("prunelib.experiments.runs")  # imported inside compute()
    assert "prunelib.core.masks" in imports_of("prunelib.core.wanda")  # ``from .masks import ...``
    assert "prunelib.data" in imports_of("prunelib.model.provenance")  # ``from ..data import sha256``


def test_no_module_imports_upward():
    assert upward(import_graph()) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("module", sorted(m for m in module_files() if m.startswith("prunelib.core")))
def test_core_needs_only_torch(module):
    """A copied ``core/`` runs with torch alone: no transformers, no tqdm, no other layer."""
    import ast

    tree = ast.parse(module_files()[module].read_text())
    outside = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    outside |= {node.module.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and not node.level and node.module}
    assert outside <= {"torch", "math", "typing", "dataclasses", "__future__", "warnings"}
    assert all(layer(t) <= layer(module) for t in import_graph()[module])


def test_the_library_never_imports_the_books_own_code():
    """prunebook (book/prunebook) renders the chapters on top of prunelib; what people copy holds none of it."""
    files = module_files()
    importing = sorted(m for m in files for node in _import_nodes(files[m]) if node.split(".")[0] == "prunebook")
    assert importing == []


def _import_nodes(path) -> list[str]:
    import ast

    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.append(node.module or "")
    return names


def test_the_book_check_sees_an_import_of_prunebook(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from prunebook import model_name\n")
    assert _import_nodes(module) == ["prunebook"]
