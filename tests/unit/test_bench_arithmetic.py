"""The benchmarks' arithmetic: scale (sizes, stage names, growth exponents, the table, the
validation layout and its table, the peak-RSS wrapper) and the training benchmark's alternating timer."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.bench_scale import (
    growth_exponent,
    interval_seconds,
    layout_rows,
    parse_sizes,
    report,
    run_with_peak_rss,
    sample_flags,
    stage_name,
    validation_report,
    validation_row_counts,
)
from benchmarks.bench_validation import write_csv_dataset


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
        {"images": 1_000, "wall_s": 10.0, "peak_rss_gb": 2.0, "stages": {"backbone-features": 10.0, "data-audit": 0.5}},
        {"images": 2_000, "wall_s": 20.0, "peak_rss_gb": 2.1, "stages": {"backbone-features": 20.0, "data-audit": 1.0}},
    ]
    text = report(results, target=200_000)
    line = next(row for row in text.splitlines() if row.startswith("backbone-features"))
    assert "1.00" in line and f"{2_000 / 3600:11.2f}h" in line  # linear: 20 s x 100
    audit = next(row for row in text.splitlines() if row.startswith("data-audit"))
    assert audit.endswith(f"{100 / 2_100:8.1%}")  # linear too: 1 s x 100, of 2,100 s in all
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


def test_validation_layout_splits_rows_like_the_real_dataset() -> None:
    assert layout_rows(200_000) == (150_000, 50_000)  # 150k train+val, 50k test
    labelled, test = layout_rows(1_001)
    assert labelled + test == 1_001
    assert validation_row_counts(200_000) == [50_000, 200_000]  # a quarter first, for the memory growth
    assert validation_row_counts(0) == []


def test_csv_layout_writes_the_asked_rows_per_split(tmp_path: Path) -> None:
    public = write_csv_dataset(tmp_path / "data", 30, test_rows=10) / "public"
    counts = {split: len(pd.read_csv(public / f"{split}.csv")) for split in ("train", "val", "test")}
    assert counts == {"train": 20, "val": 10, "test": 10}
    names = pd.concat(pd.read_csv(public / f"{split}.csv")["filename"] for split in counts)
    assert names.is_unique  # the test rows are not train/val rows again
    assert len(pd.read_csv(write_csv_dataset(tmp_path / "default", 30) / "public" / "test.csv")) == 1000


def test_empty_sizes_skip_the_flow() -> None:
    assert parse_sizes("2000,5000") == [2_000, 5_000]
    assert parse_sizes("") == []


def test_validation_report_gives_rows_per_second_and_the_rss_growth() -> None:
    results = [
        {"rows": 50_000, "train": 25_000, "val": 12_500, "test": 12_500, "seconds": 2.0, "import_s": 4.0}
        | {"wall_s": 9.0, "peak_rss_gb": 0.3, "after_import_rss_gb": 0.2},
        {"rows": 200_000, "train": 100_000, "val": 50_000, "test": 50_000, "seconds": 8.0, "import_s": 4.0}
        | {"wall_s": 15.0, "peak_rss_gb": 0.6, "after_import_rss_gb": 0.2},
    ]
    text = validation_report(results)
    row = next(line for line in text.splitlines() if line.lstrip().startswith("200,000"))
    assert row.split()[4:6] == ["8.0", "25,000"]  # seconds, rows/s
    assert "200,000 / 50,000 rows: 2.00 (above the imports: 4.00" in text


def test_peak_rss_is_the_childs_own(tmp_path: Path) -> None:
    allocate = "data = b'x' * (200 * 2**20); print(len(data))"  # 200 MiB, written (so resident)
    stdout, peak_gb = run_with_peak_rss([sys.executable, "-c", allocate], {}, tmp_path / "child.log")
    assert str(200 * 2**20) in stdout and 0.19 < peak_gb < 1.0
    with pytest.raises(SystemExit):
        run_with_peak_rss([sys.executable, "-c", "raise SystemExit(3)"], {}, tmp_path / "failed.log")
