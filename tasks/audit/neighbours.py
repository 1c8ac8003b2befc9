"""Near duplicates from backbone features: pairs whose cosine similarity reaches a threshold.

faiss finds each image's nearest neighbours on L2-normalised features (inner product = cosine):
an exact flat index up to 20,000 images, an HNSW graph beyond (approximate, about n log n), so
200,000 images stay within minutes on two cores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Above this many images the neighbour search is approximate (HNSW) instead of exact.
EXACT_UP_TO = 20_000


def normalised(features: np.ndarray) -> np.ndarray:
    """Float32 rows of unit length (a feature map is averaged over its positions first)."""
    array = np.asarray(features, dtype=np.float32)
    if array.ndim > 2:
        array = array.reshape(len(array), -1, array.shape[-1]).mean(axis=1)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, 1e-12))


def feature_pairs(features: np.ndarray, min_similarity: float, neighbours: int = 5) -> np.ndarray:
    """(k, 2) row pairs i < j whose features' cosine similarity is at least ``min_similarity``."""
    import faiss  # deferred: only the audit stage needs it

    vectors = normalised(features)
    n = len(vectors)
    if n < 2:
        return np.empty((0, 2), np.int64)
    dim = vectors.shape[1]
    index: Any
    if n <= EXACT_UP_TO:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 64
    index.add(vectors)
    k = min(neighbours + 1, n)
    similarity, found = index.search(vectors, k)
    rows = np.repeat(np.arange(n), k)
    cols, sims = found.ravel(), similarity.ravel()
    keep = (cols >= 0) & (cols != rows) & (sims >= min_similarity)
    pairs = np.sort(np.column_stack([rows[keep], cols[keep]]), axis=1)
    return np.unique(pairs, axis=0).astype(np.int64) if len(pairs) else np.empty((0, 2), np.int64)
