"""Which rows of the run's table each stage fits and validates on.

The validation slice is carved from the TRAIN role first; resampling touches only what is left
(the fit rows). Stage 2 may fine-tune on a stratified draw of the fit rows (its image budget).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.data.settings import SplitSettings
from tasks.data.splitting import ROLE_TRAIN, carve_validation_slice
from tasks.models.resampling import resample
from tasks.models.settings import TransferSettings


@dataclass(frozen=True)
class TrainingRows:
    """Row numbers (into the run's table) of the fit set (after resampling) and the validation slice."""

    fit: np.ndarray
    val: np.ndarray
    class_weight: dict[int, float] | None
    counts: dict[str, list[int]]


def plan_training_rows(table: Any, n_classes: int, settings: TransferSettings, split: SplitSettings) -> TrainingRows:
    """Carve the validation slice from the TRAIN role, then resample what is left (train only)."""
    target = split.target
    train = table[table["role"] == ROLE_TRAIN]
    fit, val = carve_validation_slice(train, target, settings.val_fraction, split.seed)  # type: ignore[arg-type]
    fit_rows = fit.index.to_numpy()
    indices, class_weight, counts = resample(
        fit[target].astype(int).to_numpy(),
        n_classes,
        split.resampling,
        split.seed,
        target_share=split.oversample_share,
        max_ratio=split.undersample_ratio,
    )
    return TrainingRows(fit=fit_rows[indices], val=val.index.to_numpy(), class_weight=class_weight, counts=counts)


def stratified_draw(rows: np.ndarray, labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` of ``rows`` (all when ``limit`` is 0 or not smaller), drawn at random
    within each class; each class gets its share of ``limit`` by largest remainders (within one
    row of it), and at least one row while ``limit`` allows (given up by the largest classes)."""
    if limit <= 0 or len(rows) <= limit:
        return rows
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = limit * counts / len(rows)
    take = np.floor(quota).astype(int)
    take[np.argsort(take - quota, kind="stable")[: limit - take.sum()]] += 1
    if limit >= len(counts):  # a rare class keeps one row, taken from the largest share
        for cls in np.flatnonzero(take == 0):
            take[np.argmax(take)] -= 1
            take[cls] = 1
    rng = np.random.default_rng(seed)
    taken = [rng.permutation(np.flatnonzero(inverse == c))[:n] for c, n in enumerate(take)]
    return rows[np.sort(np.concatenate(taken))]


def stage1_inputs(
    emb: dict[str, np.ndarray], table: Any, rows: np.ndarray, target: str
) -> tuple[np.ndarray, np.ndarray]:
    """Clean features of ``rows`` plus each augmented view of them, as float32, and their labels
    (repeated once per view): the (x, y) a stage-1 head is fitted on."""
    parts = [emb["clean"][rows]]
    if len(emb["views"]):
        position = {int(r): i for i, r in enumerate(emb["train_rows"])}
        view_index = np.array([position[int(r)] for r in rows])
        parts += [view[view_index] for view in emb["views"]]
    return np.concatenate(parts, dtype=np.float32), np.tile(table.loc[rows, target].astype(int).to_numpy(), len(parts))
