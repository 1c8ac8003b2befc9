"""The original project's baselines, honestly evaluated: Random Forest and SVM (rbf) on small
grayscale pixels (DESIGN §3: RF n_estimators=1000, max_depth=60; SVM C=10, gamma=0.001 on a
subsample). They show what the transfer-learning model has to beat.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.svm import SVC


def fit_random_forest(
    features: np.ndarray, labels: np.ndarray, n_estimators: int, max_depth: int | None, seed: int, n_jobs: int = -1
) -> ClassifierMixin:
    """Random Forest on flat pixel vectors."""
    model = RandomForestClassifier(
        n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=n_jobs
    )
    return model.fit(features, labels)


def fit_svm(
    features: np.ndarray, labels: np.ndarray, c: float, gamma: float | str, max_samples: int, seed: int
) -> ClassifierMixin:
    """RBF SVM on a stratified-by-chance subsample (kernel SVMs scale quadratically with n)."""
    features, labels = subsample(features, labels, max_samples, seed)
    return SVC(C=c, gamma=gamma, kernel="rbf", random_state=seed).fit(features, labels)


def subsample(features: np.ndarray, labels: np.ndarray, max_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_samples`` rows, drawn without replacement with the seed."""
    if len(labels) <= max_samples:
        return features, labels
    keep = np.random.default_rng(seed).choice(len(labels), size=max_samples, replace=False)
    return features[keep], labels[keep]


def train_pixel_baseline(
    kind: str,
    table_path: Path,
    features_path: Path,
    run_dir: Path,
    target: str,
    seed: int,
    rf_n_estimators: int = 1000,
    rf_max_depth: int | None = 60,
    svm_c: float = 10.0,
    svm_gamma: float = 0.001,
    svm_max_samples: int = 5000,
) -> Path:
    """Fit one pixel baseline on the train role, predict hold-out and test, persist both.

    Returns the predictions CSV; the fitted model is saved next to it for later inspection.
    """
    import joblib

    from tasks.predictions import scored_rows, write_predictions
    from tasks.splitting import ROLE_TRAIN, read_table

    table = read_table(table_path)
    matrix = np.load(features_path)
    train_mask = (table["role"] == ROLE_TRAIN).to_numpy()
    labels = table.loc[train_mask, target].astype(int).to_numpy()
    if kind == "random_forest":
        model = fit_random_forest(matrix[train_mask], labels, rf_n_estimators, rf_max_depth, seed)
    elif kind == "svm":
        model = fit_svm(matrix[train_mask], labels, svm_c, svm_gamma, svm_max_samples, seed)
    else:
        raise ValueError(f"unknown pixel baseline {kind!r}; expected random_forest or svm")
    name = f"pixels_{kind}"
    model_path = Path(run_dir) / "models" / f"{name}.joblib"
    model_path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_path)
    rows = scored_rows(table)
    predicted = model.predict(matrix[rows.index.to_numpy()])
    return write_predictions(rows, predicted, Path(run_dir) / "predictions" / f"{name}.csv")
