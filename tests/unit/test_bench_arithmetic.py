"""The benchmarks' arithmetic: scale (sizes, stage names, growth exponents, the table) and the
training benchmark's alternating timer."""

from __future__ import annotations

import pytest

from benchmarks.bench_scale import growth_exponent, interval_seconds, report, sample_flags, stage_name


def test_sample_flags_give_about_the_asked_number_of_images() -> None:
    for images in (2_000, 5_000, 10_000):
        flags, exact = sample_flags(images)
        assert abs(exact - images) / images < 0.03 and flags[0] == "--data.sample-per-family"


def test_stage_names_drop_prefects_suffix_only() -> None:
    assert stage_name("backbone-features-a81") == "backbone-features"
    assert stage_name("train-pixels-svm") == "train-pixels-svm"


@pytest.mark.parametrize("k", [0.5, 1.0, 1.3])
def test_growth_exponent_recovers_a_power_law(k: float) -> None:
    sizes = [2_000, 5_000, 10_000]
    assert growth_exponent(sizes, [3.0 * n**k for n in sizes]) == pytest.approx(k)
    assert growth_exponent(sizes, [0.0, 0.0, 1.0]) is None  # one usable point fits nothing


def test_report_extrapolates_each_stage_from_the_largest_size() -> None:
    results = [
        {"images": 1_000, "wall_s": 10.0, "peak_rss_gb": 2.0, "stages": {"backbone-features": 10.0}},
        {"images": 2_000, "wall_s": 20.0, "peak_rss_gb": 2.1, "stages": {"backbone-features": 20.0}},
    ]
    text = report(results, target=200_000)
    line = next(row for row in text.splitlines() if row.startswith("backbone-features"))
    assert "1.00" in line and line.endswith(f"{2_000 / 3600:11.2f}h")  # linear: 20 s x 100
    assert "largest / second largest: 1.050" in text


def test_prefect_intervals_read_as_seconds() -> None:
    assert interval_seconds("1970-01-01 00:01:01.500000") == pytest.approx(61.5)
    assert interval_seconds(None) == 0.0


def test_alternating_medians_warm_up_each_run_and_rotate_the_order() -> None:
    from benchmarks.bench_training import alternating_medians

    calls: list[str] = []
    medians = alternating_medians({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-ups, then the order rotates each round
    assert set(medians) == {"a", "b"} and all(value >= 0 for value in medians.values())
