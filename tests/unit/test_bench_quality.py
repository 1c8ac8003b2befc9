"""The quality benchmark's aggregation and checks, on hand-made per-seed figures (no pipeline run)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_quality import (
    acceptance,
    consistency,
    format_table,
    own_flags_in,
    parse_seeds,
    published_keras,
    seed_command,
    seed_record,
    summarise,
)

BACKBONE = "efficientnet_lite0"


def metrics(best: str, scores: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """A metrics.json-shaped dict: model -> (macro_f1, accuracy)."""
    return {
        "best_model": best,
        "majority_reference": {"macro_f1": 0.1, "accuracy": 0.5},
        "models": {name: {"macro_f1": f1, "accuracy": acc, "weighted_f1": f1} for name, (f1, acc) in scores.items()},
    }


def record(seed: int, scores: dict[str, float], keras_files: tuple[str, ...] = ()) -> dict[str, Any]:
    best = max(scores, key=lambda name: scores[name])
    figures = metrics(best, {name: (f1, min(1.0, f1 + 0.05)) for name, f1 in scores.items()})
    return seed_record(seed, 12.34, figures, {"promote": True, "reason": "first"}, keras_files, f"/runs/{seed}")


def three_seeds(pixel_rf: float = 0.6) -> list[dict[str, Any]]:
    base = {
        "pixels_random_forest": pixel_rf,
        "pixels_svm": 0.5,
        f"{BACKBONE}_logreg": 0.97,
        f"{BACKBONE}_random_forest": 0.9,
        f"{BACKBONE}_head": 0.96,
        f"{BACKBONE}_finetuned": 0.98,
    }
    return [
        record(1, base, (f"{BACKBONE}_finetuned",)),
        record(2, {**base, f"{BACKBONE}_finetuned": 0.94}, (f"{BACKBONE}_finetuned",)),
        record(3, {**base, f"{BACKBONE}_finetuned": 0.96, f"{BACKBONE}_logreg": 0.99}, (f"{BACKBONE}_finetuned",)),
    ]


def test_summary_has_mean_sample_std_min_max_and_is_sorted_by_mean() -> None:
    rows = summarise(three_seeds())
    by_name = {r.model: r for r in rows}
    tuned = by_name[f"{BACKBONE}_finetuned"]
    assert tuned.n == 3
    assert tuned.mean_f1 == pytest.approx(0.96)
    assert tuned.std_f1 == pytest.approx(0.02)  # ddof=1: sqrt((0.02^2 + 0.02^2 + 0) / 2)
    assert (tuned.min_f1, tuned.max_f1) == (pytest.approx(0.94), pytest.approx(0.98))
    assert tuned.mean_accuracy == pytest.approx(1.0 - 0.01 / 3)  # 1.0 (capped), 0.99, 1.0
    assert by_name["pixels_svm"].std_f1 == 0.0
    means = [r.mean_f1 for r in rows]
    assert means == sorted(means, reverse=True)
    assert rows[0].model == f"{BACKBONE}_logreg" and rows[-1].model == "pixels_svm"


def test_one_seed_has_no_spread() -> None:
    rows = summarise(three_seeds()[:1])
    assert all(r.std_f1 is None and r.n == 1 for r in rows)
    assert "n/a" in format_table(rows)


def test_pixel_check_flips_when_one_pixel_mean_passes_a_backbone_model() -> None:
    good = acceptance(summarise(three_seeds(pixel_rf=0.6)), three_seeds(pixel_rf=0.6))
    bad_seeds = three_seeds(pixel_rf=0.91)  # above the backbone random forest's 0.9
    bad = acceptance(summarise(bad_seeds), bad_seeds)
    assert good[0].startswith("pixel baselines below every backbone model (mean): yes")
    assert bad[0].startswith("pixel baselines below every backbone model (mean): NO")
    assert "efficientnet_lite0_random_forest 0.9000" in bad[0]


def test_saturation_lists_models_above_the_bar() -> None:
    seeds = three_seeds()
    line = acceptance(summarise(seeds), seeds)[1]
    assert line.startswith("models with mean macro-F1 above 0.95: 3")  # logreg 0.9767, finetuned 0.96, head 0.96
    assert f"{BACKBONE}_random_forest" not in line


def test_published_keras_model_is_the_saved_one_and_is_compared_with_the_probe_minus_margin() -> None:
    seeds = three_seeds()
    rows = summarise(seeds)
    assert published_keras(rows, seeds) == (f"{BACKBONE}_finetuned", "saved as .keras by every run")
    line = acceptance(rows, seeds)[2]
    assert "0.9600 >= efficientnet_lite0_logreg mean - 0.01 = 0.9667: NO" in line
    lower_probe = [record(s, {f"{BACKBONE}_logreg": 0.965, f"{BACKBONE}_finetuned": 0.96}) for s in (1, 2)]
    assert acceptance(summarise(lower_probe), lower_probe)[2].endswith(": yes")


def test_without_a_saved_keras_file_the_better_keras_mean_is_reported() -> None:
    seeds = [record(s, {f"{BACKBONE}_head": 0.9 + s / 100, f"{BACKBONE}_logreg": 0.5}) for s in (1, 2)]
    name, why = published_keras(summarise(seeds), seeds) or ("", "")
    assert name == f"{BACKBONE}_head" and "better mean" in why


def test_keras_best_counts_best_models_and_ties() -> None:
    tie = record(1, {f"{BACKBONE}_svm": 1.0, f"{BACKBONE}_head": 1.0})  # max() keeps the first: svm
    win = record(2, {f"{BACKBONE}_svm": 0.9, f"{BACKBONE}_head": 1.0})
    lose = record(3, {f"{BACKBONE}_svm": 1.0, f"{BACKBONE}_head": 0.9})
    seeds = [tie, win, lose]
    line = acceptance(summarise(seeds), seeds)[-1]
    assert line == "a Keras model was the run's best model on 1 of 3 seeds (tied for best or best on 2)"


def test_missing_models_are_reported_not_crashed() -> None:
    seeds = [record(1, {f"{BACKBONE}_svm": 0.9})]
    lines = acceptance(summarise(seeds), seeds)
    assert "not measured" in lines[0] and "not measured" in lines[2]


def test_seed_record_keeps_only_what_the_summary_needs() -> None:
    rec = record(7, {"pixels_svm": 0.4})
    assert rec["models"] == {"pixels_svm": {"macro_f1": 0.4, "accuracy": pytest.approx(0.45)}}
    assert rec["best_model"] == "pixels_svm" and rec["champion_decision"]["promote"] is True
    assert not math.isnan(rec["majority_macro_f1"])


def test_command_line_pieces() -> None:
    assert parse_seeds("42, 43,44") == [42, 43, 44]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_seeds("1,1")
    assert own_flags_in(["--stage2-epochs", "0", "--seed=3", "--output-dir", "x"]) == ["--seed=3", "--output-dir"]
    command = seed_command(5, Path("/o"), None, ["--stage2-epochs", "0"])
    assert command[1:] == ["-m", "flows.full", "--split.seed", "5", "--data.output-dir", "/o", "--stage2-epochs", "0"]


def test_a_seed_run_on_a_rebuilt_sample_is_flagged() -> None:
    stamp = {"per_family": 6, "generator": 2}
    same = seed_record(1, 1.0, metrics("a", {"a": (0.5, 0.5)}), None, (), "/r/1", stamp)
    rebuilt = seed_record(2, 1.0, metrics("a", {"a": (0.5, 0.5)}), None, (), "/r/2", {**stamp, "generator": 3})
    assert consistency([same], stamp) == []
    warnings = consistency([same, rebuilt], stamp)
    assert len(warnings) == 1 and warnings[0].startswith("WARNING: seed 2 ran on a different sample")
    assert consistency([rebuilt], None) == []  # --data-dir: no sample to compare


def test_the_published_stage_of_each_run_is_what_is_compared_with_the_probe() -> None:
    from benchmarks.bench_quality import PUBLISHED, published_keras, seed_record, summarise

    def metrics(head: float, finetuned: float | None) -> dict:
        models = {"m_head": head, "m_logreg": 0.70} | ({"m_finetuned": finetuned} if finetuned is not None else {})
        best = max(models, key=lambda k: models[k])
        return {"best_model": best, "models": {k: {"macro_f1": v, "accuracy": v} for k, v in models.items()}}

    per_seed = [
        seed_record(1, 1.0, metrics(0.68, 0.75), None, [], "r1", published="m_finetuned"),
        seed_record(2, 1.0, metrics(0.71, None), None, [], "r2", published="m_head"),
    ]
    rows = summarise(per_seed)
    published = next(r for r in rows if r.model == PUBLISHED)
    assert published.n == 2 and abs(published.mean_f1 - (0.75 + 0.71) / 2) < 1e-12
    assert published_keras(rows, per_seed)[0] == PUBLISHED
