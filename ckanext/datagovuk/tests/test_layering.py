"""The package's layout: runtime code never reaches into the dev tooling
(``testing/``) or the tests, and its modules (the dev tooling's too) stay
readable in one sitting."""
from __future__ import annotations

import ast
import pathlib

from ckanext.datagovuk.tests.conftest import ROOT

PACKAGE = pathlib.Path(ROOT, "ckanext", "datagovuk")
NOT_RUNTIME = ("testing", "tests")
# A module longer than this (runtime or dev tooling) says why in its
# docstring, after "Long because".
MAX_LINES = 600


def runtime_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if not set(NOT_RUNTIME) & set(path.relative_to(PACKAGE).parts):
            yield path


def modules_read_in_one_sitting():
    """The runtime modules and the dev tooling's (not the tests)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if "tests" not in path.relative_to(PACKAGE).parts:
            yield path


def dotted(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every ckanext.datagovuk module the file imports, relative imports
    resolved, ``from package import module`` counted as the module."""
    package = dotted(path) if path.name == "__init__.py" \
        else dotted(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("ckanext.datagovuk")}


def reaches_tooling(name: str) -> bool:
    return any(name == f"ckanext.datagovuk.{part}"
               or name.startswith(f"ckanext.datagovuk.{part}.")
               for part in NOT_RUNTIME)


def test_the_walk_sees_the_package_imports():
    # Guards the check below against a walk that finds nothing.
    migrate = imported_modules(PACKAGE / "migrate.py")
    assert "ckanext.datagovuk.db" in migrate, sorted(migrate)
    tooling = imported_modules(PACKAGE / "testing" / "demo.py")
    assert any(reaches_tooling(name) for name in tooling), sorted(tooling)


def test_no_runtime_module_imports_the_dev_tooling_or_the_tests():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(filter(reaches_tooling,
                                                      imported_modules(path)))
        for path in runtime_modules()}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_dev_tooling_is_not_at_the_top_of_the_package():
    for name in ("bench", "oldsite", "localpg", "localssh", "localsolr",
                 "demo"):
        assert not (PACKAGE / f"{name}.py").exists(), name
        assert not (PACKAGE / name).exists(), name
        assert ((PACKAGE / "testing" / f"{name}.py").exists()
                or (PACKAGE / "testing" / name / "__init__.py").exists()), name


def test_the_length_check_reads_the_dev_tooling_too():
    # Guards the check below against a walk that leaves testing/ out.
    read = {str(path.relative_to(PACKAGE)) for path in modules_read_in_one_sitting()}
    assert "testing/localpg.py" in read and "migrate.py" in read, sorted(read)
    assert not [path for path in read if path.startswith("tests/")]


def test_long_modules_say_why():
    unexplained = []
    for path in modules_read_in_one_sitting():
        text = path.read_text()
        if text.count("\n") <= MAX_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if "Long because" not in docstring:
            unexplained.append((str(path.relative_to(PACKAGE)),
                                text.count("\n")))
    assert unexplained == []


def runtime_import_graph() -> dict[str, set[str]]:
    """Each runtime module and the runtime modules it imports, lazy
    imports inside functions included."""
    modules = {dotted(path): path for path in runtime_modules()}
    return {name: {other for other in imported_modules(path)
                   if other in modules and other != name}
            for name, path in modules.items()}


def import_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of the graph (its modules in order, the first repeated at
    the end), or [] when it has none."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = "open"
        path.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                return path[path.index(other):] + [other]
            found = [] if other in state else visit(other)
            if found:
                return found
        state[name] = "done"
        path.pop()
        return []

    for name in sorted(graph):
        found = [] if name in state else visit(name)
        if found:
            return found
    return []


def test_the_cycle_search_finds_a_cycle():
    # Guards the check below against a search that cannot fail.
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b"}, "b": set()}) == []
    graph = runtime_import_graph()
    assert "ckanext.datagovuk.db" in graph["ckanext.datagovuk.migrate"]


def test_runtime_modules_import_each_other_without_a_cycle():
    assert import_cycle(runtime_import_graph()) == []
