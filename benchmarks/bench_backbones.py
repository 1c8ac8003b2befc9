"""Benchmark the backbone registry: feature-extraction speed and Lite0 build time (cold vs warm).

Run: ``python -m benchmarks.bench_backbones`` (or ``python benchmarks/bench_backbones.py``).

Why these numbers: on CPU the backbone forward pass, not the input pipeline, bounds training speed
(docs/measurements.md), and the offline default backbone's first build converts a PyTorch file, so we
want to know what the conversion cache saves. Build times are measured in fresh processes, the way
a user's run or a Prefect task would see them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # allow `python benchmarks/bench_backbones.py`
    sys.path.insert(0, str(REPO_ROOT))


def measure_throughput(name: str, size: int, batch: int, n_batches: int, cache_dir: Path) -> dict[str, float]:
    """Images/s of pooled-feature extraction: one warm-up batch, then the median of ``n_batches``."""
    import numpy as np

    from tasks.models.backbones import BACKBONES, build_backbone

    # keras.applications ImageNet weights need a download (no network here); speed does not
    # depend on the weight values, so those run with random weights.
    weights = "imagenet" if BACKBONES[name].offline else "random"
    model = build_backbone(name, input_size=size, weights=weights, cache_dir=cache_dir)
    images = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    model.predict_on_batch(images)  # traces the graph
    seconds = []
    for _ in range(n_batches):
        start = time.perf_counter()
        model.predict_on_batch(images)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"images_per_s": batch / median, "best_images_per_s": batch / min(seconds), "weights": weights}


def time_build_in_fresh_process(cache_dir: Path) -> dict[str, float]:
    """Run one Lite0 ImageNet build in a new interpreter; return its import and build seconds."""
    code = (
        "import time, json, sys; t0 = time.perf_counter();"
        "from pathlib import Path; from tasks.models.backbones import build_backbone; t1 = time.perf_counter();"
        f"build_backbone('efficientnet_lite0', include_top=True, cache_dir=Path({str(cache_dir)!r}));"
        "t2 = time.perf_counter(); print(json.dumps({'import_s': t1 - t0, 'build_s': t2 - t1}))"
    )
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    timing = json.loads(result.stdout.strip().splitlines()[-1])
    timing["process_s"] = time.perf_counter() - start
    return timing


def time_lite0_build_steps(cache_dir: Path, repeats: int = 3) -> dict[str, float]:
    """Median seconds of each step of a Lite0 build, to show where cold and warm builds differ."""
    from tasks.models import lite0 as backbones  # the Lite0 port and its converted-weights cache
    from tasks.models.torch_pickle import load_torch_state_dict

    source = backbones.lite0_weights_file()
    target = cache_dir / "steps" / "lite0.weights.h5"
    steps: dict[str, list[float]] = {}

    def timed(step: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        result = fn(*args)
        steps.setdefault(step, []).append(time.perf_counter() - start)
        return result

    for _ in range(repeats):
        model = timed("build architecture", backbones.build_lite0_architecture, 224)
        timed("sha256 of .pth (cache key)", backbones.hash_file_prefix, source)
        state = timed("read .pth (torch_pickle)", load_torch_state_dict, source)
        timed("assign converted weights", backbones.assign_lite0_weights, model, state)
        timed("save .weights.h5", backbones.save_weights_atomically, model, target)
        timed("load .weights.h5", model.load_weights, target)
    return {step: statistics.median(values) for step, values in steps.items()}


def print_throughput_table(rows: list[tuple[str, int, dict[str, float]]], batch: int, n_batches: int) -> None:
    """Markdown table, easy to paste into an issue or the README."""
    print(f"\nFeature extraction (pooling='avg'), batch {batch}, median of {n_batches} batches after 1 warm-up")
    print("| backbone | px | weights | images/s (median) | images/s (best) |")
    print("|---|---|---|---|---|")
    for name, size, r in rows:
        print(f"| {name} | {size} | {r['weights']} | {r['images_per_s']:.1f} | {r['best_images_per_s']:.1f} |")
    print(
        "(keras.applications backbones use random weights here: their ImageNet weights need a "
        "download, and speed does not depend on weight values.)"
    )


def main(argv: list[str] | None = None) -> None:
    """Print the throughput table and Lite0's cold/warm build times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=3, help="measured batches per setting")
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="default: each backbone's size and 128")
    parser.add_argument("--backbones", nargs="*", default=None)
    args = parser.parse_args(argv)

    import keras

    from tasks.models.backbones import BACKBONES

    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-backbones-") as tmp:
        cache_dir = Path(tmp)
        cold = time_build_in_fresh_process(cache_dir)
        warm = time_build_in_fresh_process(cache_dir)
        steps = time_lite0_build_steps(cache_dir)
        rows = []
        for name in args.backbones or list(BACKBONES):
            sizes = args.sizes or [BACKBONES[name].default_input_size, 128]
            for size in sizes:
                rows.append((name, size, measure_throughput(name, size, args.batch, args.batches, cache_dir)))
                keras.backend.clear_session()
    print_throughput_table(rows, args.batch, args.batches)
    print("\nefficientnet_lite0 ImageNet build (fresh process each, include_top=True)")
    print("| build | import keras+module s | build s | whole process s |")
    print("|---|---|---|---|")
    for label, t in (("cold: .pth -> convert -> .weights.h5", cold), ("warm: from cached .weights.h5", warm)):
        print(f"| {label} | {t['import_s']:.2f} | {t['build_s']:.2f} | {t['process_s']:.2f} |")
    print(f"cold/warm build-time ratio: {cold['build_s'] / warm['build_s']:.2f}x")
    print("\nefficientnet_lite0 build steps, 224 px (median of 3, in one process)")
    print("| step | s |")
    print("|---|---|")
    for step, seconds in steps.items():
        print(f"| {step} | {seconds:.3f} |")
    print("cold = build + sha256 + read + assign + save; warm = build + sha256 + load")


if __name__ == "__main__":
    main()
