"""Label-issue candidates: confident learning (cleanlab) on out-of-sample probe probabilities.

A logistic-regression probe on the cached backbone features (PCA to 128 dimensions, standardised,
classes weighted to balance) is fitted in k folds, and each image's predicted probabilities come
from the fold that did not see it, averaged over ``repeats`` differently shuffled k-fold passes.
The candidates are the images whose out-of-sample prediction is not their given label
(``cleanlab.filter.find_label_issues``, ``filter_by="predicted_neq_given"``), ranked by
self-confidence (the probability of the given label: lowest first, most likely wrong first), with
the most probable other class as the suggested label. Budget: at most ``max_images`` labelled
images (a seeded stratified subsample beyond it).

Why this probe (docs/audit.md): on the embedded sample with 5% of train labels switched to a family
of another taxon, six switch draws, share of switched labels among the top 2x candidates (mean,
lowest): 0.70, 0.65 with an unweighted probe at C=0.5, one pass and cleanlab's default filter;
0.72, 0.68 with balanced class weights and C=0.1 (a switched label mostly names a big taxon, whose
prior an unweighted probe adds to the given label's probability); 0.77, 0.68 with three passes and
every disagreement a candidate (the default filter dropped some switched labels from the list).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.models.transfer.rows import stratified_draw

#: Feature width the probe sees (PCA beyond it): 5 folds of 1,280 dims took 41 s for 448 images.
_PROBE_DIMS = 128
#: The probe's inverse L2 strength on standardised features (module docstring).
_PROBE_C = 0.1


def out_of_fold_probabilities(
    features: np.ndarray, labels: np.ndarray, folds: int, seed: int, repeats: int = 1
) -> np.ndarray:
    """(n, n_classes) probabilities of each image from probes that did not see it (the mean of
    ``repeats`` k-fold passes, each shuffled by its own seed)."""
    return np.mean([one_pass(features, labels, folds, seed + r) for r in range(repeats)], axis=0)


def one_pass(features: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(n, n_classes) out-of-fold probabilities of one k-fold pass."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_classes = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=n_classes)
    folds = int(max(2, min(folds, counts[counts > 0].min())))
    probabilities = np.zeros((len(labels), n_classes), dtype=np.float64)
    for fit, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=_PROBE_C, max_iter=300, class_weight="balanced"))
        probe.fit(features[fit], labels[fit])
        probabilities[np.ix_(held, probe.classes_)] = probe.predict_proba(features[held])
    return probabilities


def label_issues(
    features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0, max_images: int = 0, repeats: int = 3
) -> pd.DataFrame:
    """Candidates as rows of ``features``: row, given, suggested, score (the probability that the
    given label is wrong: 1 - self-confidence), most likely wrong first."""
    from cleanlab.filter import find_label_issues

    labels = np.asarray(labels, dtype=np.int64)
    rows = stratified_draw(np.arange(len(labels)), labels, max_images, seed)  # all when max_images is 0
    x, y = np.asarray(features[rows], dtype=np.float32), labels[rows]
    if x.shape[1] > _PROBE_DIMS and len(x) > _PROBE_DIMS:  # the probe's cost grows with the width
        from sklearn.decomposition import PCA

        x = PCA(_PROBE_DIMS, random_state=seed).fit_transform(x).astype(np.float32)
    present = np.unique(y)
    counts = np.bincount(y)
    if len(present) < 2 or counts[present].min() < 2:
        return pd.DataFrame(columns=["row", "given", "suggested", "score"])
    remap = np.searchsorted(present, y)  # cleanlab wants labels 0..k-1, every one present
    probabilities = out_of_fold_probabilities(x, remap, folds, seed, repeats)
    # n_jobs=1: cleanlab's default forks a process pool, and forking a process that runs Prefect's and
    # TensorFlow's threads deadlocked a run (a child hung at the pool's exit).
    flagged = find_label_issues(
        remap,
        probabilities,
        filter_by="predicted_neq_given",
        return_indices_ranked_by="self_confidence",
        n_jobs=1,
    )
    given = remap[flagged]
    others = probabilities[flagged].copy()
    others[np.arange(len(flagged)), given] = -1.0
    return pd.DataFrame(
        {
            "row": rows[flagged],
            "given": present[given],
            "suggested": present[others.argmax(axis=1)],
            "score": np.round(1.0 - probabilities[flagged, given], 4),
        }
    )
