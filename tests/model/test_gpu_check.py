"""`benchmarks/gpu_check.py` runs the model stages on Keras 3 over JAX with TensorFlow made unimportable.

This is the CPU rehearsal of the GPU check (docs/measurements.md): it proves the input path, the backbone,
both training stages and prediction need no TensorFlow when the backend is JAX. Converted Lite0
weights and JAX's compiled programs are kept in pytest's cache folder, so only the first run of
this test pays for the weight conversion and the XLA compilations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

STAGES = ("backbone", "head", "finetune", "predict")
PRECISIONS = ("float32", "mixed_bfloat16")


@pytest.mark.slow
def test_gpu_check_runs_on_jax_without_tensorflow(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    pytest.importorskip("jax")
    store = getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
    cache = Path(store.mkdir("gpu-check")) if store else tmp_path
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "LIVING_THINGS_CACHE": str(cache / "backbones"),
        "JAX_COMPILATION_CACHE_DIR": str(cache / "jax"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PLATFORMS": "cpu",
    }
    report = tmp_path / "gpu_check.json"
    command = [sys.executable, "benchmarks/gpu_check.py", "--tiny", "--block-tensorflow", "--json", str(report)]
    command += ["--precisions", ",".join(PRECISIONS)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "PASS gpu_check" in done.stdout, output[-4000:]

    result = json.loads(report.read_text(encoding="utf-8"))
    assert result["backend"] == "jax"
    assert result["tensorflow_modules"] == []
    assert "tensorflow" not in result["third_party_packages"]
    assert [run["precision"] for run in result["runs"]] == list(PRECISIONS)
    for run in result["runs"]:
        assert run["plan"]["precision"] == run["precision"] and run["plan"]["jit"] is True
        for stage in STAGES:
            assert run["stages"][stage]["img_per_s"] > 0, (run["precision"], stage, run["stages"][stage])
        assert run["stages"]["finetune"]["steps"] >= 2
        assert run["peak_memory"]["bytes"] > 0
    assert result["runs"][0]["feature_cosine_vs_float32"] == pytest.approx(1.0)
    assert result["runs"][1]["feature_cosine_vs_float32"] >= 0.95
