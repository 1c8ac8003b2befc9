"""Cross-run cache keys and validation reuse: same inputs hit, any change misses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.caching import (
    PROJECT_PACKAGES,
    PROJECT_ROOT,
    FingerprintPolicy,
    _imported_names,
    adopt_outputs,
    closure_fingerprint,
    code_fingerprint,
    fingerprint_inputs,
    import_closure,
    step_dir,
)
from tasks.layout import OutputDir


def test_keys_follow_file_contents_not_paths(tmp_path: Path) -> None:
    a, b = tmp_path / "run1" / "table.csv", tmp_path / "run2" / "table.csv"
    for path in (a, b):
        path.parent.mkdir()
        path.write_text("split,filename\ntrain,x.jpg\n")
    assert fingerprint_inputs({"table": a, "size": 48}) == fingerprint_inputs({"table": b, "size": 48})
    assert fingerprint_inputs({"table": a, "size": 48}) != fingerprint_inputs({"table": a, "size": 64})
    b.write_text("split,filename\ntrain,y.jpg\n")
    assert fingerprint_inputs({"table": a}) != fingerprint_inputs({"table": b})
    assert fingerprint_inputs({"table": a, "run_dir": "r1"}, ignore=("run_dir",)) == fingerprint_inputs(
        {"table": a, "run_dir": "r2"}, ignore=("run_dir",)
    )
    cache = tmp_path / "cache"
    assert step_dir(cache, "s", "tasks.io", x=1) == step_dir(cache, "s", "tasks.io", x=1)
    assert step_dir(cache, "s", "tasks.io", x=1) != step_dir(cache, "s", "tasks.data.sample", x=1)
    assert step_dir(cache, "s", "tasks.io", x=1) != step_dir(cache, "s", "tasks.io", x=2)
    assert step_dir(cache, "s", "tasks.io", x=1).parent == OutputDir(tmp_path).steps / "s"


def _copy_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for package in PROJECT_PACKAGES:
        shutil.copytree(PROJECT_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _hops(root: Path, start: str, goal: str) -> int:
    """Fewest import statements from ``start`` to ``goal`` (-1 when unreachable)."""
    closure = import_closure(start, root)
    distance, frontier = {start: 0}, [start]
    while frontier:
        name = frontier.pop(0)
        for imported in sorted(_imported_names(name, closure[name])):
            if imported in closure and imported not in distance:
                distance[imported] = distance[name] + 1
                frontier.append(imported)
    return distance.get(goal, -1)


def test_key_covers_the_whole_import_closure(tmp_path: Path) -> None:
    root = _copy_project(tmp_path)
    closure = import_closure("tasks.models.transfer.train", root)
    # Modules a hand list of "the modules that do the work" missed: the split table reader, the
    # backbone-feature loader (imported lazily, inside functions), the file helpers, and the
    # parent packages that importing any of them runs.
    assert {"tasks.data.splitting", "tasks.models.embeddings", "tasks.io", "tasks", "tasks.models"} <= set(closure)
    assert "tensorflow" not in closure and "keras" not in closure

    # A module reached only through other modules (transfer -> backbones -> lite0 -> torch_pickle).
    deep = "tasks.models.torch_pickle"
    assert _hops(root, "tasks.models.transfer.train", deep) >= 2
    before = closure_fingerprint("tasks.models.transfer.train", root)
    path = closure[deep]
    path.write_text(path.read_text() + "\n# a change two imports away\n")
    assert closure_fingerprint("tasks.models.transfer.train", root) != before

    # A module outside the closure does not move the key.
    outside = "tasks.kaggle"
    assert outside not in closure
    before = closure_fingerprint("tasks.models.transfer.train", root)
    (root / "tasks" / "kaggle.py").write_text((root / "tasks" / "kaggle.py").read_text() + "\n# unrelated\n")
    assert closure_fingerprint("tasks.models.transfer.train", root) == before


def test_closure_follows_every_kind_of_import(tmp_path: Path) -> None:
    """Relative, lazy (inside a function), ``from package import submodule`` and ``import a.b``
    imports are followed; third-party imports and unreached modules are not."""
    files = {
        "tasks/__init__.py": "",
        "tasks/root.py": "import numpy\nfrom .helpers import util\n\ndef run():\n    from tasks.lazy import go\n",
        "tasks/helpers/__init__.py": "",
        "tasks/helpers/util.py": "from ..deep import leaf\n",
        "tasks/deep/__init__.py": "",
        "tasks/deep/leaf.py": "import tasks.pkg.mod\n",
        "tasks/pkg/__init__.py": "",
        "tasks/pkg/mod.py": "",
        "tasks/lazy.py": "from . import *\n",
        "tasks/unused.py": "",
        "flows/__init__.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert list(import_closure("tasks.root", tmp_path)) == [
        "tasks",
        "tasks.deep",
        "tasks.deep.leaf",
        "tasks.helpers",
        "tasks.helpers.util",
        "tasks.lazy",
        "tasks.pkg",
        "tasks.pkg.mod",
        "tasks.root",
    ]
    before = closure_fingerprint("tasks.root", tmp_path)
    (tmp_path / "tasks/pkg/__init__.py").write_text("X = 1\n")  # a parent package, four hops away
    assert closure_fingerprint("tasks.root", tmp_path) != before


@pytest.mark.slow
def test_every_cached_step_has_a_code_key() -> None:
    """Each persisted/cached task of flows.steps is keyed by FingerprintPolicy, and its key is
    computed from example inputs without importing TensorFlow (run in a fresh interpreter: other
    tests import it)."""
    code = """
import sys
from pathlib import Path
from types import SimpleNamespace
from prefect import Task
from prefect.cache_policies import DEFAULT, NO_CACHE
import flows.steps as steps
from flows.caching import FingerprintPolicy
from tasks.data.settings import SplitSettings
from tasks.models.settings import TransferSettings

examples = {"table": Path("steps-table.csv"), "settings": TransferSettings(), "split": SplitSettings(),
            "run_dir": "r", "refresh": False, "size": 48}
keyed = []
for name, value in sorted(vars(steps).items()):
    if not isinstance(value, Task):
        continue
    policy = value.cache_policy
    if value.persist_result or policy not in (None, NO_CACHE, DEFAULT):
        assert isinstance(policy, FingerprintPolicy), (name, policy)
        ctx = SimpleNamespace(task=SimpleNamespace(fn=value.fn, name=value.name))
        key = policy.compute_key(ctx, examples, {})
        assert key and key.startswith(value.name + "-"), (name, key)
        other = policy.compute_key(ctx, {**examples, "size": 64}, {})
        same = policy.compute_key(ctx, {**examples, "run_dir": "elsewhere"}, {})
        assert other != key and same == key, name
        keyed.append(value.name)
print(sorted(keyed))
print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert out.returncode == 0, out.stderr
    keyed, heavy = out.stdout.strip().splitlines()[-2:]
    assert {"pixel-features", "backbone-features", "train-baseline", "train-transfer"} <= set(
        json.loads(keyed.replace("'", '"'))
    )
    assert heavy == "[]"


def test_code_fingerprint_of_a_callable_is_its_modules_closure() -> None:
    from flows.steps import baseline_task, transfer_task

    assert (
        code_fingerprint(baseline_task.fn)
        == code_fingerprint("tasks.models.baselines")
        == code_fingerprint(baseline_task)
    )
    assert (
        code_fingerprint(transfer_task.fn)
        == code_fingerprint("flows.steps")
        != code_fingerprint("tasks.models.transfer.train")
    )
    assert (
        isinstance(transfer_task.cache_policy, FingerprintPolicy)
        and transfer_task.cache_policy.code == "tasks.models.transfer.train"
    )


def test_adopted_outputs_are_copies_except_models(tmp_path: Path) -> None:
    source = tmp_path / "step"
    (source / "predictions").mkdir(parents=True)
    (source / "models").mkdir()
    (source / "predictions" / "m.csv").write_text("filename,pred\n")
    (source / "models" / "m.joblib").write_bytes(b"model")
    run = tmp_path / "run"
    adopt_outputs(source, run)
    assert (run / "predictions" / "m.csv").read_text() == "filename,pred\n"
    assert not (run / "predictions" / "m.csv").samefile(source / "predictions" / "m.csv")
    assert (run / "models" / "m.joblib").read_bytes() == b"model"
