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
    from tasks.logs import get_logger

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
