"""The original project's baselines, honestly evaluated: Random Forest and SVM (rbf) on small
grayscale pixels (docs/original-project.md: RF n_estimators=1000, max_depth=60; SVM C=10, gamma=0.001 on a
subsample). They show what the transfer-learning model has to beat.

Both are bounded so that a full-size run (~120k training images) stays affordable, with the
original setup one setting away (`BaselineSettings`): each Random Forest tree grows on a bootstrap
of at most ``rf_max_samples`` images with at least ``rf_min_samples_leaf`` per leaf, which caps
its nodes (fit time, model file); the SVM approximates the rbf kernel with Nystroem landmarks and
fits a linear SVM on that map, so its prediction costs ``svm_components`` kernel evaluations per
image where the exact SVC's costs one per support vector (thousands at the subsample cap).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.svm import SVC

from tasks.data.splitting import ROLE_TRAIN, read_table
from tasks.layout import RunFolder
from tasks.logs import get_logger
from tasks.machine import fit_jobs
from tasks.models.features import PIXEL_FILE, load_pixel_features
from tasks.models.persistence import SKLEARN_SUFFIX, save_model
from tasks.models.predictions import scored_rows, write_predictions
from tasks.models.recipe import PixelInputs, embedding_inputs, write_recipe
from tasks.models.settings import BaselineSettings
from tasks.models.strength import choose_c

if TYPE_CHECKING:
    from tasks.models.recipe import Inputs


def fit_random_forest(
    features: np.ndarray,
    labels: np.ndarray,
    n_estimators: int,
    max_depth: int | None,
    seed: int,
    n_jobs: int = -1,
    max_samples: int | None = None,
    min_samples_leaf: int = 1,
) -> ClassifierMixin:
    """Random Forest on flat pixel vectors or features, fitted with ``n_jobs`` threads and returned
    set to predict with one. ``max_samples`` caps each tree's bootstrap
    (a training set no larger than it is bootstrapped whole, as without a cap: scikit-learn would
    otherwise draw more rows than there are)."""
    bootstrap = None if max_samples is None or max_samples >= len(labels) else max_samples
    model = RandomForestClassifier(
        n_estimators=n_estimators,
        max_depth=max_depth,
        max_samples=bootstrap,
        min_samples_leaf=min_samples_leaf,
        random_state=seed,
        n_jobs=n_jobs,
    )
    model.fit(features, labels)
    # Predictions in one thread: with several, the trees' probabilities are summed in thread order,
    # so a tie between classes could break one way here and another in the exported-model check's
    # fresh process or the predict flow (a mismatch blocks a promotion). Prediction is cheap next to the fit.
    return model.set_params(n_jobs=1)


def fit_svm(
    features: np.ndarray, labels: np.ndarray, c: float, gamma: float | str, max_samples: int, seed: int
) -> ClassifierMixin:
    """The exact RBF SVM (the original project's) on a random subsample of at most ``max_samples``
    rows: its fit is quadratic in the subsample, its prediction linear in its support vectors."""
    features, labels = subsample(features, labels, max_samples, seed)
    return SVC(C=c, gamma=gamma, kernel="rbf", random_state=seed).fit(features, labels)


def fit_nystroem_svm(
    features: np.ndarray,
    labels: np.ndarray,
    c: float,
    gamma: float | str,
    max_samples: int,
    n_components: int,
    seed: int,
) -> ClassifierMixin:
    """The rbf kernel approximated from ``n_components`` landmark rows drawn with the seed, then a
    linear SVM with the same C, on the same subsample as `fit_svm`: fit linear in its rows,
    prediction ``n_components`` kernel evaluations per image. The linear SVM is liblinear's primal
    squared-hinge solver (one-vs-rest where SVC is one-vs-one): it converges in ~15 Newton steps
    where the dual hinge solver ran out of iterations on pixels with C=10, and scored higher on
    backbone features. A plain Pipeline of scikit-learn estimators: skops needs no new trusted type."""
    from sklearn.kernel_approximation import Nystroem
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    features, labels = subsample(features, labels, max_samples, seed)
    kernel_gamma = scale_gamma(features) if gamma == "scale" else float(gamma)
    landmarks = min(n_components, len(labels))  # Nystroem warns and shrinks beyond the rows
    return make_pipeline(
        Nystroem(kernel="rbf", gamma=kernel_gamma, n_components=landmarks, random_state=seed),
        LinearSVC(C=c, dual=False, random_state=seed),
    ).fit(features, labels)


def scale_gamma(features: np.ndarray) -> float:
    """SVC's ``gamma="scale"``: 1 / (n_features * variance of all values), 1 for constant data;
    the variance accumulated in float64 as SVC's float64 copy would be."""
    variance = float(np.var(features, dtype=np.float64))
    return 1.0 / (features.shape[1] * variance) if variance != 0 else 1.0


def subsample(features: np.ndarray, labels: np.ndarray, max_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_samples`` rows, drawn without replacement with the seed."""
    if len(labels) <= max_samples:
        return features, labels
    keep = np.random.default_rng(seed).choice(len(labels), size=max_samples, replace=False)
    return features[keep], labels[keep]


def fit_logistic_regression(features: np.ndarray, labels: np.ndarray, c: float | str, seed: int) -> ClassifierMixin:
    """A linear probe: standardised features, multinomial logistic regression (``c="cv"``: its
    strength chosen by cross-validation on these rows, `tasks.models.strength`, and logged)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if c == "cv":
        chosen = choose_c(features, labels, None, seed)
        get_logger().info("logreg: %s", chosen.describe())
        c = chosen.c
    return make_pipeline(StandardScaler(), LogisticRegression(C=float(c), max_iter=3000, random_state=seed)).fit(
        features, labels
    )


def fit_baseline(
    kind: str, features: np.ndarray, labels: np.ndarray, settings: BaselineSettings, seed: int
) -> ClassifierMixin:
    """Dispatch on the baseline's name."""
    if kind == "random_forest":
        return fit_random_forest(
            features,
            labels,
            settings.rf_n_estimators,
            settings.rf_max_depth,
            seed,
            n_jobs=fit_jobs(settings.rf_n_jobs),
            max_samples=settings.rf_max_samples,
            min_samples_leaf=settings.rf_min_samples_leaf,
        )
    if kind == "svm" and settings.svm_solver == "exact":
        return fit_svm(features, labels, settings.svm_c, settings.svm_gamma, settings.svm_max_samples, seed)
    if kind == "svm":
        return fit_nystroem_svm(
            features,
            labels,
            settings.svm_c,
            settings.svm_gamma,
            settings.svm_max_samples,
            settings.svm_components,
            seed,
        )
    if kind == "logreg":
        return fit_logistic_regression(features, labels, settings.logreg_c, seed)
    raise ValueError(f"unknown baseline {kind!r}; expected random_forest, svm or logreg")


#: Rows converted and scored at a time: bounds the float32 rows and a model's per-row work
#: (the Nystroem SVM's kernel map is float64 rows x landmarks) instead of holding every scored row.
PREDICT_CHUNK = 8192


def load_feature_matrix(path: Path, table_path: Path) -> np.ndarray:
    """Pixel features (.npy, float32, memory-mapped) or cached backbone embeddings (.npz, clean
    views, float16 as stored), as a 2-D matrix checked against the table (a damaged cache file is
    computed again, see tasks.cache_files). `float_rows` converts the rows a fit or a prediction uses."""
    if Path(path).suffix == ".npz":
        from tasks.models.embeddings import load_embeddings

        clean = load_embeddings(path, table_path)["clean"]
        return clean.reshape(len(clean), -1)

    return load_pixel_features(path, table_path)


def float_rows(matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``matrix[rows]`` as float32 (what every model is fitted on and predicts from; float16
    features convert exactly)."""
    return np.asarray(matrix[rows], dtype=np.float32)


def predict_rows(model: ClassifierMixin, matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The model's classes for ``matrix[rows]``, `PREDICT_CHUNK` rows at a time."""
    parts = [model.predict(float_rows(matrix, rows[i : i + PREDICT_CHUNK])) for i in range(0, len(rows), PREDICT_CHUNK)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=int)


def feature_inputs(features_path: Path, settings: BaselineSettings) -> Inputs:
    """The inputs recipe (`tasks.models.recipe`) of a model fitted on ``features_path``: backbone
    features carry their settings next to them; a pixel cache file carries size and colour in its name."""
    if Path(features_path).suffix == ".npz":
        from tasks.models.embeddings import read_recipe

        return embedding_inputs(read_recipe(features_path))
    named = PIXEL_FILE.fullmatch(Path(features_path).name)
    if named is None:  # not one of our cache files: the settings' size, grayscale as flows.full computes
        return PixelInputs(size=settings.pixel_size, grayscale=True)
    return PixelInputs(size=int(named["size"]), grayscale=named["kind"] == "g")


def train_baseline(
    kind: str,
    feature_name: str,
    table_path: Path,
    features_path: Path,
    out_dir: Path,
    target: str,
    settings: BaselineSettings,
    seed: int,
) -> Path:
    """Fit one baseline on the train role, predict hold-out and test, persist both.

    The model is named ``<feature_name>_<kind>`` (e.g. ``pixels_random_forest``). Writes
    ``predictions/<name>.csv``, ``models/<name>.skops`` (skops, not pickle: see
    tasks.models.persistence) and its inputs recipe ``models/<name>.inputs.json`` (what batch
    prediction feeds it, `tasks.models.recipe`) under ``out_dir``; returns the CSV.
    """
    table = read_table(table_path)
    matrix = load_feature_matrix(features_path, table_path)
    train_mask = (table["role"] == ROLE_TRAIN).to_numpy()
    labels = table.loc[train_mask, target].astype(int).to_numpy()
    model = fit_baseline(kind, float_rows(matrix, np.flatnonzero(train_mask)), labels, settings, seed)
    name = f"{feature_name}_{kind}"
    out = RunFolder(out_dir)
    model_path = save_model(model, out.model_file(name, SKLEARN_SUFFIX))
    write_recipe(out.root, name, model_path, target, model.classes_, feature_inputs(features_path, settings))
    rows = scored_rows(table)
    predicted = predict_rows(model, matrix, rows.index.to_numpy())
    return write_predictions(rows, predicted, out.predictions_of(name))
