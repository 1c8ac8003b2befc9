"""The L2 strength of a linear probe (logistic regression on standardised backbone features),
chosen by stratified k-fold cross-validation on the training rows.

The right strength depends on the data, its size among others: on real photos C moved the probe's
macro-F1 by 0.08, so a fixed ``C`` suits one dataset only. `choose_c` scores a fixed grid (`C_GRID`, never tuned
to a benchmark) by mean macro-F1 over `CV_FOLDS` folds and keeps the best (the stronger one on a
tie). Cost is bounded: at most `CV_MAX_IMAGES` rows (a seeded stratified subsample beyond), and
along the grid each fold's model starts from the previous C's solution (``warm_start``), so a
full-size run pays the same few seconds as a sample run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.models.transfer.rows import stratified_draw

#: Inverse L2 strengths tried (standardised 1,280-wide features): a decade apart, as the scores
#: within a decade differed by less than the folds' noise on the sample.
C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
#: Convergence tolerance of the search's fits: the ranking of the grid does not need the last digits.
CV_TOL = 1e-3
CV_FOLDS = 3
#: Rows the search fits on at most (a stratified subsample beyond): bounds its cost at full size.
CV_MAX_IMAGES = 3000


@dataclass(frozen=True)
class ChosenStrength:
    """The chosen ``c``, the mean cross-validated macro-F1 of every C tried, and the rows used."""

    c: float
    scores: dict[float, float]
    images: int

    def describe(self) -> str:
        if not self.scores:
            return f"C={self.c:g} (too few images of some class among {self.images} to cross-validate)"
        tried = ", ".join(f"{c:g}: {score:.3f}" for c, score in self.scores.items())
        return f"C={self.c:g} by {CV_FOLDS}-fold cross-validation on {self.images} images (macro-F1 {tried})"


def choose_c(
    features: np.ndarray,
    labels: np.ndarray,
    class_weight: dict[int, float] | str | None,
    seed: int,
    grid: tuple[float, ...] = C_GRID,
    max_images: int = CV_MAX_IMAGES,
) -> ChosenStrength:
    """The grid's C with the best mean macro-F1 over stratified folds of these rows (``features``
    must hold each image once: an oversampled copy in two folds would favour weak regularisation)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    rows = stratified_draw(np.arange(len(labels)), np.asarray(labels), max_images, seed)
    x = np.asarray(features[rows], dtype=np.float32).reshape(len(rows), -1)
    y = np.asarray(labels)[rows]
    counts = np.bincount(y)
    folds = int(min(CV_FOLDS, counts[counts > 0].min()))
    if folds < 2 or len(np.unique(y)) < 2:  # too few images of some class to cross-validate
        return ChosenStrength(1.0, {}, len(rows))
    totals = np.zeros(len(grid))
    for fit, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        scaler = StandardScaler().fit(x[fit])
        x_fit, x_held = scaler.transform(x[fit]), scaler.transform(x[held])
        model = LogisticRegression(
            max_iter=1000, tol=CV_TOL, class_weight=class_weight, random_state=seed, warm_start=True
        )
        for i, c in enumerate(sorted(grid)):  # strongest first: each fit starts from the last
            model.set_params(C=c).fit(x_fit, y[fit])
            totals[i] += f1_score(y[held], model.predict(x_held), average="macro", zero_division=0)
    means = totals / folds
    scores = {c: float(m) for c, m in zip(sorted(grid), means)}
    best = sorted(grid)[int(np.argmax(means))]  # argmax takes the first (strongest) of equal scores
    return ChosenStrength(best, scores, len(rows))
