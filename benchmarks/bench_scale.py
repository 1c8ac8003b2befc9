"""Scale: per-stage seconds, peak RSS and growth exponents of the run; CSV validation at full size.

    python -m benchmarks.bench_scale [--sizes 2000,5000,10000] [--target 200000]
        [--validation-rows 200000] [--keep] [--json FILE] [-- FLOW FLAGS]

1. The flow (``--sizes``; ``--sizes ''`` skips it). For each size, the embedded sample generator
   makes a dataset of about that many images (the default 36:8 labelled:test ratio per family)
   and ``python -m flows.full`` runs on it cold, in an output directory and Prefect home of its
   own. Per stage, the seconds are the task runs' run times as Prefect recorded them (read back
   from that home's database after the run: no log parsing); peak RSS is the flow process's own
   (``getrusage`` of the child; the temporary Prefect server is a separate process and not
   counted). A growth exponent k per stage is fitted on log(seconds) = k log(images) + c over
   the sizes, and each stage is extrapolated from the largest size to ``--target`` images as
   t_max * (target / n_max)^k; stages run partly in parallel, so the extrapolated total (their
   sum) is an upper bound of the wall time.
2. CSV validation at full size (``--validation-rows``, 0 skips it). The real dataset has 150k
   train+val rows and 50k test rows, and its CSV suites must fit that in memory and time, so a
   CSV-only Kaggle layout (``benchmarks.bench_validation.write_csv_dataset``: real class names,
   labels drawn uniformly over the families, 40-hex names) is written with that many rows, 3:1
   train+val:test and train:val 2:1, i.e. 100k/50k/50k for 200k. A child process (its peak RSS is
   its own, by the same ``getrusage`` wrapper) imports Great Expectations, then times
   `tasks.validation.stages.validate_csvs` (train_csv, val_csv, test_csv and class_balance suites
   with their derived columns; the flow's first validation step). The layout has no images, so the
   image scan and image suite are not run. The same is done at a quarter of the rows first, and the
   ratio of peak RSS (total, and above the RSS after imports) tells whether validation memory is
   flat or grows with the rows (linear would be 4x above the imports).

Not a test: the numbers depend on the machine (quote them with its load).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np

from benchmarks.bench_validation import write_csv_dataset
from benchmarks.flow_env import flow_env, split_flow_args

REPO = Path(__file__).resolve().parents[1]
FAMILIES = 50
#: Stages a run on real data does not have (left out of the extrapolated sum).
NOT_ON_REAL_DATA = {"prepare-sample"}
#: Runs the flow as a child and prints its peak RSS (KiB on Linux) as the last line of stdout.
RSS_WRAPPER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)
#: What the validation child runs (``-c``, from the repository root, so ``benchmarks`` imports).
VALIDATION_CHILD = "import sys; from benchmarks.bench_scale import validation_child; validation_child(*sys.argv[1:])"
#: Share of test.csv rows in the validation layout: the real dataset's 50k of 200k.
TEST_SHARE = 0.25


def sample_flags(images: int) -> tuple[list[str], int]:
    """Sample flags for about ``images`` images (labelled:test 36:8 per family) and the exact count."""
    per_family = max(3, round(images / FAMILIES * 36 / 44))
    test = max(1, round(per_family * 8 / 36))
    flags = ["--data.sample-per-family", str(per_family), "--data.sample-test-per-family", str(test)]
    return flags, FAMILIES * (per_family + test)


def stage_name(task_run_name: str) -> str:
    """``backbone-features-a81`` -> ``backbone-features`` (Prefect appends a short hex suffix)."""
    return re.sub(r"-[0-9a-f]{3}$", "", task_run_name)


def stage_seconds(prefect_home: Path) -> dict[str, float]:
    """Seconds per stage (task runs of one name summed) from the Prefect database of a finished run."""
    with sqlite3.connect(prefect_home / "prefect.db") as db:
        rows = db.execute("SELECT name, total_run_time FROM task_run WHERE state_type = 'COMPLETED'").fetchall()
    seconds: dict[str, float] = defaultdict(float)
    for name, run_time in rows:
        seconds[stage_name(name)] += interval_seconds(run_time)
    return dict(seconds)


def interval_seconds(value: object) -> float:
    """Prefect's SQLite interval (a datetime after the epoch, e.g. ``1970-01-01 00:00:01.001104``) in seconds."""
    if value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    return (datetime.fromisoformat(str(value)) - datetime(1970, 1, 1)).total_seconds()


def run_with_peak_rss(command: list[str], env: dict[str, str], log: Path) -> tuple[str, float]:
    """Run ``command`` as a child of the RSS wrapper: (its stdout, its peak RSS in GB); exits on failure."""
    with open(log, "w") as handle:
        done = subprocess.run(
            [sys.executable, "-c", RSS_WRAPPER, *command],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=handle,
            text=True,
        )
    log.with_suffix(".stdout").write_text(done.stdout)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}); log: {log}")
    return done.stdout, int(re.findall(r"PEAK_RSS_KIB (\d+)", done.stdout)[-1]) / 1024**2


def run_size(images: int, extra: list[str], work: Path) -> dict[str, object]:
    """One cold run on a sample of about ``images`` images: wall, peak RSS, seconds per stage."""
    flags, exact = sample_flags(images)
    command = [sys.executable, "-m", "flows.full", "--output-dir", str(work / "outputs"), *flags, *extra]
    started = time.perf_counter()
    _, peak = run_with_peak_rss(command, flow_env(work), work / "flow.log")
    wall = time.perf_counter() - started
    return {"images": exact, "wall_s": wall, "peak_rss_gb": peak, "stages": stage_seconds(work / "prefect-home")}


def layout_rows(total: int) -> tuple[int, int]:
    """(train+val rows, test rows) of a ``total``-row layout split like the real dataset (3:1)."""
    test = round(total * TEST_SHARE)
    return total - test, test


def validation_row_counts(rows: int) -> list[int]:
    """Layouts to validate: a quarter of ``rows`` (the memory growth reference) and ``rows``; none for 0."""
    if rows <= 0:
        return []
    return [rows // 4, rows] if rows >= 4 else [rows]


def validation_child(data_dir: str, run_dir: str) -> None:
    """In the child: import GX, time validate_csvs on ``data_dir``; print one ``VALIDATION {json}`` line."""
    started = time.perf_counter()
    import expectations.context  # noqa: F401  (GX and the custom expectations: imported by the stage)
    import expectations.suites  # noqa: F401
    from tasks.validation.settings import ValidationSettings
    from tasks.validation.stages import validate_csvs

    import_s = time.perf_counter() - started
    after_import_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    stage = validate_csvs(Path(data_dir), Path(run_dir) / "validation", ValidationSettings(), runs_root=None)
    seconds = time.perf_counter() - started
    failed = [s["name"] for s in stage["suites"] if s["failed_critical"]]
    measured = {"seconds": seconds, "import_s": import_s, "after_import_kib": after_import_kib}
    print("VALIDATION " + json.dumps({**measured, "passed": stage["passed"], "failed": failed, **stage["counts"]}))


def run_validation(rows: int, work: Path) -> dict[str, object]:
    """validate_csvs in a child process on a CSV-only layout of ``rows`` rows: seconds, peak RSS."""
    labelled, test = layout_rows(rows)
    data = write_csv_dataset(work / "data", labelled, test_rows=test)
    command = [sys.executable, "-c", VALIDATION_CHILD, str(data), str(work / "run")]
    started = time.perf_counter()
    stdout, peak = run_with_peak_rss(command, flow_env(work), work / "validation.log")
    wall = time.perf_counter() - started
    measured = json.loads(re.findall(r"^VALIDATION (.*)$", stdout, re.MULTILINE)[-1])
    if not measured["passed"]:
        sys.exit(f"validation of the {rows:,}-row layout failed: {measured['failed']}; log: {work / 'validation.log'}")
    return {
        "rows": rows,
        **{split: int(measured[split]) for split in ("train", "val", "test")},
        "seconds": float(measured["seconds"]),
        "import_s": float(measured["import_s"]),
        "wall_s": wall,
        "peak_rss_gb": peak,
        "after_import_rss_gb": int(measured["after_import_kib"]) / 1024**2,
    }


def growth_exponent(sizes: list[int], seconds: list[float]) -> float | None:
    """k of seconds ~ images^k (least squares in log-log); None below two usable points."""
    points = [(n, t) for n, t in zip(sizes, seconds) if t > 0]
    if len(points) < 2:
        return None
    n, t = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    return float(np.polyfit(n, t, 1)[0])


def report(results: list[dict[str, object]], target: int) -> str:
    """The table: seconds per stage and size, exponent, extrapolation; then wall and peak RSS."""
    sizes = [int(r["images"]) for r in results]  # type: ignore[call-overload]
    stages = sorted({name for r in results for name in r["stages"]})  # type: ignore[attr-defined]
    header = f"{'stage':40}" + "".join(f"{n:>10,}" for n in sizes) + f"{'k':>7}{f'@{target:,}':>12}{'share':>8}"
    rows: list[tuple[str, list[float], float | None, float]] = []
    for stage in stages:
        seconds = [float(r["stages"].get(stage, 0.0)) for r in results]  # type: ignore[attr-defined]
        k = growth_exponent(sizes, seconds)
        rows.append((stage, seconds, k, seconds[-1] * (target / sizes[-1]) ** k if k is not None else float("nan")))
    # The share of each stage in the extrapolated run: what a stage (the data audit, say) adds at full size.
    total = sum(t for stage, _, _, t in rows if stage not in NOT_ON_REAL_DATA and not np.isnan(t))
    lines = [header, "-" * len(header)]
    for stage, seconds, k, at_target in rows:
        shown_k = f"{k:7.2f}" if k is not None else f"{'-':>7}"
        share = f"{at_target / total:8.1%}" if total > 0 and stage not in NOT_ON_REAL_DATA else f"{'-':>8}"
        lines.append(
            f"{stage:40}" + "".join(f"{s:10.1f}" for s in seconds) + shown_k + f"{at_target / 3600:11.2f}h" + share
        )
    lines.append(
        f"{'sum of stages but prepare-sample (bound)':40}" + " " * (10 * len(sizes) + 7) + f"{total / 3600:11.2f}h"
    )
    lines.append(f"{'wall (s)':40}" + "".join(f"{float(r['wall_s']):10.1f}" for r in results))  # type: ignore[arg-type]
    lines.append(f"{'peak RSS (GB)':40}" + "".join(f"{float(r['peak_rss_gb']):10.2f}" for r in results))  # type: ignore[arg-type]
    if len(results) > 1:
        ratio = float(results[-1]["peak_rss_gb"]) / float(results[-2]["peak_rss_gb"])  # type: ignore[arg-type]
        lines.append(f"peak RSS, largest / second largest: {ratio:.3f}")
    return "\n".join(lines)


def validation_report(results: list[dict[str, object]]) -> str:
    """The validation table (rows, seconds, rows/s, peak RSS) and the peak RSS ratio largest / smallest."""
    header = (
        f"{'rows':>9}{'train':>9}{'val':>9}{'test':>9}{'seconds':>9}{'rows/s':>9}"
        f"{'import s':>10}{'wall s':>8}{'peak RSS GB':>13}{'after imports GB':>18}"
    )
    lines = [
        "CSV validation (validate_csvs: train_csv, val_csv, test_csv, class_balance suites), one child process "
        "per layout; no image scan (the layout has no images)",
        header,
        "-" * len(header),
    ]
    for r in results:
        rows, seconds = int(r["rows"]), float(r["seconds"])  # type: ignore[call-overload, arg-type]
        lines.append(
            f"{rows:9,}{int(r['train']):9,}{int(r['val']):9,}{int(r['test']):9,}"  # type: ignore[call-overload]
            f"{seconds:9.1f}{rows / seconds:9,.0f}{float(r['import_s']):10.1f}{float(r['wall_s']):8.1f}"  # type: ignore[arg-type]
            f"{float(r['peak_rss_gb']):13.2f}{float(r['after_import_rss_gb']):18.2f}"  # type: ignore[arg-type]
        )
    if len(results) > 1:
        small, large = results[0], results[-1]
        peaks = [float(r["peak_rss_gb"]) for r in (small, large)]  # type: ignore[arg-type]
        above = [float(r["peak_rss_gb"]) - float(r["after_import_rss_gb"]) for r in (small, large)]  # type: ignore[arg-type]
        rows_ratio = int(large["rows"]) / int(small["rows"])  # type: ignore[call-overload]
        above_ratio = f"{above[1] / above[0]:.2f}" if above[0] > 0 else "-"
        lines.append(
            f"peak RSS {int(large['rows']):,} / {int(small['rows']):,} rows: {peaks[1] / peaks[0]:.2f}"  # type: ignore[call-overload]
            f" (above the imports: {above_ratio}; rows x{rows_ratio:.0f}, so linear memory would read {rows_ratio:.0f})"
        )
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    """``"2000,5000"`` -> [2000, 5000]; an empty string: no flow runs."""
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_flow_args(argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_scale", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--sizes", default="2000,5000,10000", help="approximate image counts, comma-separated ('' skips the flow)"
    )
    parser.add_argument("--target", type=int, default=200_000, help="image count to extrapolate to")
    parser.add_argument(
        "--validation-rows",
        type=int,
        default=200_000,
        help="rows (train+val+test, 3:1) of the CSV validation layout, also run at a quarter of them; 0 skips",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements to this file")
    parser.add_argument("--keep", action="store_true", help="keep each size's output directory and logs")
    args = parser.parse_args(argv)
    results, validations = [], []
    for images in parse_sizes(args.sizes):
        work = Path(tempfile.mkdtemp(prefix=f"bench-scale-{images}-"))
        try:
            result = run_size(images, extra, work)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        print(
            f"{result['images']:,} images: wall {result['wall_s']:.0f} s, peak RSS {result['peak_rss_gb']:.2f} GB"
            + (f" (kept {work})" if args.keep else ""),
            flush=True,
        )
        results.append(result)
    if results:
        print(report(results, args.target), flush=True)
    for rows in validation_row_counts(args.validation_rows):
        work = Path(tempfile.mkdtemp(prefix=f"bench-scale-validation-{rows}-"))
        try:
            validation = run_validation(rows, work)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        print(
            f"validation of {rows:,} CSV rows: {validation['seconds']:.1f} s, "
            f"peak RSS {validation['peak_rss_gb']:.2f} GB" + (f" (kept {work})" if args.keep else ""),
            flush=True,
        )
        validations.append(validation)
    if validations:
        print(validation_report(validations))
    if args.json:
        args.json.write_text(json.dumps({"flow": results, "validation": validations}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
