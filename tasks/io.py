"""Atomic file writes and content fingerprints.

Files that other steps (or users) read are written to a temporary name in the same folder and
renamed into place, so a crash never leaves a half-written submission or metrics file and never
damages the output of an earlier good run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result to ``path`` (same folder, so rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write text atomically (UTF-8, Unix line ends)."""

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8", newline="\n")

    return atomic_write(path, write)


def atomic_write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically, pretty-printed so that people can read it."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def save_weights_atomically(model: keras.Model, target: Path) -> None:
    """Write ``model``'s weights to ``target`` via a temporary name so readers never see half a file.

    Not `atomic_write`: Keras insists that the temporary name ends in ``.weights.h5`` too.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name[: -len('.weights.h5')]}.{uuid.uuid4().hex}.tmp.weights.h5")
    try:
        model.save_weights(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def update_with_file(digest: hashlib._Hash, path: Path) -> hashlib._Hash:
    """Feed a file's bytes into ``digest`` in 1 MiB blocks (memory stays flat for big files)."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's contents."""
    return update_with_file(hashlib.sha256(), Path(path)).hexdigest()


def fingerprint_files(paths: list[Path]) -> str:
    """A short hash of several files' contents (for cache keys and provenance)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode())
        update_with_file(digest, Path(path))
    return digest.hexdigest()[:16]


def fingerprint_text(*parts: str) -> str:
    """A short hash of strings (for cache keys built from parameters)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:16]
