"""Backend-aware model code: precision and jit choices, the same features from both input paths,
and the whole model path working with TensorFlow unimportable (the GPU machine's case, docs/measurements.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from tasks.models.devices import choose_jit, choose_precision, plan_devices
from tests.helpers import REPO


def test_auto_precision_is_bf16_on_ampere_and_newer_fp16_before_and_float32_on_cpu() -> None:
    assert choose_precision("auto", []) == "float32"
    assert choose_precision("auto", [9.0]) == "mixed_bfloat16"  # H100 / H200
    assert choose_precision("auto", [8.0, 8.6]) == "mixed_bfloat16"
    assert choose_precision("auto", [7.5]) == "mixed_float16"  # T4
    assert choose_precision("auto", [9.0, 7.0]) == "mixed_float16"  # the weakest GPU decides
    assert choose_precision("float32", [9.0]) == "float32"  # an explicit choice wins
    assert choose_precision("mixed_bfloat16", []) == "mixed_bfloat16"


def test_jit_is_on_for_jax_everywhere_and_for_tensorflow_on_gpus_only() -> None:
    assert choose_jit("jax", 0) and choose_jit("jax", 2)
    assert not choose_jit("tensorflow", 0)  # XLA made MobileNetV2 ~12x slower on this CPU
    assert choose_jit("tensorflow", 1)


def test_plan_applies_the_precision_policy() -> None:
    try:
        plan = plan_devices("mixed_bfloat16")
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16" == plan.precision
        assert plan_devices().precision == "float32"  # auto on this CPU
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_backbone_features_agree_across_input_paths(tiny_sample_master: Path) -> None:
    """The PyDataset path feeds the backbone what tf.data feeds it: cached features from either
    path are interchangeable (per image cosine > 0.999, mean relative difference < 1%)."""
    from tasks.models.backbones import build_backbone
    from tasks.models.images import iter_batches, make_image_dataset

    paths = sorted(str(p) for p in (tiny_sample_master / "public" / "train").iterdir())[:16]
    model = build_backbone("efficientnet_lite0", input_size=96, weights="imagenet", pooling="avg")

    def features(loader: str) -> np.ndarray:
        data = make_image_dataset(paths, None, 96, 8, loader=loader)  # type: ignore[arg-type]
        return np.concatenate([np.asarray(model.predict_on_batch(b)) for b in iter_batches(data)])

    a, b = features("tf"), features("py")
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.999, cosine.min()
    assert np.abs(a - b).mean() / np.abs(a).mean() < 0.01


BLOCKED_RUN = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    from benchmarks.no_tensorflow import block_tensorflow, tensorflow_imported
    block_tensorflow()
    import flows, tasks
    for package in (tasks, flows):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
    import numpy as np
    from PIL import Image
    from tasks.models.images import iter_batches, make_image_dataset, resolve_loader
    paths = []
    for i in range(3):
        paths.append(sys.argv[1] + f"/{i}.jpg")
        Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(paths[-1])
    x, y = next(iter_batches(make_image_dataset(paths, [0, 1, 2], 32, 4, augment=True, shuffle=True)))
    print("loader", resolve_loader(), "batch", x.shape, sorted(y.tolist()), "tensorflow", tensorflow_imported())
    """
)


@pytest.mark.slow
def test_model_path_needs_no_tensorflow(tmp_path: Path) -> None:
    """Every module of tasks/ and flows/ imports, and augmented batches come out of the PyDataset
    path, on JAX with TensorFlow unimportable: nothing imports it at module top. (The model stages
    on JAX without TensorFlow: tests/model/test_gpu_check.py.)"""
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loader py batch (3, 32, 32, 3) [0, 1, 2] tensorflow False" in done.stdout, done.stdout
