"""Baselines on cached backbone features hold the float16 file once and convert only the rows a fit
or a prediction uses (in chunks), and give the same predictions as a float32 copy of every row;
on a small machine a forest takes one thread, since TensorFlow uses every core alongside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from tasks import machine
from tasks.data.dataset import load_dataset
from tasks.data.splitting import ROLE_TRAIN, read_table, split_dataset
from tasks.models import baselines
from tasks.models.baselines import fit_baseline, load_feature_matrix, train_baseline
from tasks.models.embeddings import EmbeddingSpec, write_recipe
from tasks.models.predictions import scored_rows
from tasks.models.settings import BaselineSettings, TransferSettings


@pytest.fixture()
def run_table(tiny_sample: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return split_dataset(load_dataset(tiny_sample, run_dir), run_dir, "coarse", 0.2, 5, "stratified")


def cached_features(run_table: Path, path: Path, width: int = 24) -> np.ndarray:
    """An embeddings file as the backbone pass writes it (float16 clean rows, no views, its
    recipe next to it), with features that carry the labels; returns the clean rows."""
    table = read_table(run_table)
    rng = np.random.default_rng(0)
    labels = table["coarse"].fillna(0).astype(int).to_numpy()  # test rows have no label
    clean = (rng.normal(0, 1, (labels.max() + 1, width))[labels] + rng.normal(0, 0.7, (len(table), width))).astype(
        np.float16
    )
    train_rows = np.flatnonzero((table["role"] == ROLE_TRAIN).to_numpy())
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, clean=clean, views=np.empty((0, len(train_rows), width), np.float16), train_rows=train_rows)
    write_recipe(path, EmbeddingSpec.of(TransferSettings(), 0))
    return clean


@pytest.mark.parametrize("kind", ["logreg", "random_forest", "svm"])
def test_float16_rows_in_chunks_predict_as_a_float32_copy_would(
    run_table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    path = tmp_path / "cache" / "embeddings" / "features.npz"
    clean = cached_features(run_table, path)
    assert load_feature_matrix(path, run_table).dtype == np.float16  # not a float32 copy per reader
    settings = BaselineSettings(rf_n_estimators=5, rf_n_jobs=1, svm_components=20).on_embeddings()
    monkeypatch.setattr(baselines, "PREDICT_CHUNK", 7)  # several chunks, the last one short
    written = pd.read_csv(train_baseline(kind, "emb", run_table, path, tmp_path / "out", "coarse", settings, 0))

    table = read_table(run_table)
    train = (table["role"] == ROLE_TRAIN).to_numpy()
    full = clean.astype(np.float32)  # what every reader held before
    model = fit_baseline(kind, full[train], table.loc[train, "coarse"].astype(int).to_numpy(), settings, 0)
    expected = model.predict(full[scored_rows(table).index.to_numpy()])
    assert len(written) > 7
    np.testing.assert_array_equal(written["pred"].to_numpy(), expected)
    truth = table.loc[scored_rows(table).index, "coarse"].to_numpy()
    labelled = ~pd.isna(truth)
    assert (written["pred"].to_numpy()[labelled] == truth[labelled].astype(int)).mean() > 0.5  # a real fit


@pytest.mark.parametrize(("cores", "requested", "threads"), [(2, None, 1), (4, None, 1), (16, None, -1), (2, 3, 3)])
def test_forest_threads_follow_the_machine_unless_set(
    monkeypatch: pytest.MonkeyPatch, cores: int, requested: int | None, threads: int
) -> None:
    monkeypatch.setattr(machine, "available_cores", lambda: cores)
    features = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
    labels = np.arange(40) % 2
    settings = BaselineSettings(rf_n_estimators=2, rf_n_jobs=requested)
    fitted_with: list[int] = []
    original_fit = RandomForestClassifier.fit

    def recording_fit(self: RandomForestClassifier, *args: Any, **kwargs: Any) -> Any:
        fitted_with.append(self.n_jobs)
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(RandomForestClassifier, "fit", recording_fit)
    model = fit_baseline("random_forest", features, labels, settings, seed=0)
    assert fitted_with == [threads]
    assert model.n_jobs == 1  # predictions in one thread whatever the fit used
