"""Benchmark data validation: the CSV suites on a 200,000-row train+val pair, and the image scan.

    python -m benchmarks.bench_validation [--rows 200000] [--files 20000] [--workdir DIR]

1. CSV suites: a synthetic Kaggle-layout directory (real class names, labels drawn uniformly
   over the families, 40-hex filenames; no images) with ``rows`` rows split 2:1 into train and val
   and a small test.csv; times `tasks.validation.validate_csvs` (train_csv, val_csv, test_csv and
   class_balance suites, with their derived columns), after Great Expectations is imported.
2. Image scan: ``files`` small JPEGs (72-176 px, like the embedded sample), scanned with an empty
   fingerprint cache (cold) and again with it (warm), with the thread pool (the default) and,
   for comparison, a process pool. "Cold" means the scan cache is empty; the files themselves are
   in the OS page cache, since they were just written (dropping it needs root).

Prints seconds and rows (files) per second. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def write_csv_dataset(root: Path, rows: int, seed: int = 0, test_rows: int = 1000) -> Path:
    """Kaggle-layout CSVs (no images): ``rows`` labelled rows split 2:1 into train and val, with
    labels drawn uniformly over the families, and ``test_rows`` rows in test.csv (placeholder labels, as on Kaggle)."""
    from tasks.data.taxonomy import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE

    rng = np.random.default_rng(seed)
    public = root / "public"
    public.mkdir(parents=True)
    (public / "info.json").write_text(json.dumps({"coarse": list(COARSE_NAMES), "fine": list(FINE_NAMES)}))
    fine = rng.integers(0, len(FINE_NAMES), size=rows)
    coarse = np.asarray(FINE_TO_COARSE)[fine]
    names = [f"{n:040x}.jpg" for n in rng.choice(2**62, size=rows + test_rows, replace=False)]
    frame = pd.DataFrame({"filename": names[:rows], "fine": fine, "coarse": coarse})
    n_train = rows * 2 // 3
    frame.iloc[:n_train].to_csv(public / "train.csv", index=False)
    frame.iloc[n_train:].to_csv(public / "val.csv", index=False)
    pd.DataFrame({"filename": names[rows:], "fine": 0, "coarse": 0}).to_csv(public / "test.csv", index=False)
    for split in ("train", "val", "test"):
        (public / split).mkdir()
    return root


def bench_csv_suites(workdir: Path, rows: int, repeats: int) -> dict[str, float]:
    """Seconds for validate_csvs on ``rows`` train+val rows (median of ``repeats``)."""
    from tasks.validation.settings import ValidationSettings
    from tasks.validation.stages import validate_csvs

    data = write_csv_dataset(workdir / "csv-data", rows)
    started = time.perf_counter()
    import expectations.context  # noqa: F401  (import cost reported separately)

    import_s = time.perf_counter() - started
    times = []
    for attempt in range(repeats):
        run = workdir / "runs" / f"csv-{attempt}"
        started = time.perf_counter()
        stage = validate_csvs(data, run / "validation", ValidationSettings(), runs_root=None)
        times.append(time.perf_counter() - started)
        assert stage["passed"], [s for s in stage["suites"] if not s["success"]]
    return {"import_s": import_s, "seconds": float(np.median(times)), "all": times}


def write_image_files(folder: Path, files: int, distinct: int = 200, seed: int = 0) -> Path:
    """``files`` JPEGs: ``distinct`` rendered sample images, each written under many names."""
    from tasks.data.sample import render_image
    from tasks.data.settings import DataSettings

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    spec = DataSettings().sample_spec()
    import io

    blobs = []
    for i in range(distinct):
        buffer = io.BytesIO()
        render_image(i % 50, rng, spec).save(buffer, "JPEG", quality=int(rng.integers(75, 96)))
        blobs.append(buffer.getvalue())
    rows = []
    for i in range(files):
        path = folder / f"{i:040x}.jpg"
        path.write_bytes(blobs[i % distinct])
        rows.append(("train", path.name, str(path)))
    listing = folder.parent / "image_list.csv"
    pd.DataFrame(rows, columns=["split", "filename", "path"]).to_csv(listing, index=False)
    return listing


def bench_image_scan(workdir: Path, files: int) -> dict[str, dict[str, float]]:
    """Cold and warm scan seconds per executor."""
    from tasks.validation.image_scan import scan_images

    started = time.perf_counter()
    listing = write_image_files(workdir / "images" / "train", files)
    print(f"  wrote {files:,} JPEGs in {time.perf_counter() - started:.1f} s", flush=True)
    results: dict[str, dict[str, float]] = {}
    for executor in ("thread", "process"):
        cache = workdir / f"cache-{executor}"
        cold = scan_images(listing, workdir / f"scan-{executor}.csv", cache, executor=executor)
        warm = scan_images(listing, workdir / f"scan-{executor}.csv", cache, executor=executor)
        assert warm.cached == files and cold.scanned == files and cold.bad == 0
        results[executor] = {"cold": cold.seconds, "warm": warm.seconds, "workers": cold.workers}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_validation", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="train+val rows for the CSV suites")
    parser.add_argument("--files", type=int, default=20_000, help="image files for the scan")
    parser.add_argument("--repeats", type=int, default=3, help="CSV suite repetitions (median reported)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    for key, value in {
        "GX_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }.items():
        os.environ.setdefault(key, value)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-validation-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        print(f"CSV suites on {args.rows:,} train+val rows (train_csv, val_csv, test_csv, class_balance):", flush=True)
        csv = bench_csv_suites(workdir, args.rows, args.repeats)
        print(f"  great_expectations import: {csv['import_s']:.1f} s (once per process)")
        print(
            f"  validate_csvs: {csv['seconds']:.2f} s median of {args.repeats} "
            f"({', '.join(f'{t:.2f}' for t in csv['all'])}) = {args.rows / csv['seconds']:,.0f} rows/s"
        )
        print(f"Image scan of {args.files:,} small JPEGs:", flush=True)
        for executor, r in bench_image_scan(workdir, args.files).items():
            print(
                f"  {executor:7s} x{int(r['workers'])}: cold {r['cold']:.2f} s ({args.files / r['cold']:,.0f} files/s), "
                f"warm {r['warm']:.2f} s ({args.files / r['warm']:,.0f} files/s), "
                f"warm is {r['cold'] / r['warm']:.1f}x faster"
            )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
