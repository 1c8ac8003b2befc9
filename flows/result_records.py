"""Prefect result records that cannot run code: plain JSON, vetted before Prefect reads them.

Results of cached steps are plain JSON (`PlainJSONSerializer`: ``json.dumps``/``json.loads`` and
nothing else). Prefect decodes a record with the serializer *named in the file*, so the cache
policy vets the record under its key before Prefect looks at it (`heal_result_record`): a record
that is not plain JSON written by that serializer (a pickle, garbage, a truncated file) is
deleted with one warning and the step is recomputed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any, Final, Literal

from prefect.serializers import Serializer

from tasks.io import atomic_write_text
from tasks.logs import get_logger

# --- plain JSON results -----------------------------------------------------------------------

#: The serializer name written into every result record of a cached step (and the only one read).
RESULT_SERIALIZER_TYPE: Final = "living-things-plain-json"
#: A result record of ours is a few hundred bytes (paths, small dicts); anything this big is not.
MAX_RECORD_BYTES = 1024 * 1024
#: The keys Prefect writes at the top of a record and in its metadata (prefect.results.ResultRecord).
_RECORD_KEYS = {"metadata", "result"}
_METADATA_KEYS = {"storage_key", "expiration", "serializer", "prefect_version", "storage_block_id"}


def _plain_json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, BaseException):  # a failed step's record: Prefect reads a str back as its message
        return f"{type(value).__name__}: {value}"
    raise TypeError(f"a cached step's result must be JSON (str, number, list, dict, Path), not {type(value).__name__}")


class PlainJSONSerializer(Serializer):
    """Cached-step results as plain JSON: paths are written as strings, and reading is
    ``json.loads`` with no object hook, so a record can only ever decode to dicts, lists,
    strings and numbers (Prefect's ``JSONSerializer`` imports any ``__class__`` a file names).

    Registered with Prefect by subclassing (its ``type`` is the dispatch key); it has no other
    field, so a record naming it cannot smuggle in a decoder or a JSON library either.
    """

    type: Literal["living-things-plain-json"] = RESULT_SERIALIZER_TYPE

    def dumps(self, obj: Any) -> bytes:
        return json.dumps(obj, default=_plain_json_default, sort_keys=True).encode()

    def loads(self, blob: bytes) -> Any:
        return json.loads(blob)


def result_record_problem(content: bytes) -> str | None:
    """Why ``content`` is not a result record written by `PlainJSONSerializer`; None if it is.

    Only ``json.loads`` touches the bytes: the record must be exactly Prefect's shape
    (``metadata`` + ``result``), name exactly our serializer with no other setting, and hold a
    payload that is itself JSON.
    """
    if len(content) > MAX_RECORD_BYTES:
        return f"{len(content)} bytes, larger than any result of ours ({MAX_RECORD_BYTES})"
    try:
        record = json.loads(content)
    except (ValueError, RecursionError) as exc:
        return f"not JSON ({type(exc).__name__}: {str(exc)[:80]})"
    if not isinstance(record, dict) or set(record) != _RECORD_KEYS:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        return f"not a Prefect result record (top level {keys}, expected {sorted(_RECORD_KEYS)})"
    metadata = record["metadata"]
    if not isinstance(metadata, dict) or not set(metadata) <= _METADATA_KEYS:
        return "its metadata is not Prefect's result metadata"
    serializer = metadata.get("serializer")
    if serializer != {"type": RESULT_SERIALIZER_TYPE}:
        named = serializer.get("type") if isinstance(serializer, dict) else serializer
        return f"serializer {named!r}, expected exactly {{'type': {RESULT_SERIALIZER_TYPE!r}}}"
    if not isinstance(record["result"], str):
        return f"its payload is {type(record['result']).__name__}, expected a JSON string"
    try:
        json.loads(record["result"])
    except (ValueError, RecursionError) as exc:
        return f"its payload is not JSON ({type(exc).__name__})"
    return None


def heal_result_record(path: Path) -> bool:
    """Make sure Prefect will not decode a record at ``path`` that is not plain JSON of ours:
    such a file is deleted with one warning naming it and why (the step is then recomputed).

    True when Prefect may use the key: no file, our own record, or a bad one now deleted.
    False when a bad file is still there (it could not be deleted): the caller must not hand
    this key to Prefect, which would decode the file with the serializer it names.
    """
    path = Path(path)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return True
    except OSError as exc:
        problem: str | None = f"unreadable ({exc.strerror or exc})"
    else:
        if not stat.S_ISREG(info.st_mode):  # never open a FIFO, device or link planted here
            problem = "not a regular file"
        else:
            try:
                with path.open("rb") as handle:
                    problem = result_record_problem(handle.read(MAX_RECORD_BYTES + 1))
            except OSError as exc:
                problem = f"unreadable ({exc.strerror or exc})"
    if problem is None:
        return True

    try:
        if stat.S_ISDIR(path.lstat().st_mode):
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        get_logger().warning(
            f"Cached result {path} is not ours ({problem}) and could not be deleted ({exc}): "
            "the step runs uncached this time"
        )
        return False
    get_logger().warning(f"Deleted cached result {path}: {problem}; the step is recomputed")
    return True


def _record_path(task_ctx: Any, key: str) -> Path | None:
    """The file Prefect will read for ``key``: ``<result storage basepath>/<key>`` for local
    storage (resolved as Prefect resolves it); None for other storage or without a run context."""
    store = getattr(task_ctx, "result_store", None)
    if store is None or getattr(store, "metadata_storage", None) is not None:
        return None
    resolve = getattr(getattr(store, "result_storage", None), "_resolve_path", None)
    if resolve is None:
        return None
    try:
        return Path(resolve(key))
    except (ValueError, OSError):
        return None


# --- records of a moved or copied output directory ---------------------------------------------

#: The output directory's cache folder name (`tasks.layout.OutputDir.cache`): every path a cached
#: step returns lies under it.
CACHE_DIR_NAME = "cache"


def relocate(path: str, cache_dir: Path) -> str:
    """``path`` moved into ``cache_dir`` when it lies under some output directory's cache (the tail
    after its last ``cache`` folder), else unchanged: a record written before its output directory
    was moved or copied names the old location, which may be gone, or belong to another copy."""
    parts = Path(path).parts
    marks = [i for i, part in enumerate(parts[:-1]) if part == CACHE_DIR_NAME]
    if not Path(path).is_absolute() or not marks:
        return path
    return str(Path(cache_dir).joinpath(*parts[marks[-1] + 1 :]))


def _relocated(value: Any, cache_dir: Path) -> Any:
    """A decoded result with every cache path in it `relocate`\\ d (results are paths and small dicts)."""
    if isinstance(value, str):
        return relocate(value, cache_dir)
    if isinstance(value, list):
        return [_relocated(item, cache_dir) for item in value]
    if isinstance(value, dict):
        return {key: _relocated(item, cache_dir) for key, item in value.items()}
    return value


def _cache_paths(value: Any, cache_dir: Path) -> list[Path]:
    """The paths under ``cache_dir`` that a decoded result names."""
    if isinstance(value, str):
        return [Path(value)] if Path(value).is_absolute() and Path(value).is_relative_to(cache_dir) else []
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [path for item in items for path in _cache_paths(item, cache_dir)]


def rebase_result_record(path: Path, cache_dir: Path) -> None:
    """Make a vetted record (`heal_result_record`) name files of *this* output directory's cache:
    paths of the directory's old location are rewritten in place (a moved or copied output
    directory reruns warm), and a record naming a cache file that is gone (a deleted step folder
    or features file) is deleted with one warning, so the step is recomputed instead of handing
    later steps a missing file."""
    path, cache_dir = Path(path), Path(cache_dir)
    try:
        record = json.loads(path.read_bytes())
        result = json.loads(record["result"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # no record (or not vetted): nothing of ours to rebase
    moved = _relocated(result, cache_dir)
    missing = [item for item in _cache_paths(moved, cache_dir) if not item.exists()]
    if missing:
        path.unlink(missing_ok=True)
        get_logger().warning(f"Deleted cached result {path}: the file {missing[0]} it names is gone; recomputing")
        return
    if moved != result:
        atomic_write_text(path, json.dumps({**record, "result": json.dumps(moved, sort_keys=True)}))
