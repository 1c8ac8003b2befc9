"""How sure a hold-out score is: a stratified, seeded bootstrap over the hold-out images.

One resample draws, within each true class, as many images as the class has, with replacement
(so every class keeps its count, and macro-F1 always averages the same classes). A resample is
held as a matrix of counts ``W[b, i]`` (how often image ``i`` was drawn in resample ``b``), so
scoring a model on every resample is two matrix products (``W`` times one-hot columns of its
correct predictions per class and of its predicted class), without a Python loop over
resamples. The same ``W`` scores every model, which makes comparisons between models paired:
`paired_difference` resamples the image indices once and scores the challenger and the champion
on each resample.

Scores match `tasks.results.evaluation.evaluate_predictions` on the original images: accuracy,
and macro-F1 over the classes present in the hold-out (a class nobody predicted scores 0).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

#: Resamples per interval (at least 1,000, the usual floor for a 95% percentile interval).
DEFAULT_RESAMPLES = 2000
#: Interval level.
DEFAULT_LEVEL = 0.95
#: The bootstrap's seed: intervals are reproducible run to run and machine to machine.
DEFAULT_SEED = 20260
#: Resamples per block, so that ``W`` (block x images, float32) stays near 64 MB.
BLOCK_CELLS = 16_000_000


@dataclass(frozen=True)
class Interval:
    """A percentile interval at ``level``."""

    low: float
    high: float
    level: float

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high, "level": self.level}


class StratifiedBootstrap:
    """Seeded stratified resamples of one hold-out (``truth``: its true labels).

    The resamples are drawn block by block from one generator, so a given seed, resample count
    and hold-out always give the same resamples, whatever is scored on them.
    """

    def __init__(
        self, truth: ArrayLike, n_classes: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
    ) -> None:
        self.truth = np.asarray(truth, dtype=np.int64)
        if self.truth.ndim != 1 or len(self.truth) == 0:
            raise ValueError("the bootstrap needs a non-empty 1-d array of true labels")
        if n_resamples < 1:
            raise ValueError("n_resamples must be positive")
        self.n_classes = int(n_classes)
        self.n_resamples = int(n_resamples)
        self.seed = int(seed)
        if self.truth.min() < 0 or self.truth.max() >= self.n_classes:
            raise ValueError(f"true labels must lie in [0, {self.n_classes})")
        support = np.bincount(self.truth, minlength=self.n_classes)
        self.support = support.astype(np.float64)
        self.present = support > 0
        # Columns of a count matrix are the images sorted by class, so each class is one slice.
        self.order = np.argsort(self.truth, kind="stable")
        self.bounds = np.concatenate([[0], np.cumsum(support)])

    def blocks(self) -> Iterator[np.ndarray]:
        """The resamples as count matrices, ``(block, n_images)`` float32, block after block; column
        ``j`` counts image ``order[j]`` (images sorted by class)."""
        rng = np.random.default_rng(self.seed)
        n = len(self.truth)
        per_block = max(1, min(self.n_resamples, BLOCK_CELLS // n))
        done = 0
        while done < self.n_resamples:
            size = min(per_block, self.n_resamples - done)
            counts = np.zeros((size, n), dtype=np.float32)
            offsets = np.arange(size)[:, None]
            for start, stop in zip(self.bounds[:-1], self.bounds[1:]):
                k = int(stop - start)
                if k == 0:
                    continue
                drawn = rng.integers(0, k, size=(size, k))
                counts[:, start:stop] = np.bincount((offsets * k + drawn).ravel(), minlength=size * k).reshape(size, k)
            yield counts
            done += size

    def indicators(self, predicted: ArrayLike) -> np.ndarray:
        """``(n_images, 2 * n_classes)`` float32, rows in class order (as the count matrices' columns):
        one-hot of correct predictions by true class, then of the predicted class (a prediction out of
        range is an error no class is credited with)."""
        pred = np.asarray(predicted, dtype=np.int64)
        if pred.shape != self.truth.shape:
            raise ValueError(f"{len(pred)} predictions for {len(self.truth)} hold-out images")
        k, n = self.n_classes, len(pred)
        pred, truth = pred[self.order], self.truth[self.order]
        columns = np.zeros((n, 2 * k), dtype=np.float32)
        rows = np.arange(n)
        correct = pred == truth
        columns[rows[correct], truth[correct]] = 1.0
        valid = (pred >= 0) & (pred < k)
        columns[rows[valid], k + pred[valid]] = 1.0
        return columns

    def scores(self, counts: np.ndarray, indicators: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(accuracy, macro-F1) on each resample of ``counts`` (float64 arrays of its length)."""
        k = self.n_classes
        sums = (counts @ indicators).astype(np.float64)  # exact: integer counts below 2**24
        true_positives, predicted = sums[:, :k], sums[:, k:]
        accuracy = true_positives.sum(axis=1) / len(self.truth)
        denominator = self.support[None, :] + predicted  # 2TP + FP + FN = support + predicted count
        f1 = np.divide(2 * true_positives, denominator, out=np.zeros_like(denominator), where=denominator > 0)
        macro = f1[:, self.present].mean(axis=1)
        return accuracy, macro

    def distributions(self, predictions: Mapping[str, ArrayLike]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per model, (accuracy, macro-F1) on every resample, all models on the same resamples."""
        columns = {name: self.indicators(pred) for name, pred in predictions.items()}
        parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {name: [] for name in predictions}
        for counts in self.blocks():
            for name, indicator in columns.items():
                parts[name].append(self.scores(counts, indicator))
        return {
            name: (np.concatenate([a for a, _ in got]), np.concatenate([m for _, m in got]))
            for name, got in parts.items()
        }


def percentile_interval(values: np.ndarray, level: float = DEFAULT_LEVEL) -> Interval:
    """The percentile interval of bootstrap ``values`` at ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"the interval level must be between 0 and 1, not {level}")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return Interval(float(low), float(high), float(level))


def score_intervals(
    truth: ArrayLike,
    predictions: Mapping[str, ArrayLike],
    n_classes: int,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> dict[str, dict[str, Interval]]:
    """Per model, ``{"accuracy": Interval, "macro_f1": Interval}`` from one stratified bootstrap."""
    bootstrap = StratifiedBootstrap(truth, n_classes, n_resamples, seed)
    return {
        name: {"accuracy": percentile_interval(acc, level), "macro_f1": percentile_interval(macro, level)}
        for name, (acc, macro) in bootstrap.distributions(predictions).items()
    }


@dataclass(frozen=True)
class PairedDifference:
    """Challenger minus champion macro-F1 on the same hold-out images: the point difference and
    its paired-bootstrap interval."""

    difference: float
    interval: Interval
    images: int
    resamples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "difference": self.difference,
            "interval": self.interval.to_dict(),
            "images": self.images,
            "resamples": self.resamples,
            "seed": self.seed,
        }


def paired_difference(
    truth: ArrayLike,
    challenger: ArrayLike,
    champion: ArrayLike,
    n_classes: int,
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> PairedDifference:
    """Macro-F1 of ``challenger`` minus ``champion`` (predictions of the same images, aligned with
    ``truth``): on the images as they are, and its interval over stratified resamples in which
    both are scored on the very same resampled images."""
    bootstrap = StratifiedBootstrap(truth, n_classes, n_resamples, seed)
    scored = bootstrap.distributions({"challenger": challenger, "champion": champion})
    differences = scored["challenger"][1] - scored["champion"][1]
    identity = np.ones((1, len(bootstrap.truth)), dtype=np.float32)
    point = (
        bootstrap.scores(identity, bootstrap.indicators(challenger))[1][0]
        - bootstrap.scores(identity, bootstrap.indicators(champion))[1][0]
    )
    return PairedDifference(
        float(point), percentile_interval(differences, level), len(bootstrap.truth), bootstrap.n_resamples, seed
    )
