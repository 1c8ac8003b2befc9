"""Writes below an output directory never leave it through a symbolic link.

An output directory may be shared (a team's network folder, a deployment's work dir), and anyone
who can write into it could plant a symbolic link where the pipeline will write next:
``.lock -> /etc/passwd`` would be truncated by the next run (run as root), ``runs -> /srv/www``
would receive a run folder, ``registry.jsonl -> ~/.bashrc`` would get a JSON line appended.

So every path the pipeline writes, truncates, appends to or creates below an output directory is
checked first: no component between the output directory and the file may be a symbolic link.
The output directory itself, and what lies above it, are the user's choice and may be links.
Files changed in place (the lock's record, the registry's lines) are opened with ``O_NOFOLLOW``
and must be regular files with a single link, so a link planted between the check and the open is
refused by the kernel too, and a hard link to a file elsewhere is not modified through.

Which folders are output directories: `tasks.layout.OutputDir` registers its root when it is
built, and every path the pipeline writes is derived from one. A path below no registered root
is not checked (the sample generator's scratch space, a test's temporary folder).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

_roots: set[str] = set()
_roots_guard = threading.Lock()


class PlantedLink(PermissionError):
    """A symbolic link (or a FIFO, device, or hard-linked file) where the pipeline writes inside
    an output directory. A `PermissionError`, so it is never retried; the message names the link."""


def register_output_root(root: Path | str) -> None:
    """Remember ``root`` as an output directory whose inside `check_confined` guards."""
    with _roots_guard:
        _roots.add(os.path.abspath(root))


def output_root_of(path: Path | str) -> str | None:
    """The innermost registered output directory that contains ``path`` (compared as written,
    made absolute without resolving links), or None."""
    absolute = os.path.abspath(path)
    with _roots_guard:
        roots = list(_roots)
    inside = [root for root in roots if absolute == root or absolute.startswith(root.rstrip(os.sep) + os.sep)]
    return max(inside, key=len, default=None)


def planted(link: str, root: str, target: Path | str) -> PlantedLink:
    """The error for a link found at ``link`` on the way to ``target``: one sentence naming both."""
    where = "" if os.path.abspath(target) == link else f" on the way to {target}"
    return PlantedLink(
        errno.ELOOP,
        f"refusing to write through {link}{where}: it is a symbolic link inside the output directory {root}, "
        "where the pipeline only writes real files and folders; remove it (nothing was written)",
    )


def check_confined(path: Path | str) -> Path:
    """Raise `PlantedLink` when a component of ``path`` below its output directory is a symbolic
    link (the file itself included); return ``path``. Components that do not exist yet are fine:
    whatever creates them creates real folders and files."""
    root = output_root_of(path)
    if root is None:
        return Path(path)
    current = root
    for part in Path(os.path.relpath(os.path.abspath(path), root)).parts:
        if part == os.curdir:
            continue
        current = os.path.join(current, part)
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            break
        if stat.S_ISLNK(mode):
            raise planted(current, root, path)
    return Path(path)


def make_dirs(folder: Path | str) -> Path:
    """``mkdir -p folder`` that never creates or passes through a link inside an output directory."""
    folder = check_confined(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return check_confined(folder)  # a link swapped in while the folders were made


def open_in_place(path: Path | str, flags: int, mode: int = 0o666) -> int:
    """``os.open`` for a file changed in place (append, truncate, a lock's record): checked with
    `check_confined`, opened with ``O_NOFOLLOW`` (and ``O_NONBLOCK``, so a planted FIFO cannot hang
    the run), and refused unless it is a regular file with one link. Returns the descriptor."""
    path = check_confined(path)
    extra = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | extra, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise planted(os.path.abspath(path), output_root_of(path) or str(Path(path).parent), path) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        kind = "not a regular file" if not stat.S_ISREG(info.st_mode) else f"a file with {info.st_nlink} hard links"
        raise PlantedLink(
            errno.EPERM,
            f"refusing to modify {path}: it is {kind}, not one the pipeline wrote; remove it (nothing was written)",
        )
    return fd
