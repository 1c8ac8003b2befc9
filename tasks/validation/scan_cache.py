"""The image scan's per-file cache: one SQLite file of scan results keyed by (path, size, mtime).

Opened with a check (``PRAGMA quick_check``, then the table's columns) that raises
`tasks.cache_files.DamagedCache` naming the file; `is_damage` tells a SQLite error that means a
damaged file from one that means a busy database or a full or read-only disk, which must never
cost the cache. `tasks.validation.image_scan` deletes a damaged cache and scans again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tasks.cache_files import DamagedCache, describe
from tasks.confine import check_confined, make_dirs

_CACHE_COLUMNS = (
    "decodes, error, format, mode, channels, width, height, content_hash, phash, phash_mirror, phash_center, "
    "phash_center_mirror, brightness, contrast"
)
#: Every column of the cache table, in order (checked when the cache is opened).
_TABLE_COLUMNS = ("path", "size", "mtime_ns", *_CACHE_COLUMNS.split(", "))
#: SQLite errors that say something about the machine (busy, locked, full disk, permissions),
#: not about the file: never a reason to delete the cache. Every other one means damage.
_ENVIRONMENT_ERRORS = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_CANTOPEN",
    "SQLITE_READONLY",
    "SQLITE_PERM",
    "SQLITE_NOMEM",
    "SQLITE_INTERRUPT",
    "SQLITE_NOLFS",
)


def is_damage(error: sqlite3.DatabaseError) -> bool:
    """Whether a SQLite error means the cache file is damaged (malformed, not a database, wrong
    schema) rather than busy, locked or on a full or read-only disk."""
    name = getattr(error, "sqlite_errorname", None) or ""
    return not name.startswith(_ENVIRONMENT_ERRORS)


def cache_companions(path: Path) -> list[Path]:
    """The journal files SQLite keeps next to a database (deleted with it)."""
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def open_cache(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the fingerprint cache; SQLite makes concurrent runs safe.

    Checked on the way (``PRAGMA quick_check``: milliseconds, unlike a full ``integrity_check``;
    then the table's columns): raises `DamagedCache` naming the file when it is damaged.
    """
    make_dirs(path.parent)
    connection = sqlite3.connect(check_confined(path), timeout=60)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        problems = [str(row[0]) for row in connection.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise DamagedCache(path, "PRAGMA quick_check: " + "; ".join(problems[:3]))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS scans (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL, decodes INTEGER, error TEXT, format TEXT, mode TEXT, "
            "channels INTEGER, width INTEGER, height INTEGER, content_hash TEXT, phash TEXT, phash_mirror TEXT, "
            "phash_center TEXT, phash_center_mirror TEXT, "
            "brightness REAL, contrast REAL)"
        )
        columns = tuple(row[1] for row in connection.execute("PRAGMA table_info(scans)"))
        if columns != _TABLE_COLUMNS:
            raise DamagedCache(path, f"table scans has columns {list(columns)}, expected {list(_TABLE_COLUMNS)}")
    except sqlite3.DatabaseError as err:
        connection.close()
        if is_damage(err):
            raise DamagedCache(path, describe(err)) from err
        raise
    except DamagedCache:
        connection.close()
        raise
    return connection


def lookup_cache(connection: sqlite3.Connection, keys: list[tuple[str, int, int]]) -> dict[str, tuple]:
    """Cached result rows (in `_RESULT_KEYS` order) of the fingerprints that match exactly."""
    found: dict[str, tuple] = {}
    wanted = {path: (size, mtime) for path, size, mtime in keys}
    paths = list(wanted)
    for start in range(0, len(paths), 900):  # SQLite's bound-parameter limit
        part = paths[start : start + 900]
        query = f"SELECT path, size, mtime_ns, {_CACHE_COLUMNS} FROM scans WHERE path IN ({','.join('?' * len(part))})"
        for path, size, mtime, decodes, *rest in connection.execute(query, part):
            if wanted[path] == (size, mtime):
                found[path] = (True, size, None if decodes is None else bool(decodes), *rest)
    return found


def store_cache(connection: sqlite3.Connection, rows: list[tuple[str, int, int, tuple]]) -> None:
    """Remember result rows by fingerprint (one transaction per chunk)."""
    with connection:
        connection.executemany(
            f"INSERT OR REPLACE INTO scans (path, size, mtime_ns, {_CACHE_COLUMNS}) "
            f"VALUES ({', '.join('?' * len(_TABLE_COLUMNS))})",
            [(path, size, mtime, *result[2:]) for path, size, mtime, result in rows],
        )
