"""Small grayscale pixel features, as the original project's Random Forest and SVM used.

Images are decoded with PIL's draft mode (the JPEG decoder scales by 1/2..1/8 for free), turned
into any-mode -> grayscale, resized to ``size x size`` and flattened to floats in [0, 1].
Decoding runs in a thread pool: PIL releases the GIL while it decodes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

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
    """Stack many images into an (n, size*size[*3]) matrix, decoding in parallel."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(lambda p: load_pixel_vector(p, size, grayscale), paths, chunksize=64))
    width = size * size * (1 if grayscale else 3)
    return np.stack(rows) if rows else np.zeros((0, width), np.float32)


def save_matrix(path: Path, matrix: np.ndarray) -> Path:
    """Save a feature matrix atomically as .npy."""
    from tasks.io import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, matrix)

    return atomic_write(Path(path), write)


def pixel_cache_key(paths: list[str], size: int, grayscale: bool) -> str:
    """Key from the image list, each file's size and mtime, and the feature settings."""
    from tasks.io import fingerprint_text

    return fingerprint_text(f"pixels/{size}/{grayscale}", *(file_signature(p) for p in paths))


def file_signature(path: str) -> str:
    """``path:size:mtime`` (or ``path:missing``): changes whenever the file is replaced or edited."""
    try:
        stat = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def pixel_features(table_path: Path, size: int, cache_dir: Path, grayscale: bool = True, refresh: bool = False) -> Path:
    """Pixel features for every row of the table (row order), cached across runs by content
    (``refresh`` recomputes them)."""
    import pandas as pd

    paths = pd.read_csv(table_path, usecols=["path"], dtype=str)["path"].tolist()
    target = Path(cache_dir) / f"pixels-{size}{'g' if grayscale else 'c'}-{pixel_cache_key(paths, size, grayscale)}.npy"
    if refresh or not target.is_file():
        save_matrix(target, load_pixel_matrix(paths, size, grayscale))
    return target
