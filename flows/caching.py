"""Cross-run caching: keys from data fingerprints, the parameters that matter, and task source.

Prefect's DEFAULT policy includes the run id, so it never helps a rerun, and its INPUTS policy
would hash a path string rather than the file behind it. `FingerprintPolicy` hashes the
*contents* of files passed as inputs, the JSON of settings objects, and the source of the whole
import closure of the code that does the work (`code_fingerprint`: every project module it may
run, found by parsing imports, never a hand list), and ignores inputs that differ on every run
(the run folder). Expensive steps write into a work folder derived from the same fingerprints
under ``<output-dir>/cache/steps/``, and their Prefect results are persisted under
``<output-dir>/cache/prefect-results``: the cache lives with the outputs, not in the Prefect home.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import inspect
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from pydantic import BaseModel

from tasks.io import sha256_file
from tasks.layout import OutputDir
from tasks.models.features import file_signature
from tasks.validation.report import ValidationReport

#: Files above this size are fingerprinted by (size, mtime) instead of content, to keep key
#: computation in milliseconds; their names already carry a content key (see tasks.models.embeddings).
CONTENT_HASH_LIMIT = 64 * 1024 * 1024


def fingerprint_value(value: Any) -> str:
    """A stable string for one task input: file contents for existing files, JSON for settings."""
    if isinstance(value, (str, Path)) and len(str(value)) < 4096 and Path(value).is_file():
        return fingerprint_file(Path(value))
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json.dumps(dataclasses.asdict(value), sort_keys=True, default=str)
    if isinstance(value, dict):
        return json.dumps({str(k): fingerprint_value(v) for k, v in sorted(value.items())})
    if isinstance(value, (list, tuple)):
        return json.dumps([fingerprint_value(v) for v in value])
    return repr(value)


def fingerprint_file(path: Path) -> str:
    """Content hash of a file (name excluded: the same table in a new run folder hashes the same)."""
    if path.stat().st_size > CONTENT_HASH_LIMIT:
        return file_signature(str(path))
    return sha256_file(path)


#: The repository's own top-level packages: only their modules enter a code fingerprint.
PROJECT_PACKAGES = ("tasks", "flows", "expectations", "deployments")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def project_file(module: str, root: Path = PROJECT_ROOT) -> Path | None:
    """Source file of a project module under ``root`` (``a/b.py`` or ``a/b/__init__.py``), found
    without importing anything; None for third-party, standard-library or missing modules."""
    parts = module.split(".")
    if parts[0] not in PROJECT_PACKAGES or not all(part.isidentifier() for part in parts):
        return None
    base = Path(root).joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(module: str, path: Path) -> set[str]:
    """Every module name an ``import`` in ``path`` may load, at any depth (lazy imports inside
    functions count: they are code the step runs). ``from x import y`` yields ``x`` and ``x.y``
    (``y`` may be a submodule); relative imports are resolved against ``module``'s package."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return set(_parse_imports(package, path.read_bytes()))


@functools.lru_cache(maxsize=1024)
def _parse_imports(package: str, source: bytes) -> frozenset[str]:
    """`_imported_names` of one source text (memoised on the text: parsing is the slow part)."""
    tree = ast.parse(source)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".") if package else []
                if node.level - 1 >= len(anchor):
                    continue  # beyond the top-level package: not ours
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base:
                continue
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return frozenset(names)


def import_closure(module: str, root: Path = PROJECT_ROOT) -> dict[str, Path]:
    """The project modules that importing ``module`` may execute, by name: its own file, every
    module it imports (transitively, lazy imports included) and each one's parent packages
    (importing ``a.b`` runs ``a/__init__.py``). Sources are parsed, never imported."""
    if project_file(module, root) is None:
        raise ModuleNotFoundError(f"{module!r} is not a module of the project under {root}")
    found: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # the module and its parent packages
            prefix = ".".join(parts[:depth])
            if prefix in found:
                continue
            path = project_file(prefix, root)
            if path is None:
                break
            found[prefix] = path
            pending.extend(_imported_names(prefix, path))
    return dict(sorted(found.items()))


def closure_fingerprint(module: str, root: Path = PROJECT_ROOT) -> str:
    """Hash of the names and sources of ``module``'s import closure under ``root`` (not memoised)."""
    digest = hashlib.sha256()
    for name, path in import_closure(module, root).items():
        digest.update(name.encode() + b"\x00")
        digest.update(path.read_bytes() + b"\x00")
    return digest.hexdigest()


def code_fingerprint(target: str | Callable[..., Any]) -> str:
    """Fingerprint of the code a step runs: the source of every project module in the import
    closure of ``target`` (a dotted module name, or a callable whose module is used).

    The files are read and parsed, not imported: keying a cached training step must not cost a
    TensorFlow import (seconds) when the step is then served from the cache. Memoised per process.
    """
    if callable(target):
        target = inspect.unwrap(getattr(target, "fn", target))  # a Prefect Task: the function it wraps
        target = getattr(target, "__module__", None) or ""
    return _memoised_fingerprint(str(target))


@functools.cache
def _memoised_fingerprint(module: str) -> str:
    return closure_fingerprint(module)


def fingerprint_inputs(inputs: dict[str, Any], ignore: tuple[str, ...] = ()) -> str:
    """One hash over named inputs, skipping the ignored names."""
    digest = hashlib.sha256()
    for name in sorted(inputs):
        if name not in ignore:
            digest.update(f"{name}={fingerprint_value(inputs[name])}\x00".encode())
    return digest.hexdigest()[:24]


@dataclass
class FingerprintPolicy(CachePolicy):
    """Cache key = task name + hash of the code fingerprint and of the task inputs (minus ``ignore``).

    The code is the import closure of ``code`` (a module name) or, when None, of the module of
    the function the task wraps; name ``code`` when that function is a thin lazy wrapper.
    """

    code: str | None = None
    ignore: tuple[str, ...] = ("run_dir", "refresh")

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        task = task_ctx.task
        source = code_fingerprint(self.code if self.code is not None else task.fn)
        key = hashlib.sha256((source + fingerprint_inputs(inputs, self.ignore)).encode()).hexdigest()[:32]
        return f"{task.name}-{key}"


def step_dir(cache_dir: Path, step: str, code: str | Callable[..., Any], **inputs: Any) -> Path:
    """The work folder of one expensive step (``<output-dir>/cache/steps/<step>/<key>``): same
    inputs and same code (``code``'s import closure, see `code_fingerprint`), same folder."""
    key = hashlib.sha256((code_fingerprint(code) + fingerprint_inputs(inputs)).encode()).hexdigest()[:20]
    return OutputDir(Path(cache_dir).parent).step(step, key)


def result_storage_block(cache_dir: Path) -> str:
    """Save (idempotently) a LocalFileSystem block for Prefect results under the output's cache
    folder and return its slug; Prefect only accepts result storage that the server knows."""
    from prefect.filesystems import LocalFileSystem

    base = OutputDir(Path(cache_dir).parent).prefect_results
    base.mkdir(parents=True, exist_ok=True)
    name = "living-things-results-" + hashlib.sha256(str(base).encode()).hexdigest()[:12]
    LocalFileSystem(basepath=str(base)).save(name, overwrite=True)
    return f"local-file-system/{name}"


def adopt_outputs(source_dir: Path, run_dir: Path) -> list[str]:
    """Bring a step's outputs (predictions, histories, models) into the run folder.

    Small files are copied; model files are hard-linked when possible (no extra disk), so each
    run folder is complete even when its steps were served from the cache.
    """
    copied = []
    for path in sorted(p for p in Path(source_dir).rglob("*") if p.is_file()):
        target = Path(run_dir) / path.relative_to(source_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            if target.parent.name != "models":
                raise OSError("copy, don't link, files a user may open and edit")
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
        copied.append(str(target))
    return copied


# --- validation reuse ----------------------------------------------------------------------

#: The module of the validation sequence (the ``validate_dataset`` flow): its import closure is
#: the validation code a remembered outcome depends on.
VALIDATION_CODE = "flows.validate"
RUN_DIR_MARK = "{{RUN_DIR}}"
#: Text files of a validation folder that may quote the run folder's absolute path.
_REWRITTEN_SUFFIXES = (".json", ".html")


def validation_key(data_dir: Path, settings: BaseModel) -> str | None:
    """Key of a validation outcome: CSV/info.json contents, every image's (path, size, mtime),
    the settings and the validation code. None when the outcome depends on earlier runs
    (``reference="previous"``), which makes it uncacheable."""
    if getattr(settings, "reference", "known") == "previous":
        return None
    from tasks.data.dataset import SPLITS, data_fingerprint, public_dir

    public = public_dir(data_dir)
    digest = hashlib.sha256(code_fingerprint(VALIDATION_CODE).encode())
    digest.update(data_fingerprint(data_dir).encode())
    digest.update(settings.model_dump_json().encode())
    for split in SPLITS:
        folder = public / split
        for name in sorted(os.listdir(folder)) if folder.is_dir() else []:
            digest.update(file_signature(str(folder / name)).encode())
    return digest.hexdigest()[:24]


def _copy_validation(source: Path, target: Path, old: str, new: str) -> None:
    """Copy a validation folder, rewriting the run-folder path inside its reports and pages."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    for path in target.rglob("*"):
        if path.is_file() and path.suffix in _REWRITTEN_SUFFIXES:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
            if old in text:
                path.write_text(text.replace(old, new), encoding="utf-8", errors="surrogateescape")


def remember_validation(report: BaseModel, cache_dir: Path, key: str | None) -> None:
    """Keep a passed validation (report and files) for reruns on the same data and settings."""
    if key is None or not getattr(report, "passed", False):
        return
    run_dir = Path(report.run_dir)  # type: ignore[attr-defined]
    store = Path(cache_dir) / "steps" / "validation" / key
    tmp = store.with_name(f".{key}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    _copy_validation(run_dir / "validation", tmp / "validation", str(run_dir), RUN_DIR_MARK)
    (tmp / "report.model.json").write_text(
        report.model_dump_json().replace(str(run_dir), RUN_DIR_MARK), encoding="utf-8"
    )
    shutil.rmtree(store, ignore_errors=True)
    tmp.rename(store)


def reuse_validation(cache_dir: Path, key: str | None, run_dir: Path, report_type: type[BaseModel]) -> BaseModel | None:
    """The remembered validation for ``key``, copied into ``run_dir/validation``; None if absent."""
    if key is None:
        return None
    store = Path(cache_dir) / "steps" / "validation" / key
    model_file = store / "report.model.json"
    if not model_file.is_file():
        return None
    _copy_validation(store / "validation", Path(run_dir) / "validation", RUN_DIR_MARK, str(run_dir))
    return report_type.model_validate_json(model_file.read_text(encoding="utf-8").replace(RUN_DIR_MARK, str(run_dir)))


def reuse_validated_report(cache_dir: Path, key: str | None, run_dir: Path) -> ValidationReport | None:
    """A passed validation of the very same data, settings and code, copied into this run and
    published again as its artifact; None when there is none."""
    from tasks.logs import get_logger
    from tasks.validation.rendering import publish_artifact

    report = reuse_validation(cache_dir, key, run_dir, ValidationReport)
    if report is None:
        return None
    get_logger().info("Validation reused: same CSVs, images (size, mtime), settings and code as an earlier run")
    publish_artifact(report)  # type: ignore[arg-type]
    return report  # type: ignore[return-value]
