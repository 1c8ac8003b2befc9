"""The chunked backbone pass: a run killed part-way resumes from its last finished chunk, and the
features equal those of an uninterrupted pass (tasks/models/feature_chunks.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tasks.models.embeddings as embeddings
from tasks.models.embeddings import EmbeddingSpec, compute_embeddings
from tasks.models.feature_chunks import chunk_bounds
from tasks.models.settings import TransferSettings
from tests.model.test_cache_healing_models import SMALL, SPLIT, run_table, small_table, stored  # noqa: F401

SPEC = EmbeddingSpec.of(TransferSettings(views=1, **SMALL), SPLIT.seed)
REAL_EXTRACT = embeddings.extract_features
CHUNK = 8  # 48 rows + one view of 16 train rows: 8 chunks


class Killed(BaseException):
    """What a kill looks like to the code: nothing after it runs (not an Exception)."""


def count_extractions(monkeypatch: pytest.MonkeyPatch, fail_after: int | None = None) -> list[int]:
    """Record each chunk the backbone computes (its size); raise `Killed` after ``fail_after`` chunks."""
    computed: list[int] = []

    def spy(model, paths, ok, spec, augment, seed):  # noqa: ANN001, ANN202
        if fail_after is not None and len(computed) == fail_after:
            raise Killed
        computed.append(len(paths))
        return REAL_EXTRACT(model, paths, ok, spec, augment, seed)

    monkeypatch.setattr(embeddings, "extract_features", spy)
    return computed


@pytest.mark.slow
def test_a_killed_backbone_pass_recomputes_only_the_unfinished_chunks(
    run_table: Path,  # noqa: F811
    tiny_sample: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n_rows = sum(1 for _ in open(run_table)) - 1
    n_train = 16
    total_chunks = len(chunk_bounds(n_rows, CHUNK)) + len(chunk_bounds(n_train, CHUNK))  # clean pass + one view

    cold_table = small_table(tiny_sample, tmp_path / "cold")  # the same rows, another cache
    cold = stored(compute_embeddings(cold_table, SPEC, tmp_path / "cold-cache", chunk_size=CHUNK))

    cache = tmp_path / "cache"
    first = count_extractions(monkeypatch, fail_after=3)
    with pytest.raises(Killed):
        compute_embeddings(run_table, SPEC, cache, chunk_size=CHUNK)
    assert len(first) == 3 and not list((cache / "embeddings").glob("*.npz"))  # nothing final was written

    resumed = count_extractions(monkeypatch)
    path = compute_embeddings(run_table, SPEC, cache, chunk_size=CHUNK)
    assert len(resumed) == total_chunks - 3  # the three finished chunks were not computed again
    got = stored(path)
    for name in ("clean", "views", "train_rows"):
        np.testing.assert_array_equal(got[name], cold[name], err_msg=name)

    # A damaged chunk (the assembled file gone too) is computed again, alone.
    path.unlink()
    chunk = sorted((cache / "embeddings" / "chunks").glob("*.npy"))[0]
    chunk.write_bytes(chunk.read_bytes()[:50])
    healed = count_extractions(monkeypatch)
    again = stored(compute_embeddings(run_table, SPEC, cache, chunk_size=CHUNK))
    assert len(healed) == 1
    for name in ("clean", "views", "train_rows"):
        np.testing.assert_array_equal(again[name], cold[name], err_msg=name)

    refreshed = count_extractions(monkeypatch)
    compute_embeddings(run_table, SPEC, cache, chunk_size=CHUNK, refresh=True)
    assert len(refreshed) == total_chunks  # --refresh recomputes every chunk


@pytest.mark.slow
def test_chunks_computed_one_task_each_assemble_into_the_same_features(
    run_table: Path,  # noqa: F811
    tiny_sample: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a Dask cluster's workers do (one `compute_chunk` task per chunk, any order) gives the
    very file one process computes, and assembling it computes nothing again, even under --refresh."""
    from tasks.models.chunk_tasks import compute_chunk, pending_chunks

    cold = stored(compute_embeddings(small_table(tiny_sample, tmp_path / "cold"), SPEC, tmp_path / "cold-cache"))
    cache = tmp_path / "cache"
    pending = pending_chunks(run_table, SPEC, cache, CHUNK)
    n_rows, n_train = sum(1 for _ in open(run_table)) - 1, 16
    assert len(pending) == len(chunk_bounds(n_rows, CHUNK)) + len(chunk_bounds(n_train, CHUNK))
    done = [compute_chunk(run_table, SPEC, cache, p, c, CHUNK) for p, c in reversed(pending)]
    assert all(d.computed for d in done) and pending_chunks(run_table, SPEC, cache, CHUNK) == []

    assembled = count_extractions(monkeypatch)
    got = stored(compute_embeddings(run_table, SPEC, cache, chunk_size=CHUNK, refresh=True, reuse_chunks=True))
    assert assembled == []
    for name in ("clean", "views", "train_rows"):
        np.testing.assert_array_equal(got[name], cold[name], err_msg=name)
