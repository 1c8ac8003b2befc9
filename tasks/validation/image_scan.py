"""Scan every referenced image once: exists, size, decodes, format, mode, channels, width, height.

Why: 150,000 user-supplied JPEGs are the pipeline's first failure point, and a broken file found
an hour into training is the worst time to learn about it. The scan produces one table (a CSV,
one row per file) that a Great Expectations suite validates (``expectations.suites``).

How it stays cheap:

- **Streaming.** The list of files is read in chunks and results are written to the output CSV as
  they arrive, so memory does not grow with the dataset (no image is kept after it was decoded).
- **Parallel.** Decoding runs in a thread pool: Pillow releases the GIL while it decodes, and on
  this 2-core machine threads measured as fast as processes for this job without the start-up
  and pickling cost (see ``benchmarks/bench_validation.py``). ``executor="process"`` is there
  for machines where that is not true.
- **Cached per file fingerprint.** Each result is stored in a SQLite file under the cache
  directory, keyed by (path, size, mtime); a rerun on unchanged data only ``stat``\\ s the files.
  The cache file name carries the scan version and the decode settings, so changing either
  never reuses stale results. It is checked when opened (``PRAGMA quick_check`` and the table's
  columns); a damaged file (or any SQLite error that means damage, anywhere in the scan) is
  deleted with its ``-wal``/``-shm`` files, with one warning naming it, and the scan runs again
  from the start, exactly as a cold scan would.
- **Fast decode.** ``Image.verify()`` does not notice a truncated JPEG, so every file is fully
  decoded with ``load()``; for JPEGs ``draft()`` first asks libjpeg to decode at 1/8 scale, which
  still reads every byte of the entropy-coded data (a truncated file still fails) at a fraction
  of the cost.
- **Contents, at no extra decode.** The same decoded (draft-scale) image gives what the data
  audit needs: a content hash of the file's bytes (exact duplicates), a perceptual hash of the
  image and of its mirror image (resized, re-encoded and mirrored copies: ``imagehash.phash``),
  and its mean brightness and contrast (near-constant, very dark or bright images). They are
  cached with the rest; ``SCAN_VERSION`` 2 added them, so an older cache file is never read.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import stat
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from PIL import Image, ImageFile, UnidentifiedImageError

from tasks.cache_files import DamagedCache, describe, discard
from tasks.confine import check_confined, make_dirs
from tasks.io import fingerprint_text, in_chunks, naming_a_full_disk
from tasks.logs import get_logger
from tasks.validation.image_contents import CONTENT_KEYS, HASH_KEYS, describe_contents
from tasks.validation.scan_cache import cache_companions, is_damage, lookup_cache, open_cache, store_cache
from tasks.validation.settings import DEFAULT_MAX_PIXELS

#: Bump when what a scan records changes, so old cache entries are never reused.
SCAN_VERSION = 3
#: Columns of the input list (one row per referenced file).
LIST_COLUMNS: tuple[str, ...] = ("split", "filename", "path")
_RESULT_KEYS: tuple[str, ...] = (
    "exists",
    "size_bytes",
    "decodes",
    "error",
    "format",
    "mode",
    "channels",
    "width",
    "height",
    "content_hash",
    "phash",
    "phash_mirror",
    "phash_center",
    "phash_center_mirror",
    "brightness",
    "contrast",
)
#: Columns of the scan table, in order: the input list, what the scan found, whether it came from the cache.
SCAN_COLUMNS: tuple[str, ...] = (*LIST_COLUMNS, *_RESULT_KEYS, "cached")

ExecutorKind = Literal["thread", "process"]
#: Fewest pixels per side a JPEG is decoded at (its draft scale), so its hashes see the picture.
_HASH_MIN_SIDE = 64


@dataclass(frozen=True)
class ScanSummary:
    """What a scan did: small and JSON-friendly, so Prefect tasks can pass it around."""

    scan_path: str
    cache_path: str
    total: int
    scanned: int  # files opened in this run (not from the cache)
    cached: int
    missing: int
    bad: int
    seconds: float
    workers: int
    executor: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# One file


def missing_result() -> dict[str, Any]:
    """The scan row of a file that does not exist (or is not a regular file)."""
    return {
        "exists": False,
        "size_bytes": None,
        "decodes": None,
        "error": "file not found",
        "format": None,
        "mode": None,
        "channels": None,
        "width": None,
        "height": None,
        **dict.fromkeys(CONTENT_KEYS),
    }


def scan_file(path: str, size_bytes: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    """Open and fully decode one existing file; never raises, the problem goes in ``error``.

    The header gives format, mode and size; images over ``max_pixels`` are not decoded (that is
    what a decompression bomb is for). Everything else is decoded with ``load()`` because only a
    full decode notices a truncated JPEG. ``decodes`` is None when no decode was attempted
    (missing or empty file, too many pixels), so each problem fails exactly one rule.
    """
    row: dict[str, Any] = {
        "exists": True,
        "size_bytes": int(size_bytes),
        "decodes": False,
        "error": None,
        "format": None,
        "mode": None,
        "channels": None,
        "width": None,
        "height": None,
        **dict.fromkeys(CONTENT_KEYS),
    }
    if size_bytes == 0:
        row.update(decodes=None, error="empty file (0 bytes)")
        return row
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open(path, "rb") as handle:
                data = handle.read()
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                row.update(
                    format=image.format,
                    mode=image.mode,
                    channels=len(image.getbands()),
                    width=int(width),
                    height=int(height),
                )
                if width * height > max_pixels:
                    row["decodes"] = None
                    row["error"] = f"decompression bomb: {width}x{height} = {width * height:,} pixels > {max_pixels:,}"
                    return row
                if image.format == "JPEG":
                    # 1/8 scale, or less reduction where that would leave under 64 px (the hashes need pixels).
                    image.draft(
                        image.mode if image.mode in ("L", "RGB") else None,
                        (max(width // 8, min(width, _HASH_MIN_SIDE)), max(height // 8, min(height, _HASH_MIN_SIDE))),
                    )
                image.load()
                row.update(describe_contents(image, data))
        row["decodes"] = True
    except Image.DecompressionBombError as exc:
        row.update(decodes=None, error=f"decompression bomb: {exc}")
    except UnidentifiedImageError:
        row["error"] = "not an image Pillow can identify"
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:  # truncated, corrupt
        row["error"] = f"does not decode: {type(exc).__name__}: {exc}"
    return row


def scan_batch(items: list[tuple[str, int]], max_pixels: int) -> list[dict[str, Any]]:
    """Scan several (path, size) pairs: one pool task per batch keeps the overhead small."""
    return [scan_file(path, size, max_pixels) for path, size in items]


def _init_process_worker() -> None:
    """A worker process must never accept truncated images, whatever its parent configured."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False


# --------------------------------------------------------------------------------------------
# Cache


def cache_file(cache_dir: Path, max_pixels: int) -> Path:
    """The SQLite cache for these scan settings (version and settings are in the name)."""
    key = fingerprint_text(f"v{SCAN_VERSION}", str(max_pixels), "draft-1/8-min64+load+hashes")
    return Path(cache_dir) / f"image-scan-v{SCAN_VERSION}-{key}.sqlite"


def as_row(result: dict[str, Any]) -> tuple:
    """A `scan_file` dict as a tuple in `_RESULT_KEYS` order."""
    return tuple(result[key] for key in _RESULT_KEYS)


# --------------------------------------------------------------------------------------------
# The scan


def iter_list_chunks(list_path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    """Read the file list in chunks (streaming: memory does not grow with the list)."""
    reader = pd.read_csv(list_path, dtype=str, keep_default_na=False, chunksize=chunk_size)
    for chunk in reader:
        yield chunk.loc[:, list(LIST_COLUMNS)]


def stat_file(path: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of a regular file, or None when it is missing or not a file."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def make_executor(kind: ExecutorKind, workers: int) -> Executor:
    """A thread pool (default) or a process pool that refuses truncated images."""
    if kind == "process":
        return ProcessPoolExecutor(max_workers=workers, initializer=_init_process_worker)
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image-scan")


def scan_images(
    list_path: Path,
    scan_path: Path,
    cache_dir: Path,
    *,
    workers: int | None = None,
    executor: ExecutorKind = "thread",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    chunk_size: int = 2000,
    batch_size: int = 16,
    progress_every_s: float = 10.0,
) -> ScanSummary:
    """Scan every file of ``list_path`` (CSV: split,filename,path) into ``scan_path`` (CSV).

    Returns a small summary (`ScanSummary.to_dict`). Files are scanned once per unique path even
    if listed twice; every listed row gets a scan row. Rows come out in list order.
    """
    started = time.perf_counter()
    workers = max(1, workers or os.cpu_count() or 1)
    log = get_logger(__name__)
    if executor == "thread" and ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone in this process accepts truncated images; threads share that flag, so scan in
        # worker processes, which reset it, rather than let truncated JPEGs pass.
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True here; scanning with processes instead")
        executor = "process"
    total_rows = _count_rows(list_path)
    cache_path = cache_file(cache_dir, max_pixels)
    log.info("Image scan: %s files, %d %s worker(s), cache %s", f"{total_rows:,}", workers, executor, cache_path)
    scan_path = Path(scan_path)
    make_dirs(scan_path.parent)
    job = _ScanJob(list_path, scan_path, cache_path, workers, executor, max_pixels, chunk_size, batch_size)
    try:
        counts = _scan_into(job, started, total_rows, progress_every_s)
    except DamagedCache as err:
        discard(err.path, err.reason, *cache_companions(err.path))
        counts = _scan_into(job, time.perf_counter(), total_rows, progress_every_s)  # a cold scan, from the start
    seconds = time.perf_counter() - started
    summary = ScanSummary(
        scan_path=str(scan_path),
        cache_path=str(cache_path),
        seconds=round(seconds, 3),
        workers=workers,
        executor=executor,
        **counts,
    )
    log.info(
        "Image scan done: %s files in %.1f s (%s from cache, %s opened now, %s missing, %s unusable)",
        f"{summary.total:,}",
        seconds,
        f"{summary.cached:,}",
        f"{summary.scanned:,}",
        summary.missing,
        summary.bad,
    )
    return summary


@dataclass(frozen=True)
class _ScanJob:
    """What one pass of `scan_images` reads and writes."""

    list_path: Path
    scan_path: Path
    cache_path: Path
    workers: int
    executor: ExecutorKind
    max_pixels: int
    chunk_size: int
    batch_size: int


def _scan_into(job: _ScanJob, started: float, total_rows: int, progress_every_s: float) -> dict[str, int]:
    """One pass over the list into the scan CSV (renamed into place when complete); returns the
    counts. A SQLite error that means damage, wherever it happens, becomes `DamagedCache`."""
    log = get_logger(__name__)
    counts = {"total": 0, "scanned": 0, "cached": 0, "missing": 0, "bad": 0}
    tmp_path = job.scan_path.with_name(f".{job.scan_path.name}.partial")
    last_report = started
    connection = open_cache(job.cache_path)
    try:
        with (
            naming_a_full_disk(job.scan_path, None, tmp_path),
            make_executor(job.executor, job.workers) as pool,
            open(check_confined(tmp_path), "w", newline="", encoding="utf-8") as out,
        ):
            writer = csv.writer(out)
            writer.writerow(SCAN_COLUMNS)
            for chunk in iter_list_chunks(job.list_path, job.chunk_size):
                results = _scan_chunk(chunk, pool, connection, job.max_pixels, job.batch_size, counts)
                writer.writerows(
                    (split, filename, path, *result, cached)
                    for split, filename, path, (result, cached) in zip(
                        chunk["split"].tolist(), chunk["filename"].tolist(), chunk["path"].tolist(), results
                    )
                )
                counts["total"] += len(chunk)
                now = time.perf_counter()
                if now - last_report >= progress_every_s:
                    last_report = now
                    rate = counts["total"] / (now - started)
                    log.info(
                        "Image scan: %s/%s files (%s from cache, %s bad), %.0f files/s",
                        f"{counts['total']:,}",
                        f"{total_rows:,}",
                        f"{counts['cached']:,}",
                        counts["bad"],
                        rate,
                    )
        os.replace(tmp_path, job.scan_path)
    except sqlite3.DatabaseError as err:
        if is_damage(err):
            raise DamagedCache(job.cache_path, describe(err)) from err
        raise
    finally:
        connection.close()
        tmp_path.unlink(missing_ok=True)
    return counts


def _count_rows(list_path: Path) -> int:
    """Rows of the list (for progress messages), counted without parsing."""
    with open(list_path, "rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


def _scan_chunk(
    chunk: pd.DataFrame,
    pool: Executor,
    connection: sqlite3.Connection,
    max_pixels: int,
    batch_size: int,
    counts: dict[str, int],
) -> list[tuple[tuple, bool]]:
    """(result row, from cache) for each row of one chunk of the list, in order."""
    paths = chunk["path"].tolist()
    stats = {path: stat_file(path) for path in dict.fromkeys(paths) if path}
    present = [(path, st[0], st[1]) for path, st in stats.items() if st is not None]
    cached = lookup_cache(connection, present)
    todo = [(path, size) for path, size, _ in present if path not in cached]
    batches = list(in_chunks(todo, batch_size))
    futures: list[Future] = [pool.submit(scan_batch, batch, max_pixels) for batch in batches]
    fresh: dict[str, tuple] = {}
    for batch_future, batch in zip(futures, batches):
        for (path, _), result in zip(batch, batch_future.result()):
            fresh[path] = as_row(result)
    store_cache(connection, [(path, size, mtime, fresh[path]) for path, size, mtime in present if path in fresh])
    missing = as_row(missing_result())
    results: list[tuple[tuple, bool]] = []
    decodes_at = _RESULT_KEYS.index("decodes")
    for path in paths:
        if not path or stats.get(path) is None:
            result, from_cache = missing, False
            counts["missing"] += 1
        elif path in cached:
            result, from_cache = cached[path], True
            counts["cached"] += 1
        else:
            result, from_cache = fresh[path], False
            counts["scanned"] += 1
        counts["bad"] += 0 if result[decodes_at] is True else 1
        results.append((result, from_cache))
    return results


def read_scan(scan_path: Path) -> pd.DataFrame:
    """Read a scan table with proper types (booleans, nullable integers)."""
    frame = pd.read_csv(
        scan_path,
        dtype={
            "split": str,
            "filename": str,
            "path": str,
            "error": str,
            "format": str,
            "mode": str,
            "content_hash": str,
            **dict.fromkeys(HASH_KEYS, str),
        },
        keep_default_na=False,
        na_values={c: [""] for c in ("size_bytes", "channels", "width", "height", "brightness", "contrast")},
    )
    for column in ("exists", "cached"):
        frame[column] = frame[column].astype(str).str.lower().eq("true")
    # decodes is tri-state: True, False, or None when no decode was attempted.
    frame["decodes"] = frame["decodes"].astype(str).str.lower().map({"true": True, "false": False}).astype(object)
    frame["decodes"] = frame["decodes"].where(frame["decodes"].notna(), None)
    for column in ("size_bytes", "channels", "width", "height"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    for column in ("brightness", "contrast"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column in ("error", "format", "mode", "content_hash", *HASH_KEYS):
        frame[column] = frame[column].where(frame[column] != "", None)
    return frame
