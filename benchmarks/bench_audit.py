"""Benchmark the duplicate thresholds of the data audit on the embedded sample (or any data dir).

    python -m benchmarks.bench_audit [--data-dir DIR] [--originals 60] [--workdir DIR]

Copies the data into a scratch folder, plants ``originals`` x every copy kind of
`tasks.data.planting` (exact, resized + JPEG q50, 10% cropped per side, mirrored) across the
splits, scans every image with the pipeline's own scan (`tasks.validation.image_scan`, the hashes
it caches) and prints, per Hamming threshold, how many planted pairs of each kind pair and how
many distinct (never planted together) image pairs pair too, with the time of the all-pairs
comparison. These are the figures behind ``AuditSettings.phash_max_distance``. Not a test.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.data.dataset import load_samples
from tasks.data.groups import PerceptualHashes, hash_pairs
from tasks.data.planting import COPY_KINDS, plant_cases
from tasks.data.sample import ensure_sample
from tasks.data.settings import DataSettings
from tasks.validation.image_contents import HASH_KEYS
from tasks.validation.image_scan import read_scan, scan_images

THRESHOLDS = (2, 4, 6, 8, 10, 12)


def scanned(data: Path, work: Path) -> pd.DataFrame:
    """Every image of ``data`` scanned (hashes as the pipeline caches them), in sample order."""
    samples, _ = load_samples(data)
    listing = work / "list.csv"
    samples.loc[:, ["split", "filename", "path"]].to_csv(listing, index=False)
    scan_images(listing, work / "scan.csv", work / "cache")
    return read_scan(work / "scan.csv")


def pairs_at(scan: pd.DataFrame, threshold: int) -> tuple[set[tuple[str, str]], float]:
    """Filename pairs the hashes pair at ``threshold``, and the seconds the comparison took."""
    ok = scan[scan["decodes"].eq(True)].reset_index(drop=True)
    started = time.perf_counter()
    hashes = PerceptualHashes(*(ok[column].tolist() for column in HASH_KEYS))
    rows = hash_pairs(ok["content_hash"].tolist(), hashes, threshold)
    seconds = time.perf_counter() - started
    names = ok["filename"].to_numpy()
    return {tuple(sorted((names[i], names[j]))) for i, j in rows}, seconds  # type: ignore[misc]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="Kaggle-layout data (default: the embedded sample)")
    parser.add_argument("--originals", type=int, default=60)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-audit-"))
    source = args.data_dir or ensure_sample(work / "sample", DataSettings().sample_spec())
    data = Path(shutil.copytree(source, work / "planted"))
    record = plant_cases(data, n_originals=args.originals, switched_share=0.0, seed=0)
    scan = scanned(data, work)
    planted = {(p["kind"], tuple(sorted((p["original"], p["copy"])))) for p in record["pairs"]}
    family = {p["copy"]: p["original"] for p in record["pairs"]}  # copies of one original belong together
    n = int(scan["decodes"].eq(True).sum())
    print(
        f"{n:,} images ({args.originals} originals x {len(COPY_KINDS)} copy kinds planted), {n * (n - 1) // 2:,} pairs"
    )
    print(f"{'bits':>4}  " + "  ".join(f"{kind:>11}" for kind in COPY_KINDS) + "  distinct pairs  seconds")
    for threshold in THRESHOLDS:
        found, seconds = pairs_at(scan, threshold)
        recall = [np.mean([pair in found for k, pair in planted if k == kind]) for kind in COPY_KINDS]
        false = sum(family.get(a, a) != family.get(b, b) for a, b in found)
        print(f"{threshold:>4}  " + "  ".join(f"{r:>11.0%}" for r in recall) + f"  {false:>14,}  {seconds:>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
