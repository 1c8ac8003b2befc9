"""Fit time, prediction time and saved size of the default baselines at full size.

    python -m benchmarks.bench_baselines [--rows 30000,120000 | --images 2000,5000,10000]
                                         [--models pixels_random_forest,...] [--exact-svm]
                                         [--classes 8] [--keep DIR]

A full-size run trains on ~120k images (150k train+val, 20% held out). Real images are not
needed to measure what grows with them, so each size synthesises matrices shaped like the
cached features: 48x48 grayscale "pixels" (float32 in [0, 1], each class a blurred template
under blurred and fine noise, like the pixel cache) and 1280-wide "backbone features" (float16
as the feature cache stores them, non-negative like pooled activations, class centres under
noise), both only weakly separable so trees grow as large as photos make them. Each default
baseline (`BaselineSettings()`; on features its `on_embeddings()` values) is fitted on all rows
through `fit_baseline`, as the flow does, and the line reports fit seconds, prediction seconds
per 10k images, the `.skops` file's size (`tasks.models.persistence.save_model`) and the
process's peak RSS so far. ``--exact-svm`` adds the exact SVC (``--baselines.svm-solver exact``)
for comparison; the ratio lines compare the largest size with the smallest (a bounded baseline
stays near 1x in fit time and size while the rows grow). ``--images`` sizes the rows as runs of
that many images do and prints each model's stage seconds (fit plus prediction of the hold-out
and test rows) with their growth exponent, the number `benchmarks.bench_scale` reports for the
whole flow.

Not a test: the numbers depend on the machine and its load (quote them with ``uptime``).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from tasks.models.baselines import fit_baseline
from tasks.models.persistence import SKLEARN_SUFFIX, save_model
from tasks.models.settings import BaselineSettings

PIXEL_SIDE = 48
FEATURE_WIDTH = 1280
PREDICT_ROWS = 10_000
LABELLED_SHARE = 36 / 44
HOLDOUT_FRACTION = 0.2
#: Class signal against noise, chosen so that a logistic regression on 3k rows scores near the
#: majority class on pixels and well above it on features, as on the embedded sample: classes
#: that barely separate grow the largest trees.
PIXEL_SIGNAL = 0.03
FEATURE_SIGNAL = 0.03
#: The default models: name -> (feature kind, baseline kind).
MODELS = {
    "pixels_random_forest": ("pixels", "random_forest"),
    "pixels_svm": ("pixels", "svm"),
    "features_random_forest": ("features", "random_forest"),
    "features_svm": ("features", "svm"),
    "features_logreg": ("features", "logreg"),
}
#: ``--exact-svm``: the original project's SVC on the same subsample, for comparison.
EXACT_SVMS = {"pixels_svm_exact": ("pixels", "svm"), "features_svm_exact": ("features", "svm")}


def class_labels(rows: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    """Imbalanced labels (the largest class 6x the smallest), shuffled."""
    weights = np.linspace(6, 1, classes)
    return rng.choice(classes, size=rows, p=weights / weights.sum())


def blur(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upsampling of (n, s, s) noise by ``factor``, then a 3x3 box mean:
    spatially correlated noise at the cost of a few array passes."""
    big = images.repeat(factor, axis=1).repeat(factor, axis=2)
    padded = np.pad(big, ((0, 0), (1, 1), (1, 1)), mode="edge")
    side = big.shape[1]
    return sum(padded[:, i : i + side, j : j + side] for i in range(3) for j in range(3)) / 9.0


def pixel_matrix(labels: np.ndarray, classes: int, seed: int, chunk: int = 4096) -> np.ndarray:
    """(n, 48*48) float32 in [0, 1], filled chunk by chunk into one preallocated matrix."""
    rng = np.random.default_rng(seed)
    templates = blur(rng.uniform(0, 1, (classes, PIXEL_SIDE // 8, PIXEL_SIDE // 8)), 8)
    matrix = np.empty((len(labels), PIXEL_SIDE * PIXEL_SIDE), np.float32)
    for start in range(0, len(labels), chunk):
        part = labels[start : start + chunk]
        coarse = blur(rng.uniform(0, 1, (len(part), PIXEL_SIDE // 4, PIXEL_SIDE // 4)), 4)
        fine = rng.normal(0, 0.08, (len(part), PIXEL_SIDE, PIXEL_SIDE))
        images = PIXEL_SIGNAL * templates[part] + 0.6 * coarse + fine + 0.2
        matrix[start : start + len(part)] = np.clip(images, 0, 1).reshape(len(part), -1)
    return matrix


def feature_matrix(labels: np.ndarray, classes: int, seed: int, chunk: int = 8192) -> np.ndarray:
    """(n, 1280) float16, non-negative: class centres close to a shared one, under heavier noise."""
    rng = np.random.default_rng(seed)
    centres = rng.gamma(0.6, 0.4, FEATURE_WIDTH) + FEATURE_SIGNAL * rng.normal(0, 1, (classes, FEATURE_WIDTH))
    matrix = np.empty((len(labels), FEATURE_WIDTH), np.float16)
    for start in range(0, len(labels), chunk):
        part = labels[start : start + chunk]
        noisy = centres[part] + rng.normal(0, 0.45, (len(part), FEATURE_WIDTH))
        matrix[start : start + len(part)] = np.maximum(noisy, 0)
    return matrix


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(
    name: str, kind: str, features: np.ndarray, labels: np.ndarray, settings: BaselineSettings, seed: int, folder: Path
) -> dict[str, float]:
    """Fit on every row, predict the first 10k, save: seconds, file MiB, peak RSS MiB."""
    started = time.perf_counter()
    model = fit_baseline(kind, features, labels, settings, seed)
    fit_s = time.perf_counter() - started
    rows = features[:PREDICT_ROWS]
    started = time.perf_counter()
    model.predict(rows)
    predict_s = (time.perf_counter() - started) * PREDICT_ROWS / len(rows)
    path = save_model(model, folder / f"{name}-{len(labels)}{SKLEARN_SUFFIX}")
    return {"fit_s": fit_s, "predict_s": predict_s, "mib": path.stat().st_size / 2**20, "rss": peak_rss_mib()}


def model_size_note(kind: str, settings: BaselineSettings) -> str:
    """What bounds the model: trees and their bootstrap, landmarks, or support vectors."""
    if kind == "random_forest":
        return (
            f"{settings.rf_n_estimators} trees, bootstrap {settings.rf_max_samples}, "
            f"leaf >= {settings.rf_min_samples_leaf}"
        )
    if kind == "svm" and settings.svm_solver == "nystroem":
        return f"{settings.svm_components} landmarks of a {settings.svm_max_samples}-row subsample"
    if kind == "svm":
        return f"support vectors of a {settings.svm_max_samples}-row subsample"
    return "linear"


def run(sizes: list[int], names: list[str], classes: int, seed: int, folder: Path) -> dict[tuple[str, int], dict]:
    """Every model at every size; prints one line each as it finishes."""
    defaults = BaselineSettings()
    exact = defaults.model_copy(update={"svm_solver": "exact"})
    results: dict[tuple[str, int], dict] = {}
    print(f"{'model':24} {'rows':>7} {'fit s':>8} {'pred s/10k':>10} {'skops MiB':>9} {'peak RSS MiB':>12}  bound")
    for rows in sizes:
        labels = class_labels(rows, classes, np.random.default_rng(seed))
        matrices = {"pixels": pixel_matrix(labels, classes, seed)}
        matrices["features"] = feature_matrix(labels, classes, seed + 1)
        for name in names:
            inputs, kind = {**MODELS, **EXACT_SVMS}[name]
            base = exact if name in EXACT_SVMS else defaults
            settings = base if inputs == "pixels" else base.on_embeddings()
            row = measure(name, kind, matrices[inputs], labels, settings, seed, folder)
            results[(name, rows)] = row
            print(
                f"{name:24} {rows:7d} {row['fit_s']:8.1f} {row['predict_s']:10.2f} {row['mib']:9.1f} "
                f"{row['rss']:12.0f}  {model_size_note(kind, settings)}",
                flush=True,
            )
        del matrices
    return results


def print_ratios(results: dict[tuple[str, int], dict], sizes: list[int], names: list[str]) -> None:
    """Largest size over smallest: rows, fit time, prediction time, file size."""
    if len(sizes) < 2:
        return
    low, high = min(sizes), max(sizes)
    print(f"\nratios {high} / {low} rows ({high / low:.1f}x the rows):")
    for name in names:
        a, b = results[(name, low)], results[(name, high)]
        print(
            f"{name:24} fit {b['fit_s'] / a['fit_s']:5.2f}x  predict/10k {b['predict_s'] / a['predict_s']:5.2f}x  "
            f"size {b['mib'] / a['mib']:5.2f}x"
        )


def run_rows(images: int) -> tuple[int, int]:
    """Training and scored (hold-out + test) rows of a default run on ``images`` images: the
    sample's 36:8 labelled:test ratio per family (`benchmarks.bench_scale`), 20% held out."""
    labelled = images * LABELLED_SHARE
    return round(labelled * (1 - HOLDOUT_FRACTION)), round(labelled * HOLDOUT_FRACTION + images - labelled)


def print_growth(results: dict[tuple[str, int], dict], images: list[int], names: list[str]) -> None:
    """Per model, the stage seconds of a run on each image count (fit on its training rows plus
    prediction of its scored rows) and the growth exponent k of seconds ~ images^k between them."""
    print(f"\nstage seconds (fit + predict of the scored rows) for a run of {images} images, growth k:")
    for name in names:
        seconds = [
            results[(name, run_rows(n)[0])]["fit_s"]
            + results[(name, run_rows(n)[0])]["predict_s"] * run_rows(n)[1] / 1e4
            for n in images
        ]
        k = np.polyfit(np.log(images), np.log(seconds), 1)[0]
        print(f"{name:24} " + " ".join(f"{t:7.1f}" for t in seconds) + f"   k = {k:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="120000", help="training rows, comma-separated sizes")
    parser.add_argument(
        "--images", default="", help="instead of --rows: runs of these many images (their training rows), with k"
    )
    parser.add_argument("--models", default=",".join(MODELS), help="which of: " + ", ".join(MODELS))
    parser.add_argument("--exact-svm", action="store_true", help="also the exact SVC on pixels and features")
    parser.add_argument("--classes", type=int, default=8, help="classes (8 coarse; 50 for the fine target)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the saved models in this folder")
    args = parser.parse_args(argv)
    images = sorted(int(size) for size in args.images.split(",") if size)
    sizes = sorted(run_rows(n)[0] for n in images) or sorted(int(size) for size in args.rows.split(","))
    names = [name for name in args.models.split(",") if name]
    unknown = set(names) - set(MODELS)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; choose from {list(MODELS)}")
    if args.exact_svm:
        names += [name for name in EXACT_SVMS if name.removesuffix("_exact") in names]
    with tempfile.TemporaryDirectory(prefix="bench-baselines-") as scratch:
        folder = args.keep or Path(scratch)
        results = run(sizes, names, args.classes, args.seed, folder)
    print_ratios(results, sizes, names)
    if len(images) > 1:
        print_growth(results, images, names)


if __name__ == "__main__":
    main()
