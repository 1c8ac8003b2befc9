"""Atomic file writes and content fingerprints.

Files that other steps (or users) read are written to a temporary name in the same folder and
renamed into place, so a crash never leaves a half-written submission or metrics file and never
damages the output of an earlier good run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tasks.confine import check_confined, make_dirs, open_in_place

if TYPE_CHECKING:
    import keras


class DiskFullError(OSError):
    """A write ran out of space or quota (so it is never retried); the message names the file, how
    much was being written, the folder whose disk is full and what is left on it."""


#: numpy's writers (``np.save``, ``ndarray.tofile``) report a short write without an errno.
_NUMPY_SHORT_WRITE = re.compile(r"Not enough free space to write|\d+ requested and \d+ written")


def is_disk_full(exc: BaseException) -> bool:
    """True for a full disk or an exceeded quota, however the writer reported it."""
    if not isinstance(exc, OSError):
        return False
    if isinstance(exc, DiskFullError) or exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return exc.errno is None and bool(_NUMPY_SHORT_WRITE.search(str(exc)))


def free_space_text(folder: Path) -> str:
    """``"1.2 MB free"`` on the disk holding ``folder`` (its nearest existing ancestor)."""
    for candidate in [Path(folder), *Path(folder).parents]:
        try:
            return f"{shutil.disk_usage(candidate).free / 1e6:,.1f} MB free"
        except OSError:
            continue
    return "free space unknown"


def disk_full_error(path: Path, amount: str, exc: OSError) -> DiskFullError:
    """The one error a full disk becomes, naming the file, the amount, the disk and its free space."""
    quota = exc.errno == errno.EDQUOT
    return DiskFullError(
        exc.errno if quota else errno.ENOSPC,
        f"{'Disk quota exceeded' if quota else 'No space left on device'} while writing {path} ({amount}): "
        f"the disk holding {path.parent} is full ({free_space_text(path.parent)}); free some space there "
        "(or choose another --output-dir) and run again; earlier outputs are intact",
    )


@contextlib.contextmanager
def naming_a_full_disk(path: Path, size: int | None, tmp: Path | None = None) -> Iterator[None]:
    """Re-raise a full disk inside the block as a `DiskFullError` that says which file and which disk.

    ``size`` is what was being written when known; otherwise the bytes already in ``tmp`` are quoted.
    """
    try:
        yield
    except OSError as exc:
        if isinstance(exc, DiskFullError) or not is_disk_full(exc):
            raise
        if size is not None:
            amount = f"{size:,} bytes"
        else:
            try:
                amount = f"{tmp.stat().st_size:,} bytes written" if tmp is not None else "size unknown"
            except OSError:
                amount = "size unknown"
        raise disk_full_error(Path(path), amount, exc) from exc


@contextlib.contextmanager
def writing_to(path: Path, size: int | None = None) -> Iterator[Path]:
    """The one way a file below the output directory is written outside `atomic_write`: the path is
    checked for planted links (`tasks.confine`), its folder made, and a full disk named."""
    path = check_confined(Path(path))
    make_dirs(path.parent)
    with naming_a_full_disk(path, size, path):
        yield path


# The umask can only be read by setting it: os.umask(0) then putting it back. Between the two calls
# another thread's new files would get mode 0666, so Linux's /proc/self/status is read instead
# where it exists, and elsewhere the umask is read once, under a lock, and remembered.
_umask_lock = threading.Lock()
_cached_umask: int | None = None


def _umask_from_proc() -> int | None:
    """The umask from ``/proc/self/status`` (Linux >= 4.7), without changing it; None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_umask() -> int:
    """The process umask (read safely: see above)."""
    global _cached_umask
    found = _umask_from_proc()
    if found is not None:
        return found
    with _umask_lock:
        if _cached_umask is None:
            _cached_umask = os.umask(0)
            os.umask(_cached_umask)
        return _cached_umask


def file_mode() -> int:
    """The mode a new file gets from ``open()`` under the current umask (0644 for umask 022)."""
    return 0o666 & ~current_umask()


def atomic_write(path: Path, write: Callable[[Path], None], size: int | None = None, suffix: str = ".tmp") -> Path:
    """Call ``write(tmp_path)`` and rename the result to ``path`` (same folder, so rename is atomic).

    The file gets the mode the user's umask gives new files (``mkstemp`` alone would make it 0600),
    and a full disk raises `DiskFullError` naming ``path`` (``size``: the bytes being written, if known).
    ``suffix`` ends the temporary name (writers that insist on a suffix: Keras' ``.keras``). A symbolic link planted at ``path`` or on the way to it inside the output directory is refused
    (`tasks.confine`).
    """
    path = check_confined(Path(path))
    make_dirs(path.parent)
    tmp: Path | None = None
    try:
        with naming_a_full_disk(path, size):
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
            os.close(fd)
            tmp = Path(tmp_name)
        with naming_a_full_disk(path, size, tmp):
            write(tmp)
            with contextlib.suppress(PermissionError):  # a file system without modes (some mounts refuse)
                os.chmod(tmp, file_mode())
            os.replace(tmp, path)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path


def copy_file(source: Path, target: Path) -> Path:
    """``shutil.copy2`` into the output directory through `writing_to` (no planted link is written
    through; a full disk names the target)."""
    with writing_to(Path(target), Path(source).stat().st_size) as checked:
        shutil.copy2(source, checked)
    return checked


def link_or_copy(source: Path, target: Path) -> Path:
    """A hard link to ``source`` at ``target`` (no extra disk; it outlives the source's deletion),
    else a copy (another file system, links not allowed), through `writing_to`: no planted link is
    written through, and a full disk is named, never hidden by the fallback to copying."""
    with writing_to(Path(target), Path(source).stat().st_size) as checked:
        try:
            os.link(source, checked)
        except OSError as exc:
            if is_disk_full(exc):
                raise
            shutil.copy2(source, checked)
    return checked


def atomic_write_text(path: Path, text: str) -> Path:
    """Write text atomically (UTF-8, Unix line ends)."""

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8", newline="\n")

    return atomic_write(path, write, size=len(text.encode("utf-8")))


def atomic_write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically, pretty-printed so that people can read it."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def save_weights_atomically(model: keras.Model, target: Path, finish: Callable[[Path], None] | None = None) -> None:
    """Write ``model``'s weights to ``target`` via a temporary name so readers never see half a file
    (``finish(tmp)`` runs before the rename: `tasks.cache_files.seal_weights` adds a digest).

    Not `atomic_write`: Keras insists that the temporary name ends in ``.weights.h5`` too.
    """
    target = check_confined(Path(target))
    make_dirs(target.parent)
    tmp = target.with_name(f".{target.name[: -len('.weights.h5')]}.{uuid.uuid4().hex}.tmp.weights.h5")
    try:
        with naming_a_full_disk(target, None, tmp):
            model.save_weights(tmp)
            if finish is not None:
                finish(tmp)
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


T = TypeVar("T")


def in_chunks(items: list[T], size: int) -> Iterable[list[T]]:
    """Consecutive slices of at most ``size`` items, for work done a batch at a time (a database
    transaction, a request); ``itertools.batched`` once Python 3.12 is the floor."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


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


@contextlib.contextmanager
def exclusive_lock(lock_file: Path) -> Iterator[None]:
    """Block until this process holds an exclusive ``flock`` on ``lock_file`` (created if absent).

    The kernel frees it when the holder dies, so there is no stale lock to clear. Where ``flock``
    does not exist (Windows) it does nothing: callers' writes stay atomic, only not serialised.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock_file = Path(lock_file)
    make_dirs(lock_file.parent)
    with os.fdopen(open_in_place(lock_file, os.O_RDWR | os.O_CREAT), "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
