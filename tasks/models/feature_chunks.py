"""The backbone pass in chunks, each cached by content: a killed run resumes from the last chunk.

At 150,000 images the backbone pass is the longest stage on a CPU (over an hour). Run as one
piece, a crash near its end lost all of it; here the images are cut into chunks of
``chunk_size`` (in table order), and each chunk's features are written atomically to
``<cache>/embeddings/chunks/<key>.npy`` as soon as they exist. The key is the backbone settings,
the pass (clean, or augmented view *v*) and every image's (path, size, mtime) in the chunk, so a
rerun finds every finished chunk and computes only the others, and a changed image recomputes
only its chunk. Chunk files are read back without pickle and checked (shape, dtype, finite); a
damaged one is deleted with one warning and computed again.

The features are written into one preallocated array (no list of batches, no second copy at
the end) and the console shows a progress bar with images/s and the ETA (tqdm), mirrored to a
Prefect progress artifact when inside a run. The chunks are independent: under a Dask task
runner the flow submits the unfinished ones to the cluster's workers first
(`tasks.models.chunk_tasks`), and the pass then only reads their files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.cache_files import DamagedCache, discard, read_npy
from tasks.io import atomic_write, fingerprint_text
from tasks.models.features import file_signature
from tasks.progress import StageProgress

#: Bumped when what a chunk holds changes meaning (keeps old chunk files from being reused).
CHUNK_FORMAT = "chunks-v1"


def chunk_bounds(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each chunk of ``n`` rows, in order."""
    return [(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]


def chunk_seed(seed: int, index: int) -> int:
    """The augmentation seed of one chunk: distinct per chunk, the same on every rerun."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def chunk_key(spec: Any, augment: bool, seed: int, paths: list[str], ok: np.ndarray) -> str:
    """Content key of one chunk: ``spec.key_text()`` (`EmbeddingSpec`), the pass, each image's signature."""
    flags = "".join("1" if flag else "0" for flag in ok)
    return fingerprint_text(
        CHUNK_FORMAT, spec.key_text(), f"augment={augment}", f"seed={seed}", flags, *map(file_signature, paths)
    )


def chunk_file(cache_dir: Path, key: str) -> Path:
    """Where one chunk's features are cached."""
    return Path(cache_dir) / "embeddings" / "chunks" / f"{key}.npy"


def read_chunk(path: Path, rows: int) -> np.ndarray | None:
    """A finished chunk's features, or None when it is missing or damaged (then it is deleted)."""
    if not path.is_file():
        return None
    try:
        array = read_npy(path, (rows, None), np.float16)
        if not np.isfinite(array).all():
            raise DamagedCache(path, "holds non-finite values")
        return array
    except DamagedCache as err:
        discard(path, err.reason)
        return None


def write_chunk(path: Path, features: np.ndarray) -> None:
    """Write one chunk atomically (a killed run never leaves a half chunk under its name)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, features)

    atomic_write(path, write)  # makes the folder


@dataclass(frozen=True)
class Chunk:
    """One chunk of one pass: rows ``[start, stop)`` of the pass's images, its seed and cache file."""

    index: int
    start: int
    stop: int
    seed: int
    path: Path


def plan_chunk(
    paths: list[str],
    ok: np.ndarray,
    spec: Any,
    cache_dir: Path,
    *,
    augment: bool,
    seed: int,
    chunk_size: int,
    index: int,
) -> Chunk:
    """Chunk ``index`` of one pass over ``paths``, with its content key's file (only its own
    images are looked at: a worker computing one chunk does not stat the other 150,000)."""
    start, stop = index * chunk_size, min((index + 1) * chunk_size, len(paths))
    if not 0 <= start < stop:
        raise IndexError(f"chunk {index} of {len(paths)} images in chunks of {chunk_size} does not exist")
    piece_seed = chunk_seed(seed, index)
    key = chunk_key(spec, augment, piece_seed, paths[start:stop], np.asarray(ok, bool)[start:stop])
    return Chunk(index, start, stop, piece_seed, chunk_file(cache_dir, key))


def plan_chunks(
    paths: list[str], ok: np.ndarray, spec: Any, cache_dir: Path, *, augment: bool, seed: int, chunk_size: int
) -> list[Chunk]:
    """Every chunk of one pass over ``paths``, in order."""
    n_chunks = len(chunk_bounds(len(paths), chunk_size))
    return [
        plan_chunk(paths, ok, spec, cache_dir, augment=augment, seed=seed, chunk_size=chunk_size, index=i)
        for i in range(n_chunks)
    ]


def run_chunk(
    chunk: Chunk,
    get_model: Callable[[], Any],
    extract: Callable[[Any, list[str], np.ndarray, int], np.ndarray],
    paths: list[str],
    ok: np.ndarray,
    refresh: bool = False,
) -> tuple[np.ndarray, bool]:
    """One chunk's features (``paths``/``ok`` are the whole pass's) and whether they were computed
    now: a finished chunk file is reused unless ``refresh``; otherwise the model is built (only
    then) and the features are written atomically before they are returned."""
    features = None if refresh else read_chunk(chunk.path, chunk.stop - chunk.start)
    if features is not None:
        return features, False
    rows = slice(chunk.start, chunk.stop)
    features = np.asarray(extract(get_model(), paths[rows], np.asarray(ok, bool)[rows], chunk.seed), np.float16)
    write_chunk(chunk.path, features)
    return features, True


def extract_in_chunks(
    get_model: Callable[[], Any],
    extract: Callable[[Any, list[str], np.ndarray, int], np.ndarray],
    paths: list[str],
    ok: np.ndarray,
    spec: Any,
    cache_dir: Path,
    *,
    augment: bool,
    seed: int,
    chunk_size: int,
    label: str,
    refresh: bool = False,
) -> np.ndarray:
    """Features of ``paths`` (in order) as one float16 array, chunk by chunk, reusing finished chunks.

    ``get_model()`` builds the backbone (called only if some chunk must be computed; it should
    memoise); ``extract(model, paths, ok, seed)`` computes one chunk's features. ``refresh``
    recomputes every chunk (and replaces its file).
    """
    chunks = plan_chunks(paths, ok, spec, cache_dir, augment=augment, seed=seed, chunk_size=chunk_size)
    out: np.ndarray | None = None
    with StageProgress(label, total=len(paths), unit="img") as progress:
        for chunk in chunks:
            features, _ = run_chunk(chunk, get_model, extract, paths, ok, refresh)
            if out is None:
                out = np.empty((len(paths), *features.shape[1:]), np.float16)
            out[chunk.start : chunk.stop] = features
            progress.advance(chunk.stop - chunk.start)
    if out is None:  # no images: the width is the model's
        return np.zeros((0, *get_model().output_shape[1:]), np.float16)
    return out
