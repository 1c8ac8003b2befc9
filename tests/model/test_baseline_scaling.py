"""The baselines stay bounded as the data grows: Random Forest trees grow on a capped bootstrap
with a minimum leaf size, the default SVM is a Nystroem approximation whose size does not grow
with the training rows, and every variant round-trips through the safe model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC

from tasks.models.baselines import fit_baseline, fit_nystroem_svm, fit_random_forest, fit_svm, scale_gamma
from tasks.models.persistence import load_model, save_model
from tasks.models.settings import BaselineSettings


def blobs(n: int, seed: int, width: int = 6, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian classes (float32, like the pixel and feature matrices)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    centres = rng.normal(0, 1.5, (n_classes, width))
    return (centres[labels] + rng.normal(0, 1.0, (n, width))).astype(np.float32), labels


def rings(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric rings in 2-D plus noise dimensions: no linear model separates them."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(labels == 1, 2.0, 1.0) + rng.normal(0, 0.15, n)
    ring = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    return np.hstack([ring, rng.normal(0, 0.3, (n, 2))]).astype(np.float32), labels


def test_each_tree_grows_on_the_capped_bootstrap_and_keeps_the_minimum_leaf_size() -> None:
    features, labels = blobs(400, seed=0)
    forest = fit_random_forest(
        features, labels, n_estimators=6, max_depth=None, seed=0, n_jobs=1, max_samples=120, min_samples_leaf=4
    )
    for tree in forest.estimators_:
        nodes = tree.tree_
        assert nodes.weighted_n_node_samples[0] == 120  # bootstrap draws, duplicates counted
        assert nodes.n_node_samples[0] <= 120
        leaves = nodes.children_left == -1
        assert nodes.n_node_samples[leaves].min() >= 4
    unbounded = fit_random_forest(features, labels, n_estimators=6, max_depth=None, seed=0, n_jobs=1)
    assert all(tree.tree_.weighted_n_node_samples[0] == 400 for tree in unbounded.estimators_)
    assert min(tree.tree_.n_node_samples[tree.tree_.children_left == -1].min() for tree in unbounded.estimators_) == 1
    assert sum(t.tree_.node_count for t in forest.estimators_) < sum(t.tree_.node_count for t in unbounded.estimators_)


def test_a_training_set_below_the_cap_is_bootstrapped_whole() -> None:
    """scikit-learn would draw ``max_samples`` rows with replacement from fewer rows; a small run
    must train exactly as without a cap."""
    features, labels = blobs(150, seed=1)
    capped = fit_random_forest(features, labels, n_estimators=4, max_depth=None, seed=3, n_jobs=1, max_samples=10_000)
    plain = fit_random_forest(features, labels, n_estimators=4, max_depth=None, seed=3, n_jobs=1)
    assert all(tree.tree_.weighted_n_node_samples[0] == 150 for tree in capped.estimators_)
    np.testing.assert_array_equal(capped.predict_proba(features), plain.predict_proba(features))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_nystroem_gamma_scale_is_what_svc_uses(dtype: type) -> None:
    features, labels = blobs(200, seed=2)
    features = (features * 7 + 3).astype(dtype)  # a variance far from 1, in the cached dtypes
    svc = fit_svm(features, labels, c=1.0, gamma="scale", max_samples=150, seed=4)
    nystroem = fit_nystroem_svm(features, labels, c=1.0, gamma="scale", max_samples=150, n_components=40, seed=4)
    assert nystroem[0].gamma == pytest.approx(svc._gamma, rel=1e-9)
    assert scale_gamma(np.ones((5, 3), np.float32)) == 1.0  # constant data: SVC's fallback
    fixed = fit_nystroem_svm(features, labels, c=1.0, gamma=0.25, max_samples=150, n_components=40, seed=4)
    assert fixed[0].gamma == 0.25


def test_the_nystroem_svm_does_not_grow_with_the_training_rows() -> None:
    """Prediction cost is n_components kernel evaluations per image, whatever the data size; the
    exact SVC's support vectors are bounded by the same subsample cap."""
    sizes = []
    for n in (300, 1200):
        features, labels = blobs(n, seed=n)
        model = fit_nystroem_svm(features, labels, c=1.0, gamma="scale", max_samples=200, n_components=50, seed=0)
        sizes.append((model[0].components_.shape, model[-1].coef_.shape))
        assert model[0].component_indices_.max() < 200  # landmarks come from the subsample
        exact = fit_svm(features, labels, c=1.0, gamma="scale", max_samples=200, seed=0)
        assert exact.n_support_.sum() <= 200
    assert sizes[0] == sizes[1] == ((50, 6), (3, 50))
    small, labels = blobs(30, seed=5)
    few = fit_nystroem_svm(small, labels, c=1.0, gamma="scale", max_samples=200, n_components=50, seed=0)
    assert few[0].components_.shape[0] == 30  # never more landmarks than rows


def test_the_approximation_follows_the_kernel_where_a_linear_model_cannot() -> None:
    features, labels = rings(600, seed=6)
    test_features, test_labels = rings(400, seed=7)
    exact = fit_svm(features, labels, c=10.0, gamma=1.0, max_samples=600, seed=0)
    approx = fit_nystroem_svm(features, labels, c=10.0, gamma=1.0, max_samples=600, n_components=200, seed=0)
    exact_accuracy = (exact.predict(test_features) == test_labels).mean()
    approx_accuracy = (approx.predict(test_features) == test_labels).mean()
    assert exact_accuracy > 0.9  # the rings are separable by the rbf kernel, not by a line
    assert approx_accuracy >= exact_accuracy - 0.03


def test_fit_baseline_dispatches_with_the_settings() -> None:
    features, labels = blobs(300, seed=8)
    settings = BaselineSettings(
        rf_n_estimators=3, rf_max_samples=100, rf_min_samples_leaf=3, svm_components=40, svm_max_samples=250
    )
    forest = fit_baseline("random_forest", features, labels, settings, seed=0)
    assert (forest.n_estimators, forest.max_samples, forest.min_samples_leaf) == (3, 100, 3)
    assert forest.max_depth == settings.rf_max_depth
    assert fit_baseline("random_forest", features, labels, settings.on_embeddings(), seed=0).max_depth is None
    svm = fit_baseline("svm", features, labels, settings, seed=0)
    assert isinstance(svm, Pipeline) and svm[0].n_components == 40 and svm[0].gamma == settings.svm_gamma
    assert svm[-1].C == settings.svm_c
    on_features = fit_baseline("svm", features, labels, settings.on_embeddings(), seed=0)
    assert on_features[-1].C == settings.embedding_svm_c
    assert on_features[0].gamma == pytest.approx(scale_gamma(features[:250]), rel=0.2)  # a subsample's variance
    exact = fit_baseline("svm", features, labels, settings.model_copy(update={"svm_solver": "exact"}), seed=0)
    assert isinstance(exact, SVC) and exact.n_support_.sum() <= 250
    assert (exact.predict(features) == labels).mean() > 0.8
    assert isinstance(fit_baseline("logreg", features, labels, settings, seed=0), Pipeline)
    with pytest.raises(ValueError, match="unknown baseline 'knn'"):
        fit_baseline("knn", features, labels, settings, seed=0)


def test_the_defaults_are_the_bounded_variants() -> None:
    defaults = BaselineSettings()
    assert defaults.svm_solver == "nystroem" and defaults.svm_components <= defaults.svm_max_samples
    assert defaults.rf_max_samples is not None


@pytest.mark.parametrize("solver", ["nystroem", "exact"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_each_svm_round_trips_through_the_safe_model_files(tmp_path: Path, solver: str, dtype: type) -> None:
    """load_model refuses any type outside skops' defaults and the reviewed list, so loading at
    all proves the pipeline's types are trusted."""
    features, labels = blobs(200, seed=9)
    features = features.astype(dtype)
    for gamma in ("scale", 0.05):
        settings = BaselineSettings(svm_solver=solver, svm_components=30, svm_gamma=gamma)  # type: ignore[arg-type]
        model = fit_baseline("svm", features, labels, settings, seed=1)
        loaded = load_model(save_model(model, tmp_path / f"{solver}-{gamma}.skops"))
        assert type(loaded) is type(model)
        np.testing.assert_array_equal(loaded.predict(features), model.predict(features))
        np.testing.assert_array_equal(loaded.classes_, model.classes_)


def test_a_bounded_forest_round_trips_through_the_safe_model_files(tmp_path: Path) -> None:
    features, labels = blobs(300, seed=10)
    settings = BaselineSettings(rf_n_estimators=4, rf_max_samples=80, rf_min_samples_leaf=5, rf_n_jobs=-1)
    model = fit_baseline("random_forest", features, labels, settings, seed=2)
    loaded = load_model(save_model(model, tmp_path / "forest.skops"))
    # Fitted with every core, it predicts with one: with n_jobs=-1 the trees' probabilities are
    # summed in thread order, and a tie between classes (4 trees) could then break either way.
    assert loaded.n_jobs == model.n_jobs == 1
    np.testing.assert_array_equal(loaded.predict(features), model.predict(features))
    np.testing.assert_allclose(loaded.predict_proba(features), model.predict_proba(features), atol=1e-12)
