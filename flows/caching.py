"""Cross-run caching: keys from data fingerprints, the parameters that matter, and task source.

Prefect's DEFAULT policy includes the run id, so it never helps a rerun, and its INPUTS policy
would hash a path string rather than the file behind it. `FingerprintPolicy` hashes the
*contents* of files passed as inputs, the JSON of settings objects, and the source of the modules
that do the work (not just the thin task wrapper), and ignores inputs that differ on every run
(the run folder). Expensive steps write into a work folder derived from the same fingerprints
under ``<output-dir>/cache/steps/``, and their Prefect results are persisted under
``<output-dir>/cache/prefect-results``: the cache lives with the outputs, not in the Prefect home.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from prefect.cache_policies import CachePolicy

from tasks.models.features import file_signature
from tasks.io import sha256_file

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


def module_source_hash(modules: tuple[str, ...]) -> str:
    """Hash of the source files of the modules that do a task's work.

    The files are read, not imported: keying a cached training step must not cost a TensorFlow
    import (seconds) when the step is then served from the cache.
    """
    digest = hashlib.sha256()
    for name in modules:
        digest.update(module_file(name).read_bytes())
    return digest.hexdigest()


def module_file(name: str) -> Path:
    """Source file of a module, found without importing it or its parent package
    (``find_spec`` of a dotted name would import the parent, e.g. Great Expectations)."""
    top, *rest = name.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None:
        raise ModuleNotFoundError(f"cannot find module {name!r} for a cache key")
    if not rest:
        return Path(str(spec.origin))
    base = Path(list(spec.submodule_search_locations or [])[0]).joinpath(*rest)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise ModuleNotFoundError(f"cannot find the source of module {name!r} for a cache key")


def fingerprint_inputs(inputs: dict[str, Any], ignore: tuple[str, ...] = ()) -> str:
    """One hash over named inputs, skipping the ignored names."""
    digest = hashlib.sha256()
    for name in sorted(inputs):
        if name not in ignore:
            digest.update(f"{name}={fingerprint_value(inputs[name])}\x00".encode())
    return digest.hexdigest()[:24]


@dataclass
class FingerprintPolicy(CachePolicy):
    """Cache key = source of ``modules`` + fingerprints of the task inputs (minus ``ignore``)."""

    modules: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ("run_dir", "refresh")
    _source: str | None = field(default=None, repr=False)

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        if self._source is None:
            self._source = module_source_hash(self.modules)
        task_name = getattr(getattr(task_ctx, "task", None), "name", "task")
        return f"{task_name}-{hashlib.sha256((self._source + fingerprint_inputs(inputs, self.ignore)).encode()).hexdigest()[:32]}"


def step_dir(cache_dir: Path, step: str, modules: tuple[str, ...], **inputs: Any) -> Path:
    """The work folder of one expensive step: same inputs and code, same folder."""
    key = hashlib.sha256((module_source_hash(modules) + fingerprint_inputs(inputs)).encode()).hexdigest()[:20]
    return Path(cache_dir) / "steps" / step / key


def result_storage_block(cache_dir: Path) -> str:
    """Save (idempotently) a LocalFileSystem block for Prefect results under the output's cache
    folder and return its slug; Prefect only accepts result storage that the server knows."""
    from prefect.filesystems import LocalFileSystem

    base = (Path(cache_dir) / "prefect-results").resolve()
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

VALIDATION_MODULES = ("tasks.validation", "tasks.validation.image_scan", "expectations.suites", "expectations.custom", "tasks.data.dataset")
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
    digest = hashlib.sha256(module_source_hash(VALIDATION_MODULES).encode())
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
    (tmp / "report.model.json").write_text(report.model_dump_json().replace(str(run_dir), RUN_DIR_MARK), encoding="utf-8")
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
