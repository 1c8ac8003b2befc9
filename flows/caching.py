"""Cross-run caching: keys from data fingerprints, the parameters that matter, and task source.

Prefect's DEFAULT policy includes the run id, so it never helps a rerun, and its INPUTS policy
would hash a path string rather than the file behind it. `FingerprintPolicy` hashes the
*contents* of files passed as inputs, the JSON of settings objects, and the source of the whole
import closure of the code that does the work (`code_fingerprint`: every project module it may
run, found by parsing imports, never a hand list), and ignores inputs that differ on every run
(the run folder). Expensive steps write into a work folder derived from the same fingerprints
under ``<output-dir>/cache/steps/``, and their Prefect results are persisted under
``<output-dir>/cache/prefect-results``: the cache lives with the outputs, not in the Prefect home.

Nothing read back from the cache can run code. Results are plain JSON (`PlainJSONSerializer`:
``json.dumps``/``json.loads`` and nothing else), and because Prefect decodes a record with the
serializer *named in the file*, `FingerprintPolicy` vets the record under its key before Prefect
looks at it (`heal_result_record`): a record that is not plain JSON written by that serializer
(a pickle, garbage, a truncated file) is deleted with one warning and the step is recomputed.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from pydantic import BaseModel

from flows.result_records import _record_path, heal_result_record, rebase_result_record
from tasks.confine import check_confined, make_dirs
from tasks.io import copy_file, link_or_copy, sha256_file
from tasks.layout import OutputDir
from tasks.models.features import portable_path

#: Files above this size are fingerprinted by (size, mtime) instead of content, to keep key
#: computation in milliseconds; their names already carry a content key (see tasks.models.embeddings).
CONTENT_HASH_LIMIT = 64 * 1024 * 1024


#: Settings fields that say where data and outputs are, not what is computed: left out of keys
#: (their contents enter through the files a step reads), so a moved output dir keeps its keys.
LOCATION_FIELDS = frozenset({"data_dir", "output_dir"})


def fingerprint_value(value: Any) -> str:
    """A stable string for one task input: file contents for existing files, JSON for settings."""
    if isinstance(value, (str, Path)) and len(str(value)) < 4096 and Path(value).is_file():
        return fingerprint_file(Path(value))
    if isinstance(value, BaseModel):
        return fingerprint_settings(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json.dumps(dataclasses.asdict(value), sort_keys=True, default=str)
    if isinstance(value, dict):
        return json.dumps({str(k): fingerprint_value(v) for k, v in sorted(value.items())})
    if isinstance(value, (list, tuple)):
        return json.dumps([fingerprint_value(v) for v in value])
    return repr(value)


def fingerprint_settings(value: BaseModel) -> str:
    """A settings model's JSON without its `LOCATION_FIELDS` (at any depth); unchanged JSON when it has none."""
    dumped = value.model_dump(mode="json")
    portable = _without_locations(dumped)
    return value.model_dump_json() if portable == dumped else json.dumps(portable, sort_keys=True)


def _without_locations(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_locations(v) for k, v in value.items() if k not in LOCATION_FIELDS}
    return [_without_locations(v) for v in value] if isinstance(value, list) else value


def fingerprint_file(path: Path) -> str:
    """Content hash of a file (name excluded: the same table in a new run folder hashes the same).
    Large files: name, size and mtime (their names carry a content key; no folder, so a moved
    output dir keeps the key). A run table's image paths enter relative to the data dir."""
    info = path.stat()
    if info.st_size > CONTENT_HASH_LIMIT:
        return f"{path.name}:{info.st_size}:{info.st_mtime_ns}"
    if path.suffix == ".csv":
        return _table_fingerprint(str(path), info.st_size, info.st_mtime_ns)
    return sha256_file(path)


#: The column of a run table (`tasks.data.dataset`) that holds each image's absolute path.
PATH_COLUMN = "path"


@functools.lru_cache(maxsize=64)
def _table_fingerprint(path: str, size: int, mtime_ns: int) -> str:
    """Content hash of a CSV whose ``path`` column is made `portable_path` (other CSVs: plain
    content hash). Memoised per file version: every cached step of a run keys the same table."""
    try:
        return _portable_csv_hash(path)
    except (UnicodeDecodeError, csv.Error):  # not a text table: its bytes are its content
        return sha256_file(Path(path))


def _portable_csv_hash(path: str) -> str:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows, [])
        if PATH_COLUMN not in header:
            return sha256_file(Path(path))
        column = header.index(PATH_COLUMN)
        digest = hashlib.sha256(b"table\x00" + "\x1f".join(header).encode())
        for row in rows:
            if len(row) > column:
                row[column] = portable_path(row[column])
            digest.update(("\x1e" + "\x1f".join(row)).encode())
    return digest.hexdigest()


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
    Before the key is handed to Prefect, the record stored under it is vetted
    (`heal_result_record`): Prefect would decode it with whatever serializer the file names.
    """

    code: str | None = None
    #: Where a step writes is no input of what it computes: the records live in the output dir's
    #: own cache, and ``out_dir`` is named by the other inputs (`step_dir`); keys stay the same
    #: when the output dir is moved or copied.
    ignore: tuple[str, ...] = ("run_dir", "refresh", "reuse_chunks", "cache_dir", "out_dir")

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        task = task_ctx.task
        source = code_fingerprint(self.code if self.code is not None else task.fn)
        key = hashlib.sha256((source + fingerprint_inputs(inputs, self.ignore)).encode()).hexdigest()[:32]
        storage_key = f"{task.name}-{key}"
        record = _record_path(task_ctx, storage_key)
        if record is not None and not heal_result_record(record):
            return None  # no key: Prefect neither reads nor writes a record this time
        cache = output_cache_of(record) if record is not None else None
        if cache is not None:
            rebase_result_record(record, cache)  # type: ignore[arg-type]
        return storage_key


def output_cache_of(record: Path) -> Path | None:
    """The cache folder of the output dir whose result storage holds ``record``
    (`OutputDir.prefect_results`: ``<output-dir>/cache/prefect-results``, matched by name so that
    no `OutputDir` is made, and registered, for a folder that is none); None for records stored elsewhere."""
    folder = Path(record).resolve().parent
    return folder.parent if (folder.parent.name, folder.name) == _RESULTS_FOLDER else None


#: The last two names of `OutputDir.prefect_results` (tests/unit/test_portable_cache.py checks them).
_RESULTS_FOLDER = ("cache", "prefect-results")


def step_dir(cache_dir: Path, step: str, code: str | Callable[..., Any], **inputs: Any) -> Path:
    """The work folder of one expensive step (``<output-dir>/cache/steps/<step>/<key>``): same
    inputs and same code (``code``'s import closure, see `code_fingerprint`), same folder."""
    key = hashlib.sha256((code_fingerprint(code) + fingerprint_inputs(inputs)).encode()).hexdigest()[:20]
    return OutputDir(Path(cache_dir).parent).step(step, key)


def result_storage_block(cache_dir: Path) -> str:
    """Save (idempotently) a LocalFileSystem block for Prefect results under the output's cache
    folder and return its slug; Prefect only accepts result storage that the server knows."""
    from prefect.filesystems import LocalFileSystem

    base = make_dirs(OutputDir(Path(cache_dir).parent).prefect_results)
    name = "living-things-results-" + hashlib.sha256(str(base).encode()).hexdigest()[:12]
    LocalFileSystem(basepath=str(base)).save(name, overwrite=True)
    return f"local-file-system/{name}"


def cached_options(cache_dir: Path, refresh: bool) -> dict[str, Any]:
    """Task options that persist cached results under the output directory (not the Prefect home)."""
    return {"result_storage": result_storage_block(cache_dir), "refresh_cache": refresh}


def adopt_outputs(source_dir: Path, run_dir: Path) -> list[str]:
    """Bring a step's outputs (predictions, histories, models) into the run folder.

    Small files are copied; model files are hard-linked when possible (no extra disk), so each
    run folder is complete even when its steps were served from the cache.
    """
    copied = []
    for path in sorted(p for p in Path(source_dir).rglob("*") if p.is_file()):
        target = check_confined(Path(run_dir) / path.relative_to(source_dir))
        target.unlink(missing_ok=True)
        # Copy, don't link, the files a user may open and edit; models are only ever replaced.
        (link_or_copy if target.parent.name == "models" else copy_file)(path, target)
        copied.append(str(target))
    return copied
