"""Self-healing caches without Keras: pixel features (.npy) and the image-scan SQLite file.

Each cache file is damaged (cut in half, every byte random, random bytes in the middle, other
content) and the function that reads it is run again: it succeeds, ONE warning names the file,
and the result equals a cold computation. Keras-heavy caches: tests/model/test_cache_healing_models.py.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.data.dataset import load_dataset
from tasks.data.splitting import split_dataset
from tasks.models.features import pixel_features
from tasks.validation import image_scan
from tasks.validation.image_scan import read_scan, scan_images
from tests.helpers import DAMAGES, damage_file, damage_warnings

PIXELS = 16


@pytest.fixture()
def run_table(tiny_sample: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return split_dataset(load_dataset(tiny_sample, run_dir), run_dir, "coarse", 0.2, 5, "stratified")


def read_plain(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


# --- pixel features ------------------------------------------------------------------------------


def replace_content(path: Path, how: str) -> None:
    """Damage that leaves a well-formed file: another table's rows, or a pickled object."""
    if how == "other-rows":
        np.save(path, read_plain(path)[:10])
    elif how == "pickled":
        with open(path, "wb") as handle:
            np.save(handle, np.array([{"runs": "code"}], dtype=object), allow_pickle=True)
    else:
        damage_file(path, how)


@pytest.mark.parametrize("how", [*DAMAGES, "other-rows", "pickled"])
def test_damaged_pixel_features_are_recomputed_like_a_cold_run(
    run_table: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    path = pixel_features(run_table, PIXELS, tmp_path / "cache")
    cold = read_plain(path)
    assert cold.shape == (len(pd.read_csv(run_table)), PIXELS * PIXELS)
    replace_content(path, how)
    with caplog.at_level(logging.WARNING):
        again = pixel_features(run_table, PIXELS, tmp_path / "cache")
    assert again == path
    np.testing.assert_array_equal(read_plain(again), cold)
    assert len(damage_warnings(caplog.records, path)) == 1, caplog.text


@pytest.mark.parametrize("how", [pytest.param("truncated", marks=pytest.mark.slow), "garbled-middle"])
def test_baseline_on_damaged_pixel_features_recomputes_them(
    run_table: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """The flow serves the features step from Prefect's cache, so the baseline, which reads the
    file, is where damage shows: it recomputes the features and predicts as after a cold run."""
    from tasks.models.baselines import train_baseline
    from tasks.models.settings import BaselineSettings

    settings = BaselineSettings(pixel_size=PIXELS, rf_n_estimators=10)
    path = pixel_features(run_table, PIXELS, tmp_path / "cache")
    cold_features = read_plain(path)
    cold = pd.read_csv(
        train_baseline("random_forest", "pixels", run_table, path, tmp_path / "a", "coarse", settings, 0)
    )
    damage_file(path, how)
    with caplog.at_level(logging.WARNING):
        warm = train_baseline("random_forest", "pixels", run_table, path, tmp_path / "b", "coarse", settings, 0)
    pd.testing.assert_frame_equal(pd.read_csv(warm), cold)
    np.testing.assert_array_equal(read_plain(path), cold_features)
    assert len(damage_warnings(caplog.records, path)) == 1, caplog.text


def test_concurrent_readers_rebuild_damaged_features_once(
    run_table: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tasks.models.features import load_pixel_features

    path = pixel_features(run_table, PIXELS, tmp_path / "cache")
    cold = read_plain(path)
    damage_file(path, "truncated")
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            results.append(load_pixel_features(path, run_table))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    with caplog.at_level(logging.WARNING):
        threads = [threading.Thread(target=read) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [] and len(results) == 3
    for matrix in results:
        np.testing.assert_array_equal(matrix, cold)
    assert len(damage_warnings(caplog.records, path)) == 1, caplog.text


# --- the image-scan SQLite cache ----------------------------------------------------------------


@pytest.fixture()
def listing(tiny_sample: Path, tmp_path: Path) -> Path:
    files = sorted((tiny_sample / "public" / "train").iterdir())[:30]
    path = tmp_path / "list.csv"
    frame = pd.DataFrame({"split": "train", "filename": [f.name for f in files], "path": [str(f) for f in files]})
    frame.to_csv(path, index=False)
    return path


def scan(listing: Path, tmp_path: Path, name: str) -> tuple[dict, pd.DataFrame]:
    summary = scan_images(listing, tmp_path / f"{name}.csv", tmp_path / "cache", workers=2)
    return summary, read_scan(tmp_path / f"{name}.csv")


def assert_rebuilt_like_a_cold_scan(
    listing: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, cold: pd.DataFrame, cache: Path
) -> None:
    with caplog.at_level(logging.WARNING):
        warm, rows = scan(listing, tmp_path, "warm")
    assert (warm.scanned, warm.cached) == (30, 0)  # every file opened again
    pd.testing.assert_frame_equal(rows, cold)
    assert len(damage_warnings(caplog.records, cache)) == 1, caplog.text
    assert not [p for p in cache.parent.iterdir() if p.name.endswith(".partial")]
    third, rows = scan(listing, tmp_path, "third")
    assert third.cached == 30  # the rebuilt cache serves the next scan
    pd.testing.assert_frame_equal(rows.drop(columns="cached"), cold.drop(columns="cached"))


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_scan_cache_is_deleted_and_the_scan_rebuilt(
    listing: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    summary, cold = scan(listing, tmp_path, "cold")
    cache = Path(summary.cache_path)
    damage_file(cache, how)
    assert_rebuilt_like_a_cold_scan(listing, tmp_path, caplog, cold, cache)


def test_scan_cache_with_another_schema_is_rebuilt(
    listing: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    summary, cold = scan(listing, tmp_path, "cold")
    cache = Path(summary.cache_path)
    cache.unlink()
    with sqlite3.connect(cache) as connection:
        connection.execute("CREATE TABLE scans (path TEXT PRIMARY KEY, size INTEGER, verdict TEXT)")
    connection.close()
    assert_rebuilt_like_a_cold_scan(listing, tmp_path, caplog, cold, cache)


def test_database_error_during_the_scan_is_damage(
    listing: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Damage that ``quick_check`` misses shows up in a query; that query's error heals the same way."""
    summary, cold = scan(listing, tmp_path, "cold")
    real_lookup = image_scan.lookup_cache
    calls = []

    def malformed_once(connection: sqlite3.Connection, keys: list) -> dict:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.DatabaseError("database disk image is malformed")
        return real_lookup(connection, keys)

    monkeypatch.setattr(image_scan, "lookup_cache", malformed_once)
    assert_rebuilt_like_a_cold_scan(listing, tmp_path, caplog, cold, Path(summary.cache_path))


def test_busy_database_is_not_mistaken_for_damage(
    listing: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A guard (it passes on the old code too): a locked cache is reported, never deleted."""
    summary, _ = scan(listing, tmp_path, "cold")
    cache = Path(summary.cache_path)

    def busy(connection: sqlite3.Connection, keys: list) -> dict:
        error = sqlite3.OperationalError("database is locked")
        error.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]
        raise error

    monkeypatch.setattr(image_scan, "lookup_cache", busy)
    with caplog.at_level(logging.WARNING), pytest.raises(sqlite3.OperationalError, match="locked"):
        scan(listing, tmp_path, "warm")
    assert cache.is_file() and damage_warnings(caplog.records, cache) == []
