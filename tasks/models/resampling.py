"""Class-imbalance handling, applied to the TRAIN role only, after the hold-out was carved.

Nothing is written to disk: oversampling repeats row indices, and the repeated rows get a
different random augmentation each time they are loaded. (The original project wrote rotated
copies to disk before splitting, which leaked copies of training images into its validation set.)
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Strategy = Literal["none", "oversample", "undersample", "class-weights"]


def class_counts(labels: np.ndarray, n_classes: int) -> list[int]:
    """Images per class, index order."""
    return np.bincount(np.asarray(labels, int), minlength=n_classes).astype(int).tolist()


def oversample_indices(labels: np.ndarray, target_share: float, seed: int) -> np.ndarray:
    """Repeat minority-class rows until each class has at least ``target_share`` of the largest class."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, int)
    largest = np.bincount(labels).max()
    wanted = int(np.ceil(largest * target_share))
    parts = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        extra = max(wanted - len(members), 0)
        parts.append(members)
        if extra:
            parts.append(rng.choice(members, size=extra, replace=True))
    return rng.permutation(np.concatenate(parts))


def undersample_indices(labels: np.ndarray, max_ratio: float, seed: int) -> np.ndarray:
    """Drop majority-class rows until no class exceeds ``max_ratio`` times the smallest class."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, int)
    smallest = np.bincount(labels)[np.unique(labels)].min()
    cap = int(np.ceil(smallest * max_ratio))
    parts = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        parts.append(rng.choice(members, size=min(cap, len(members)), replace=False))
    return rng.permutation(np.concatenate(parts))


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """``n / (k * count)`` per present class (scikit-learn's 'balanced'), for the loss."""
    counts = np.bincount(np.asarray(labels, int), minlength=n_classes)
    present = np.flatnonzero(counts)
    total = counts.sum()
    return {int(c): float(total / (len(present) * counts[c])) for c in present}


def resample(
    labels: np.ndarray,
    n_classes: int,
    strategy: Strategy,
    seed: int,
    target_share: float = 0.5,
    max_ratio: float = 3.0,
) -> tuple[np.ndarray, dict[int, float] | None, dict[str, list[int]]]:
    """(row indices into the train rows, optional class weights, class counts before/after)."""
    labels = np.asarray(labels, int)
    if strategy == "oversample":
        indices = oversample_indices(labels, target_share, seed)
    elif strategy == "undersample":
        indices = undersample_indices(labels, max_ratio, seed)
    elif strategy in ("none", "class-weights"):
        indices = np.random.default_rng(seed).permutation(len(labels))
    else:
        raise ValueError(f"unknown resampling strategy {strategy!r}")
    weights = balanced_class_weights(labels, n_classes) if strategy == "class-weights" else None
    counts = {"before": class_counts(labels, n_classes), "after": class_counts(labels[indices], n_classes)}
    return indices, weights, counts
