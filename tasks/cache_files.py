"""Cache files that heal themselves: what is read back is checked, and damage costs a recompute.

A cache file may be truncated by a full disk or a killed copy, garbled by a bad sector or edited
by hand. Every reader of a cache under the output directory (pixel and backbone features, the
image-scan database, stage-2 checkpoints, converted Lite0 weights, the decoded-image cache)
validates what it reads and raises `DamagedCache` naming the file; the owner of the file then
calls `discard` (one warning naming the file and what was wrong, the file deleted) and computes
it again exactly as a cold run would. Nothing here unpickles: arrays load with
``allow_pickle=False``.

HDF5 weights files carry no checksum of their own, so a flipped byte in a tensor would load
silently; `seal_weights` stores a digest of every tensor in the file as a root attribute before
the file is renamed into place, and `check_weights_seal` recomputes it before the file is loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.io import exclusive_lock
from tasks.logs import get_logger

#: Root attribute of a sealed ``.weights.h5`` file: sha256 over its datasets (names, dtypes, shapes, bytes).
WEIGHTS_SEAL_ATTR = "living_things_sha256"

#: An expected array shape: ``None`` where any size is fine.
Shape = tuple[int | None, ...]


class DamagedCache(Exception):
    """A cache file failed its check: ``path`` names it and ``reason`` says what was wrong."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"damaged cache file {path}: {reason}")
        self.path, self.reason = Path(path), reason


def describe(error: BaseException) -> str:
    """``Type: message`` of an exception, short enough for one log line (TensorFlow's
    ``{{function_node ...}}`` prefix dropped)."""
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", str(error)).strip()
    text = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def discard(path: Path, reason: str, *companions: Path) -> None:
    """Log ONE warning naming the damaged file and why, then delete it and its ``companions``
    (folders recursively). A file that cannot be deleted (read-only cache) is named in the same
    warning; the caller recomputes either way."""
    problems = []
    for item in (Path(path), *map(Path, companions)):
        try:
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink(missing_ok=True)
        except OSError as err:
            problems.append(f"could not delete {item}: {describe(err)}")
    note = f"; {'; '.join(problems)}" if problems else ""
    get_logger().warning("Damaged cache file %s (%s): deleted, computing it again%s", path, reason, note)


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` while a damaged cache file is rebuilt, so two
    readers (threads or processes) that find the same damage rebuild it once, not race."""
    with exclusive_lock(Path(path).with_name(Path(path).name + ".lock")):
        yield


# --- arrays ----------------------------------------------------------------------------------


def check_array(path: Path, name: str, array: np.ndarray, shape: Shape, dtype: Any) -> np.ndarray:
    """``array`` (called ``name`` inside ``path``) has the expected dtype and shape, else `DamagedCache`."""
    if array.dtype != np.dtype(dtype):
        raise DamagedCache(path, f"{name} has dtype {array.dtype}, expected {np.dtype(dtype)}")
    if len(array.shape) != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        wanted = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise DamagedCache(path, f"{name} has shape {array.shape}, expected {wanted}")
    return array


def read_npy(path: Path, shape: Shape, dtype: Any, *, mmap: bool = False) -> np.ndarray:
    """One ``.npy`` array, checked for dtype and shape (``mmap``: map it instead, which checks
    the header and the file size but reads no data)."""
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except Exception as err:  # truncated, garbled, not an .npy at all
        raise DamagedCache(path, describe(err)) from err
    if not isinstance(array, np.ndarray):
        raise DamagedCache(path, f"holds {type(array).__name__}, expected one .npy array")
    return check_array(path, "the array", array, shape, dtype)


def read_npz(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (exactly ``names``), read in full: zip checks each member's
    CRC, so a garbled byte anywhere fails here rather than giving wrong numbers."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files") or sorted(data.files) != sorted(names):
                found = sorted(data.files) if hasattr(data, "files") else type(data).__name__
                raise DamagedCache(path, f"holds {found}, expected arrays {sorted(names)}")
            return {name: np.asarray(data[name]) for name in names}
    except DamagedCache:
        raise
    except Exception as err:  # BadZipFile, bad CRC, truncated member, pickled content
        raise DamagedCache(path, describe(err)) from err


# --- weights files ---------------------------------------------------------------------------


def weights_digest(path: Path) -> str:
    """sha256 over every dataset of an HDF5 file (name, dtype, shape and bytes, in name order)."""
    import h5py

    digest = hashlib.sha256()

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            digest.update(f"{name}\x00{item.dtype.str}\x00{item.shape}\x00".encode())
            digest.update(np.ascontiguousarray(item[()]).tobytes())

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    return digest.hexdigest()


def seal_weights(path: Path) -> None:
    """Store `weights_digest` in the file (call it on the temporary file, before the rename)."""
    import h5py

    digest = weights_digest(path)
    with h5py.File(path, "r+") as handle:
        handle.attrs[WEIGHTS_SEAL_ATTR] = digest


def check_weights_seal(path: Path) -> None:
    """The weights file opens and every tensor still matches its seal, else `DamagedCache`."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            sealed = handle.attrs.get(WEIGHTS_SEAL_ATTR)
        actual = weights_digest(path)
    except Exception as err:  # truncated, garbled, not HDF5
        raise DamagedCache(path, describe(err)) from err
    if sealed is None:
        raise DamagedCache(path, "no content digest (written by an older version, or not by this pipeline)")
    if (sealed.decode() if isinstance(sealed, bytes) else str(sealed)) != actual:
        raise DamagedCache(path, "its tensors do not match the digest stored when it was written")


def expect_keys(path: Path, data: Any, types: Mapping[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """A JSON object with (at least) these keys of these types, else `DamagedCache`."""
    if not isinstance(data, dict):
        raise DamagedCache(path, f"holds a JSON {type(data).__name__}, expected an object")
    missing = sorted(set(types) - set(data))
    if missing:
        raise DamagedCache(path, f"lacks {', '.join(missing)}")
    for key, kind in types.items():
        # bool is an int in Python; a flag written as 1 or a count written as true is still wrong.
        wrong_bool = isinstance(data[key], bool) != (kind is bool or (isinstance(kind, tuple) and bool in kind))
        if not isinstance(data[key], kind) or wrong_bool:
            raise DamagedCache(path, f"{key} is {data[key]!r}, expected {getattr(kind, '__name__', kind)}")
    return data
