"""The backbone pass as independent tasks, for the workers of a Dask cluster.

Under a Dask task runner the flow (`flows.cluster.spread_backbone_pass`) lists the chunks of
every pass that have no file yet (`pending_chunks`) and submits one task per chunk
(`compute_chunk`). The workers write the chunk files into the output directory's cache (shared
storage: `flows.cluster.check_workers` checks they reach it), and the ordinary backbone-features
step then finds every chunk and only assembles the ``.npz``. Each worker builds the backbone once
and keeps it for its later chunks. Under the thread runner none of this runs: one process, one
model, the chunks in order.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.data.dataset import image_ok_flags
from tasks.data.splitting import read_table
from tasks.models.embeddings import EmbeddingSpec, FeaturePass, backbone_for, feature_passes, pass_extractor
from tasks.models.feature_chunks import Chunk, chunk_bounds, plan_chunk, run_chunk


def pass_chunk(
    one: FeaturePass,
    paths: list[str],
    ok: np.ndarray,
    spec: EmbeddingSpec,
    cache_dir: Path,
    chunk_size: int,
    index: int,
) -> tuple[Chunk, list[str], np.ndarray]:
    """Chunk ``index`` of pass ``one`` over the table's ``paths``/``ok``, with the pass's own paths and flags."""
    pass_paths, pass_ok = [paths[i] for i in one.rows], ok[one.rows]
    chunk = plan_chunk(
        pass_paths, pass_ok, spec, cache_dir, augment=one.augment, seed=one.seed, chunk_size=chunk_size, index=index
    )
    return chunk, pass_paths, pass_ok


def pending_chunks(
    table_path: Path, spec: EmbeddingSpec, cache_dir: Path, chunk_size: int, refresh: bool = False
) -> list[tuple[int, int]]:
    """``(pass, chunk)`` of every chunk without a file yet (all of them under ``refresh``). A
    damaged file counts as finished here; the assembling step finds it and computes it again."""
    table = read_table(table_path)
    paths, ok = table["path"].tolist(), image_ok_flags(table)
    pending = []
    for pass_index, one in enumerate(feature_passes(table, spec)):
        for index in range(len(chunk_bounds(len(one.rows), chunk_size))):
            chunk, _, _ = pass_chunk(one, paths, ok, spec, cache_dir, chunk_size, index)
            if refresh or not chunk.path.is_file():
                pending.append((pass_index, index))
    return pending


@dataclass(frozen=True)
class ChunkReport:
    """What one chunk task did: its pass and chunk, how many rows, whether it computed them (or found
    the file finished), how long it took, on which worker (host:pid), reporting to which Prefect API."""

    pass_label: str
    chunk: int
    rows: int
    computed: bool
    seconds: float
    worker: str
    api_url: str


@functools.lru_cache(maxsize=1)
def worker_backbone(spec: EmbeddingSpec) -> Any:
    """`backbone_for`, built once per worker process and kept for its next chunks."""
    return backbone_for(spec)


def compute_chunk(
    table_path: Path,
    spec: EmbeddingSpec,
    cache_dir: Path,
    pass_index: int,
    chunk_index: int,
    chunk_size: int,
    refresh: bool = False,
) -> ChunkReport:
    """Compute one chunk's features into its cache file (reused when finished, unless ``refresh``);
    returns what was done and where: rows, seconds, the worker (host:pid) and its Prefect API."""
    from prefect.settings import get_current_settings

    started = time.monotonic()
    table = read_table(table_path)
    one = feature_passes(table, spec)[pass_index]
    chunk, paths, ok = pass_chunk(
        one, table["path"].tolist(), image_ok_flags(table), spec, cache_dir, chunk_size, chunk_index
    )
    _, computed = run_chunk(
        chunk, functools.partial(worker_backbone, spec), pass_extractor(spec, one.augment), paths, ok, refresh
    )
    return ChunkReport(
        one.label,
        chunk_index,
        chunk.stop - chunk.start,
        computed,
        round(time.monotonic() - started, 2),
        f"{socket.gethostname()}:{os.getpid()}",
        str(get_current_settings().api.url),
    )
