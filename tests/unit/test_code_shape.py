"""The shape the next engineer relies on: small modules, stage packages, one layout."""

from __future__ import annotations

import ast

from tests.helpers import REPO

MAX_MODULE_LINES = 450


def test_no_module_of_the_pipeline_is_too_long() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for folder in ("tasks", "flows")
        for path in (REPO / folder).rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these by concern (more than {MAX_MODULE_LINES} lines): {long}"


def test_no_prefect_task_is_declared_outside_flows_steps() -> None:
    """Every task wrapper and its retry/caching options live in one module."""
    offenders = []
    for folder in ("tasks", "flows"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "steps.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                called = node.func if isinstance(node, ast.Call) else None
                decorators = node.decorator_list if isinstance(node, ast.FunctionDef) else []
                for target in [called, *decorators]:
                    name = getattr(target, "id", None) or getattr(getattr(target, "func", None), "id", None)
                    if name == "task":
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, offenders


MAX_FUNCTION_LINES = 60


def test_no_function_of_the_pipeline_is_too_long() -> None:
    """A function a reader can hold in view: at most `MAX_FUNCTION_LINES` lines (docstring included)."""
    long = []
    for path in sorted([*(REPO / "tasks").rglob("*.py"), *(REPO / "flows").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:  # type: ignore[operator]
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, f"split these (more than {MAX_FUNCTION_LINES} lines): {long}"
