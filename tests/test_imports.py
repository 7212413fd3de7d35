"""No module of the package imports one that imports it back, at the top or inside a function: a
circle is a load order that works by accident (the runtime is loaded piece by piece, in a kernel
and in doctor)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "pyspark_kernel"


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    """{module name: its path} for pyspark_kernel/*.py and pyspark_kernel/runtime/*.py."""
    paths = [*PACKAGE.glob("*.py"), *(PACKAGE / "runtime").glob("*.py")]
    return {module_name(path): path for path in paths}


def without_type_checking(tree):
    """The module without its ``if TYPE_CHECKING:`` blocks: imports for type hints never run."""
    for node in ast.walk(tree):
        for field in ("body", "orelse"):
            statements = getattr(node, field, None)
            if isinstance(statements, list):
                setattr(node, field, [statement for statement in statements if not is_type_checking(statement)])
    return tree


def is_type_checking(node):
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imported(name, path, known):
    """The package's modules that ``name`` imports, wherever in it the import is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(without_type_checking(ast.parse(path.read_text(encoding="utf-8")))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {module for module in found if module in known and module != name}


def cycles(graph):
    """Each circle found by a depth-first walk, as the list of its modules."""
    found, state, stack = [], {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def import_graph():
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def test_no_module_imports_one_that_imports_it_back():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("graph, circle", [
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
])
def test_a_circle_is_found(graph, circle):
    assert cycles(graph) == [circle]


def test_imports_inside_functions_and_relative_ones_count():
    graph = import_graph()
    assert "pyspark_kernel.runtime.cache" in graph["pyspark_kernel.runtime.jvm"]  # from . import cache
    assert "pyspark_kernel.runtime.session" in graph["pyspark_kernel.runtime"]  # inside install()
    assert "pyspark_kernel.runtime.ui" in graph["pyspark_kernel.doctor"]  # from .runtime import cache, ui
