"""Small grayscale pixel features, as the original project's Random Forest and SVM used.

Images are decoded with PIL's draft mode (the JPEG decoder scales by 1/2..1/8 for free), turned
into any-mode -> grayscale, resized to ``size x size`` and flattened to floats in [0, 1].
Decoding runs in a thread pool: PIL releases the GIL while it decodes.

The matrix is cached as ``<cache>/pixels-<size><g|c>-<key>.npy``. Every read checks it against
the table (dtype float32, one row per table row, ``size*size[*3]`` columns, values in [0, 1]);
a damaged file is deleted with one warning and computed again (`tasks.cache_files`).
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from tasks.cache_files import DamagedCache, cache_lock, discard, read_npy
from tasks.io import atomic_write, fingerprint_text

#: Used for an image that cannot be decoded (it still needs a row, e.g. in the test set).
BLANK_VALUE = 0.5


def load_pixel_vector(path: str, size: int, grayscale: bool = True) -> np.ndarray:
    """One image as a flat float32 vector in [0, 1]; an unreadable image becomes mid-gray."""
    mode = "L" if grayscale else "RGB"
    channels = 1 if grayscale else 3
    try:
        with Image.open(path) as image:
            image.draft(mode, (size * 2, size * 2))
            resized = image.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
            return (np.asarray(resized, np.float32) / 255.0).reshape(-1)
    except (OSError, ValueError, Image.DecompressionBombError):
        return np.full(size * size * channels, BLANK_VALUE, np.float32)


def load_pixel_matrix(paths: list[str], size: int, grayscale: bool = True, workers: int = 4) -> np.ndarray:
    """Many images as one (n, size*size[*3]) matrix, decoding in parallel; each row is written
    into the preallocated matrix as it arrives (a list of rows then `np.stack` held it twice)."""
    width = size * size * (1 if grayscale else 3)
    matrix = np.empty((len(paths), width), np.float32)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, row in enumerate(pool.map(lambda p: load_pixel_vector(p, size, grayscale), paths, chunksize=64)):
            matrix[i] = row
    return matrix


def save_matrix(path: Path, matrix: np.ndarray) -> Path:
    """Save a feature matrix atomically as .npy."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, matrix)

    return atomic_write(Path(path), write)


def pixel_cache_key(paths: list[str], size: int, grayscale: bool) -> str:
    """Key from the image list, each file's size and mtime, and the feature settings."""
    return fingerprint_text(f"pixels/{size}/{grayscale}", *(file_signature(p) for p in paths))


#: The Kaggle layout's folder that holds the CSVs and image folders (`tasks.data.dataset.PUBLIC_DIR`).
DATA_PUBLIC_DIR = "public"


def portable_path(path: str) -> str:
    """``path`` as cache keys name it: relative to its data directory (``public/<split>/<file>``)
    when it lies in one, else as given. Every image sits at ``<data-dir>/public/<split>/<file>``
    (`tasks.data.dataset`), so a data or output directory that is moved or copied (the embedded
    sample lives in the output directory) keeps its keys, and its caches stay warm."""
    parts = Path(path).parts
    folders = [i for i, part in enumerate(parts[:-1]) if part == DATA_PUBLIC_DIR]
    return "/".join(parts[folders[-1] :]) if folders else str(path)


def file_signature(path: str) -> str:
    """``path:size:mtime`` (or ``path:missing``), the path made `portable_path`: changes whenever
    the file is replaced or edited, not when its data directory moves (mtimes move with it)."""
    name = portable_path(path)
    try:
        stat = os.stat(path)
    except OSError:
        return f"{name}:missing"
    return f"{name}:{stat.st_size}:{stat.st_mtime_ns}"


#: ``pixels-<size><g|c>-<key>.npy``: the settings a cached matrix was computed with, in its name.
PIXEL_FILE = re.compile(r"pixels-(?P<size>[0-9]+)(?P<kind>[gc])-(?P<key>[0-9a-f]+)\.npy")


def pixel_file(cache_dir: Path, size: int, grayscale: bool, key: str) -> Path:
    """Where the pixel features of these settings and this key are cached."""
    return Path(cache_dir) / f"pixels-{size}{'g' if grayscale else 'c'}-{key}.npy"


def read_table_paths(table_path: Path) -> list[str]:
    """The image paths of a run's table, in row order."""
    import pandas as pd

    return pd.read_csv(table_path, usecols=["path"], dtype=str)["path"].tolist()


def read_pixel_features(path: Path, n_rows: int, size: int, grayscale: bool) -> np.ndarray:
    """A cached pixel matrix, checked against the table it belongs to; `DamagedCache` otherwise.

    Memory-mapped, read-only: each baseline (two run at once) copies only the rows it fits or
    scores, instead of holding the whole matrix too (1.4 GB of float32 at 150,000 images of
    48 px). The range check reads every page once, through the shared page cache."""
    width = size * size * (1 if grayscale else 3)
    matrix = read_npy(path, (n_rows, width), np.float32, mmap=True)
    if matrix.size and not (np.isfinite(matrix).all() and matrix.min() >= 0.0 and matrix.max() <= 1.0):
        raise DamagedCache(path, "holds values outside [0, 1] (pixel features are scaled to [0, 1])")
    return matrix


def pixel_features(table_path: Path, size: int, cache_dir: Path, grayscale: bool = True, refresh: bool = False) -> Path:
    """Pixel features for every row of the table (row order), cached across runs by content
    (``refresh`` recomputes them; a damaged cache file is recomputed too)."""
    paths = read_table_paths(table_path)
    target = pixel_file(cache_dir, size, grayscale, pixel_cache_key(paths, size, grayscale))
    if target.is_file() and not refresh:
        try:
            read_pixel_features(target, len(paths), size, grayscale)
            return target
        except DamagedCache as err:
            discard(target, err.reason)
    save_matrix(target, load_pixel_matrix(paths, size, grayscale))
    return target


def load_pixel_features(path: Path, table_path: Path) -> np.ndarray:
    """The matrix `pixel_features` cached at ``path`` for this table. A damaged file (truncated,
    garbled, another table's rows) is deleted with one warning and computed again, as a cold run
    computes it; concurrent readers that find the same damage rebuild it once."""
    path = Path(path)
    n_rows = len(read_table_paths(table_path))
    named = PIXEL_FILE.fullmatch(path.name)
    if named is None:  # not a cache file of ours: check it, but there is no recipe to rebuild it from
        return read_npy(path, (n_rows, None), np.float32)
    size, grayscale = int(named["size"]), named["kind"] == "g"
    try:
        return read_pixel_features(path, n_rows, size, grayscale)
    except DamagedCache:
        with cache_lock(path):
            try:  # another reader may have rebuilt it while this one waited
                return read_pixel_features(path, n_rows, size, grayscale)
            except DamagedCache as err:
                discard(path, err.reason)
            rebuilt = pixel_features(table_path, size, path.parent, grayscale)
    return read_pixel_features(rebuilt, n_rows, size, grayscale)
