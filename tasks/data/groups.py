"""Duplicate groups: pairs of images that are the same picture, joined into connected components.

Pure functions on arrays, so that validation (pairs from the image scan's hashes), the audit
(pairs from backbone features) and the split (which keeps every group on one side) share them.

- `hash_pairs`: equal content hashes (the same bytes), and perceptual hashes within a Hamming
  distance. Each image has four (`PerceptualHashes`): of the image and of its centre (a share cut
  from each side), each as is and mirrored. Two images pair when one's image hash is close to the
  other's image or mirror hash (resized, re-encoded, mirrored copies) or to the other's centre
  or mirrored centre hash (a copy cropped by that share, mirrored or not). Compared in tiles with
  ``numpy.bitwise_count`` (all pairs; memory bounded by the tile).
- `connected_groups`: pairs -> a group id per image (``scipy.sparse.csgraph.connected_components``);
  images in no pair get no group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

#: Rows x columns of one tile of the all-pairs Hamming comparison (uint64: 128 MiB per array).
_TILE = (2048, 8192)


def hex_to_uint64(values: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """16-hex-digit hashes as uint64, and a mask of the rows that have one."""
    present = np.array([isinstance(v, str) and len(v) == 16 for v in values], dtype=bool)
    codes = np.zeros(len(values), dtype=np.uint64)
    codes[present] = [int(v, 16) for v, ok in zip(values, present) if ok]  # type: ignore[arg-type]
    return codes, present


def exact_pairs(content_hashes: Sequence[str | None]) -> np.ndarray:
    """(k, 2) row pairs with the same content hash (a chain per hash: enough for components)."""
    frame = pd.DataFrame({"hash": list(content_hashes)}).dropna()
    pairs = []
    for rows in frame.groupby("hash").indices.values():
        if len(rows) > 1:
            index = frame.index.to_numpy()[rows]
            pairs.append(np.column_stack([index[:-1], index[1:]]))
    return np.concatenate(pairs).astype(np.int64) if pairs else np.empty((0, 2), np.int64)


@dataclass(frozen=True)
class PerceptualHashes:
    """Per image, 16-hex-digit perceptual hashes of the image, its mirror image, its centre and its
    mirrored centre (None where an image has none)."""

    image: Sequence[str | None]
    mirror: Sequence[str | None]
    center: Sequence[str | None]
    center_mirror: Sequence[str | None]

    def codes(self) -> tuple[list[np.ndarray], np.ndarray]:
        """The four hashes as uint64 arrays, and a mask of the rows that have all four."""
        decoded = [hex_to_uint64(values) for values in (self.image, self.mirror, self.center, self.center_mirror)]
        present = np.logical_and.reduce([mask for _, mask in decoded])
        return [codes for codes, _ in decoded], present


#: Which of i's hashes is compared with which of j's (indices into `PerceptualHashes.codes`), in
#: both directions: image~image, image~mirror (a mirrored copy), image~centre and
#: image~mirrored centre (j is i cropped, or i is j cropped: the pair is symmetric below).
_COMPARED = ((0, 0), (0, 1), (0, 2), (0, 3), (2, 0), (3, 0))


def hamming_pairs(hashes: list[np.ndarray], present: np.ndarray, max_distance: int) -> np.ndarray:
    """(k, 2) row pairs i < j with any compared pair of hashes (`_COMPARED`) at most ``max_distance`` bits apart."""
    rows = np.flatnonzero(present)
    codes = [h[rows] for h in hashes]
    found = []
    for i0 in range(0, len(rows), _TILE[0]):
        for j0 in range(i0, len(rows), _TILE[1]):
            close = np.zeros((min(_TILE[0], len(rows) - i0), min(_TILE[1], len(rows) - j0)), dtype=bool)
            for left, right in _COMPARED:
                tile = codes[left][i0 : i0 + _TILE[0], None] ^ codes[right][None, j0 : j0 + _TILE[1]]
                close |= np.bitwise_count(tile) <= max_distance
            i, j = np.nonzero(close)
            i, j = i + i0, j + j0
            keep = i != j
            found.append(np.sort(np.column_stack([rows[i[keep]], rows[j[keep]]]), axis=1))
    return np.unique(np.concatenate(found), axis=0).astype(np.int64) if found else np.empty((0, 2), np.int64)


def hash_pairs(content_hashes: Sequence[str | None], hashes: PerceptualHashes, max_distance: int) -> np.ndarray:
    """Exact (same bytes) and perceptual (`hamming_pairs`) pairs of row numbers; ``max_distance``
    -1 keeps the exact ones only."""
    pairs = [exact_pairs(content_hashes)]
    if max_distance >= 0:
        codes, present = hashes.codes()
        pairs.append(hamming_pairs(codes, present, max_distance))
    return np.unique(np.concatenate(pairs), axis=0) if sum(map(len, pairs)) else np.empty((0, 2), np.int64)


def connected_groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """A group id per row (1, 2, ... numbered by each group's first row), 0 for a row in no pair."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if n == 0 or len(pairs) == 0:
        return np.zeros(n, dtype=np.int64)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first, kind="stable")  # components by first row
    ids = np.zeros(len(sizes), dtype=np.int64)
    multi = order[sizes[order] > 1]
    ids[multi] = np.arange(1, len(multi) + 1)
    return ids[labels]


def merge_groups(*group_ids: np.ndarray) -> np.ndarray:
    """One grouping joining several (images grouped in any of them end up in one group)."""
    n = len(group_ids[0])
    pairs = []
    for ids in group_ids:
        frame = pd.Series(np.asarray(ids))
        frame = frame[frame > 0]
        for rows in frame.groupby(frame).indices.values():
            index = frame.index.to_numpy()[rows]
            pairs.append(np.column_stack([index[:-1], index[1:]]))
    return connected_groups(n, np.concatenate(pairs) if pairs else np.empty((0, 2), np.int64))
