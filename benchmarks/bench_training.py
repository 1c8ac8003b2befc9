"""Training-side benchmarks (issue 5), each a ratio measured in one run on this machine.

(a) input pipeline: tf.data (parallel decode, fixed parallelism) against a naive single-threaded
    PIL loop like the original project's generator, same files, same 224 px output, batch 32;
(b) a stage-1 epoch on cached backbone features against one that runs the frozen backbone;
(c) test-set prediction from files (tf.data + model) against the bare forward pass on in-memory
    tensors of the same size: what the input pipeline costs at prediction time. Both are warmed
    up with a full pass and timed in alternation (`alternating_medians`): timed one after the
    other, the second one measured got the warmer machine (files came out at 189% of bare).

Run: ``python -m benchmarks.bench_training [--images 2000] [--repeats 3]``. Medians of repeats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

SIZE, BATCH = 224, 32


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def alternating_medians(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each of ``runs``, timed in alternation (the order rotates every round)
    after one untimed full call of each: neither warm-up nor the machine's drift over the
    measurement can favour the one that happens to go second."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            started = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def make_photos(folder: Path, n: int) -> list[str]:
    """``n`` JPEGs of 300-500 px from the sample generator (photo-sized, unlike the tiny sample)."""
    from tasks.data.sample import SampleSpec, generate_sample

    per_family = max(3, -(-n // 50))
    data = generate_sample(
        folder / "data", SampleSpec(per_family=per_family, test_per_family=1, min_side=300, max_side=500)
    )
    paths = sorted(str(p) for split in ("train", "val") for p in (data / "public" / split).iterdir())
    return paths[:n]


def naive_pil_epoch(paths: list[str]) -> None:
    """One pass the way the original generator did it: one image at a time, PIL resize."""
    for start in range(0, len(paths), BATCH):
        batch = []
        for path in paths[start : start + BATCH]:
            with Image.open(path) as image:
                batch.append(np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR), np.float32))
        np.stack(batch)


def tfdata_epoch(dataset: object) -> None:
    for _ in dataset:  # type: ignore[attr-defined]
        pass


def bench_input_pipeline(paths: list[str], repeats: int) -> dict[str, float]:
    from tasks.models.images import make_image_dataset

    n = len(paths)
    naive = median_seconds(lambda: naive_pil_epoch(paths), repeats)
    dataset = make_image_dataset(paths, None, SIZE, BATCH)
    tfdata = median_seconds(lambda: tfdata_epoch(dataset), repeats)
    with tempfile.TemporaryDirectory() as cache:
        cached = make_image_dataset(paths, None, SIZE, BATCH, cache_file=Path(cache) / "images")
        tfdata_epoch(cached)  # first pass fills the cache
        warm = median_seconds(lambda: tfdata_epoch(cached), repeats)
    return {"naive_ips": n / naive, "tfdata_ips": n / tfdata, "tfdata_cached_ips": n / warm}


def bench_stage1(paths: list[str], repeats: int) -> dict[str, float]:
    import keras

    from tasks.models.backbones import build_backbone
    from tasks.models.images import make_image_dataset
    from tasks.models.training import build_head, compile_for_training
    from tasks.models.transfer.stage2 import build_finetune_model

    subset = paths[:512]
    labels = np.arange(len(subset)) % 8
    backbone = build_backbone("efficientnet_lite0", input_size=SIZE)
    backbone.trainable = False
    features = np.concatenate(
        [np.asarray(backbone.predict_on_batch(b)) for b in make_image_dataset(subset, None, SIZE, BATCH)]
    )
    head = build_head(features.shape[1:], 8, "gap", 0.2, 512, 0)
    compile_for_training(head, "adam", 1e-3)
    cached = median_seconds(lambda: head.fit(features, labels, batch_size=BATCH, epochs=1, verbose=0), repeats)
    model = build_finetune_model(backbone, build_head(features.shape[1:], 8, "gap", 0.2, 512, 0), SIZE)
    compile_for_training(model, "adam", 1e-3)
    images = make_image_dataset(subset, labels, SIZE, BATCH)
    model.fit(images, epochs=1, verbose=0, shuffle=False)  # warm-up: graph tracing
    frozen = median_seconds(lambda: model.fit(images, epochs=1, verbose=0, shuffle=False), max(1, repeats - 1))
    keras.backend.clear_session()
    return {"cached_epoch_s": cached, "frozen_backbone_epoch_s": frozen, "images": len(subset)}


def bench_prediction(paths: list[str], repeats: int) -> dict[str, float]:
    from tasks.models.backbones import build_backbone
    from tasks.models.images import make_image_dataset
    from tasks.models.training import build_head
    from tasks.models.transfer.stage2 import build_finetune_model

    subset = paths[:512]
    model = build_finetune_model(
        build_backbone("efficientnet_lite0", input_size=SIZE), build_head((1280,), 8, "gap", 0.2, 512, 0), SIZE
    )
    import tensorflow as tf

    # The bare forward pass: the same predict loop over tensors already decoded and in memory.
    in_memory = (
        tf.data.Dataset.from_tensor_slices(
            np.concatenate([batch.numpy() for batch in make_image_dataset(subset, None, SIZE, BATCH)])
        )
        .batch(BATCH)
        .cache()
    )
    dataset = make_image_dataset(subset, None, SIZE, BATCH)
    seconds = alternating_medians(
        {"bare": lambda: model.predict(in_memory, verbose=0), "files": lambda: model.predict(dataset, verbose=0)},
        max(repeats, 3),
    )
    return {"bare_ips": len(subset) / seconds["bare"], "pipeline_ips": len(subset) / seconds["files"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("LIVING_THINGS_CACHE", str(Path(tmp) / "backbones"))
        paths = make_photos(Path(tmp), args.images)
        print(f"{len(paths)} JPEGs of 300-500 px, output {SIZE}x{SIZE}, batch {BATCH}, {os.cpu_count()} CPU cores")
        a = bench_input_pipeline(paths, args.repeats)
        print(
            f"(a) naive PIL loop {a['naive_ips']:.0f} img/s | tf.data {a['tfdata_ips']:.0f} img/s "
            f"(x{a['tfdata_ips'] / a['naive_ips']:.2f}) | tf.data from disk cache {a['tfdata_cached_ips']:.0f} img/s "
            f"(x{a['tfdata_cached_ips'] / a['naive_ips']:.2f})"
        )
        b = bench_stage1(paths, args.repeats)
        print(
            f"(b) stage-1 epoch over {b['images']} images: cached features {b['cached_epoch_s']:.2f} s | frozen backbone "
            f"{b['frozen_backbone_epoch_s']:.1f} s (x{b['frozen_backbone_epoch_s'] / b['cached_epoch_s']:.0f} faster cached)"
        )
        c = bench_prediction(paths, args.repeats)
        print(
            f"(c) prediction: bare forward pass {c['bare_ips']:.0f} img/s | from files via tf.data "
            f"{c['pipeline_ips']:.0f} img/s ({100 * c['pipeline_ips'] / c['bare_ips']:.0f}% of bare)"
        )


if __name__ == "__main__":
    main()
