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
Prefect progress artifact when inside a run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tasks.cache_files import DamagedCache, discard, read_npy
from tasks.io import atomic_write, fingerprint_text
from tasks.models.features import file_signature

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

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


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

    ``get_model()`` builds the backbone (called only if some chunk must be computed);
    ``extract(model, paths, ok, seed)`` computes one chunk's features. ``refresh`` recomputes
    every chunk (and replaces its file).
    """
    from tasks.models.progress import StageProgress

    ok = np.asarray(ok, bool)
    out: np.ndarray | None = None
    model = None
    with StageProgress(label, total=len(paths), unit="img") as progress:
        for index, (start, stop) in enumerate(chunk_bounds(len(paths), chunk_size)):
            piece_seed = chunk_seed(seed, index)
            key = chunk_key(spec, augment, piece_seed, paths[start:stop], ok[start:stop])
            path = chunk_file(cache_dir, key)
            features = None if refresh else read_chunk(path, stop - start)
            if features is None:
                model = model if model is not None else get_model()
                features = np.asarray(extract(model, paths[start:stop], ok[start:stop], piece_seed), np.float16)
                write_chunk(path, features)
            if out is None:
                out = np.empty((len(paths), *features.shape[1:]), np.float16)
            out[start:stop] = features
            progress.advance(stop - start)
    if out is None:  # no images: the width is the model's
        model = model if model is not None else get_model()
        return np.zeros((0, *model.output_shape[1:]), np.float16)
    return out
