"""How the default run grows with the data: per-stage seconds, peak memory, growth exponents.

    python -m benchmarks.bench_scale [--sizes 2000,5000,10000] [--target 200000] [--keep] [-- FLOW FLAGS]

For each size, the embedded sample generator makes a dataset of about that many images (the
default 36:8 labelled:test ratio per family) and ``python -m flows.full`` runs on it cold, in an
output directory and Prefect home of its own. Per stage, the seconds are the task runs' run
times as Prefect recorded them (read back from that home's database after the run: no log
parsing); peak RSS is the flow process's own (``getrusage`` of the child; the temporary Prefect
server is a separate process and not counted). A growth exponent k per stage is fitted on
log(seconds) = k log(images) + c over the sizes, and each stage is extrapolated from the largest
size to ``--target`` images as t_max * (target / n_max)^k; stages run partly in parallel, so the
extrapolated total (their sum) is an upper bound of the wall time.

Not a test: the numbers depend on the machine (quote them with its load).
"""

from __future__ import annotations

import argparse
import json
import re
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


def run_size(images: int, extra: list[str], work: Path) -> dict[str, object]:
    """One cold run on a sample of about ``images`` images: wall, peak RSS, seconds per stage."""
    flags, exact = sample_flags(images)
    out, env, log = work / "outputs", flow_env(work), work / "flow.log"
    command = [sys.executable, "-m", "flows.full", "--output-dir", str(out), *flags, *extra]
    started = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(
            [sys.executable, "-c", RSS_WRAPPER, *command],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=handle,
            text=True,
        )
    wall = time.perf_counter() - started
    handle_text = done.stdout
    (work / "flow.stdout").write_text(handle_text)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}); log: {log}")
    peak = int(re.findall(r"PEAK_RSS_KIB (\d+)", handle_text)[-1]) / 1024**2
    return {"images": exact, "wall_s": wall, "peak_rss_gb": peak, "stages": stage_seconds(work / "prefect-home")}


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
    header = f"{'stage':40}" + "".join(f"{n:>10,}" for n in sizes) + f"{'k':>7}{f'@{target:,}':>12}"
    lines, total = [header, "-" * len(header)], 0.0
    for stage in stages:
        seconds = [float(r["stages"].get(stage, 0.0)) for r in results]  # type: ignore[attr-defined]
        k = growth_exponent(sizes, seconds)
        at_target = seconds[-1] * (target / sizes[-1]) ** k if k is not None else float("nan")
        if stage not in NOT_ON_REAL_DATA and not np.isnan(at_target):
            total += at_target
        shown_k = f"{k:7.2f}" if k is not None else f"{'-':>7}"
        lines.append(f"{stage:40}" + "".join(f"{s:10.1f}" for s in seconds) + shown_k + f"{at_target / 3600:11.2f}h")
    lines.append(
        f"{'sum of stages but prepare-sample (bound)':40}" + " " * (10 * len(sizes) + 7) + f"{total / 3600:11.2f}h"
    )
    lines.append(f"{'wall (s)':40}" + "".join(f"{float(r['wall_s']):10.1f}" for r in results))  # type: ignore[arg-type]
    lines.append(f"{'peak RSS (GB)':40}" + "".join(f"{float(r['peak_rss_gb']):10.2f}" for r in results))  # type: ignore[arg-type]
    if len(results) > 1:
        ratio = float(results[-1]["peak_rss_gb"]) / float(results[-2]["peak_rss_gb"])  # type: ignore[arg-type]
        lines.append(f"peak RSS, largest / second largest: {ratio:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_flow_args(argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_scale", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--sizes", default="2000,5000,10000", help="approximate image counts, comma-separated")
    parser.add_argument("--target", type=int, default=200_000, help="image count to extrapolate to")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements to this file")
    parser.add_argument("--keep", action="store_true", help="keep each size's output directory and logs")
    args = parser.parse_args(argv)
    results = []
    for images in (int(s) for s in args.sizes.split(",")):
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
    print(report(results, args.target))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
