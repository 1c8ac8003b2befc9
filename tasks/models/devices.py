"""Accelerator set-up: the same code runs on CPU and on GPUs, with no change for the user.

On GPUs: mixed precision (float16 compute, float32 variables and outputs), XLA compilation, and
`tf.distribute.MirroredStrategy` over every visible GPU. On CPU all three are off on purpose:
measured here, XLA made MobileNetV2 ~12x slower and bfloat16 ~1.4x slower (DESIGN §9).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import keras


@dataclass(frozen=True)
class DevicePlan:
    """What the training code should use on this machine."""

    n_gpus: int
    mixed_precision: bool
    jit_compile: bool

    @property
    def description(self) -> str:
        if not self.n_gpus:
            return "CPU (no mixed precision, no XLA)"
        return f"{self.n_gpus} GPU(s), mixed precision={self.mixed_precision}, XLA={self.jit_compile}"


def count_gpus() -> int:
    """Visible GPUs for the active Keras backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return len([d for d in jax.devices() if d.platform == "gpu"])
    return 0


def plan_devices(mixed_precision: bool | None = None, jit_compile: bool | None = None) -> DevicePlan:
    """Decide, and apply, the precision policy; None means 'on for GPUs, off for CPU'."""
    gpus = count_gpus()
    plan = DevicePlan(
        n_gpus=gpus,
        mixed_precision=bool(gpus) if mixed_precision is None else mixed_precision,
        jit_compile=bool(gpus) if jit_compile is None else jit_compile,
    )
    keras.mixed_precision.set_global_policy("mixed_float16" if plan.mixed_precision else "float32")
    return plan


def distribution_scope(plan: DevicePlan) -> Any:
    """A MirroredStrategy scope over all GPUs with the TensorFlow backend, else a no-op."""
    if plan.n_gpus > 1 and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    return contextlib.nullcontext()
