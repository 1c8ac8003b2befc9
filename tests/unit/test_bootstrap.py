"""Hold-out intervals: a seeded, stratified bootstrap that agrees with the point scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.results.bootstrap import StratifiedBootstrap, paired_difference, score_intervals
from tasks.results.evaluation import evaluate_predictions, format_comparison
from tasks.results.report import comparison_table, format_headline
from tests.helpers import BEST, OTHER, write_fake_run


def noisy(truth: np.ndarray, accuracy: float, n_classes: int, seed: int) -> np.ndarray:
    """Predictions that are right with probability ``accuracy``, else a random class."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(len(truth)) < accuracy, truth, rng.integers(0, n_classes, len(truth)))


def imbalanced_truth(n: int, n_classes: int = 8, seed: int = 0) -> np.ndarray:
    weights = np.linspace(1.0, 18.0, n_classes)  # the sample's 18:1 imbalance
    return np.random.default_rng(seed).choice(n_classes, n, p=weights / weights.sum())


def test_scores_on_the_original_images_are_the_evaluation_scores() -> None:
    truth = imbalanced_truth(600)
    pred = noisy(truth, 0.7, 8, 1)
    pred[pred == 3] = 9  # a class nobody predicts, and predictions outside the hold-out's classes
    truth[truth == 5] = 4  # a class absent from the hold-out is left out of macro-F1
    bootstrap = StratifiedBootstrap(truth, 10, 1)
    accuracy, macro = bootstrap.scores(np.ones((1, len(truth)), np.float32), bootstrap.indicators(pred))
    expected = evaluate_predictions(truth, pred, [str(i) for i in range(10)])
    assert accuracy[0] == pytest.approx(expected["accuracy"], abs=1e-12)
    assert macro[0] == pytest.approx(expected["macro_f1"], abs=1e-12)


def test_every_resample_keeps_each_class_count() -> None:
    truth = imbalanced_truth(500)
    bootstrap = StratifiedBootstrap(truth, 8, 300)
    sorted_truth = truth[bootstrap.order]
    for counts in bootstrap.blocks():
        per_class = np.stack([counts[:, sorted_truth == c].sum(axis=1) for c in range(8)], axis=1)
        assert (per_class == np.bincount(truth, minlength=8)).all()


def test_the_bootstrap_is_seeded_and_reproducible() -> None:
    truth = imbalanced_truth(400)
    predictions = {"a": noisy(truth, 0.8, 8, 1), "b": noisy(truth, 0.6, 8, 2)}
    first = score_intervals(truth, predictions, 8, n_resamples=1000, seed=5)
    assert first == score_intervals(truth, predictions, 8, n_resamples=1000, seed=5)
    assert first != score_intervals(truth, predictions, 8, n_resamples=1000, seed=6)
    for name, pred in predictions.items():
        point = evaluate_predictions(truth, pred, [str(i) for i in range(8)])
        for score in ("accuracy", "macro_f1"):
            interval = first[name][score]
            assert interval.level == 0.95 and interval.low < point[score] < interval.high


def test_the_interval_narrows_with_more_hold_out_images() -> None:
    widths = []
    for n in (300, 3000, 30000):
        truth = imbalanced_truth(n, seed=n)
        interval = score_intervals(truth, {"m": noisy(truth, 0.75, 8, n)}, 8, n_resamples=1000)["m"]["macro_f1"]
        widths.append(interval.high - interval.low)
    assert widths[0] > 2 * widths[1] > 4 * widths[2] > 0  # about 1/sqrt(n): x3.2 per tenfold


def test_a_higher_level_gives_a_wider_interval() -> None:
    truth = imbalanced_truth(800)
    pred = {"m": noisy(truth, 0.7, 8, 3)}
    narrow = score_intervals(truth, pred, 8, level=0.8)["m"]["macro_f1"]
    wide = score_intervals(truth, pred, 8, level=0.99)["m"]["macro_f1"]
    assert wide.low < narrow.low < narrow.high < wide.high


def test_paired_difference_sees_through_shared_noise() -> None:
    """Two models that agree on most images: their scores' intervals overlap widely, but the paired
    interval of the difference is narrow, since both are scored on the same resampled images."""
    truth = imbalanced_truth(3000)
    champion = noisy(truth, 0.7, 8, 4)
    challenger = champion.copy()
    wrong = np.flatnonzero(champion != truth)
    challenger[wrong[:60]] = truth[wrong[:60]]  # fixes 60 of the champion's mistakes, nothing else
    paired = paired_difference(truth, challenger, champion, 8)
    separate = score_intervals(truth, {"new": challenger, "old": champion}, 8)
    assert separate["new"]["macro_f1"].low < separate["old"]["macro_f1"].high  # unpaired: overlapping
    assert 0 < paired.interval.low < paired.difference < paired.interval.high  # paired: clearly better
    assert paired == paired_difference(truth, challenger, champion, 8)


def test_a_dozen_models_on_thirty_thousand_images_take_seconds_not_minutes() -> None:
    import time

    truth = imbalanced_truth(30000)
    predictions = {f"m{i}": noisy(truth, 0.8 - 0.02 * i, 8, i) for i in range(12)}
    start = time.perf_counter()
    score_intervals(truth, predictions, 8, n_resamples=1000)
    assert time.perf_counter() - start < 10  # about 0.7 s on 2 shared cores; generous for busy CI


def test_metrics_json_the_console_table_and_the_report_carry_the_intervals(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", tmp_path / "data", images=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["bootstrap"]["resamples"] >= 1000 and metrics["bootstrap"]["level"] == 0.95
    for name in (BEST, OTHER):
        scores = metrics["models"][name]
        for score in ("accuracy", "macro_f1"):
            interval = scores[f"{score}_ci"]
            assert set(interval) == {"low", "high", "level"} and interval["level"] == 0.95
            assert interval["low"] <= scores[score] <= interval["high"]
    row = next(r for r in metrics["comparison"] if r["model"] == OTHER)
    assert row["macro_f1_ci"] == metrics["models"][OTHER]["macro_f1_ci"]
    table = format_comparison(metrics["comparison"])
    ci = row["macro_f1_ci"]
    assert f"{row['macro_f1']:.3f} [{ci['low']:.2f}, {ci['high']:.2f}]" in table
    assert "95% stratified bootstrap interval" in table
    report_row = next(r for r in comparison_table(metrics) if r["model"] == OTHER)
    assert report_row["macro_f1_low"] == pytest.approx(ci["low"], abs=1e-3)
    assert report_row["macro_f1_high"] == pytest.approx(ci["high"], abs=1e-3)
    assert "95% interval" in format_headline(metrics)[0]


def test_the_console_table_without_intervals_is_as_before() -> None:
    rows = [{"model": "m", "accuracy": 0.5, "macro_f1": 0.25, "weighted_f1": 0.4}]
    assert format_comparison(rows).splitlines()[1] == "m      0.500     0.250           0.400"


def test_bench_quality_keeps_and_reports_the_intervals(tmp_path: Path) -> None:
    from benchmarks.bench_quality import format_seeds, format_table, seed_record, summarise

    run = write_fake_run(tmp_path / "run", tmp_path / "data", images=False)
    metrics = json.loads((run / "metrics.json").read_text())
    records = [seed_record(seed, 1.0, metrics, None, [], str(run)) for seed in (1, 2)]
    ci = metrics["models"][BEST]["macro_f1_ci"]
    assert records[0]["models"][BEST]["macro_f1_ci"] == ci
    assert f"[{ci['low']:.4f}, {ci['high']:.4f}]" in format_seeds(records)
    rows = summarise(records)
    assert rows[0].mean_ci_width == pytest.approx(ci["high"] - ci["low"])
    assert "F1 CI width" in format_table(rows)
