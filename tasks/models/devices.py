"""Accelerator set-up: the same code runs on CPU and GPUs, on the TensorFlow or the JAX backend.

Precision: ``auto`` picks ``mixed_bfloat16`` on GPUs that compute in bf16 natively (compute
capability 8.0 and up: A100, H100, H200), ``mixed_float16`` on older GPUs and ``float32`` on CPU.
Measured here, bf16 made TensorFlow on CPU ~1.4x slower (docs/measurements.md).

Compilation: JAX always jit-compiles (un-jitted JAX ran 4.6x slower on this CPU, docs/measurements.md).
TensorFlow uses XLA on GPUs only: on CPU it made MobileNetV2 ~12x slower (docs/measurements.md); on GPUs
it is Keras' own default and has not been measured against plain TF here.

Several GPUs: `keras.distribution.DataParallel` on JAX, `tf.distribute.MirroredStrategy` on TF.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import keras

from tasks.models.settings import Precision, TransferSettings
from tasks.models.sizing import stage2_budget

#: Lowest CUDA compute capability whose tensor cores do bf16 (Ampere).
BF16_MIN_CAPABILITY = 8.0


@dataclass(frozen=True)
class DevicePlan:
    """What the training code uses on this machine."""

    backend: str
    n_gpus: int
    precision: str  # a Keras dtype policy name
    jit_compile: bool

    @property
    def description(self) -> str:
        where = f"{self.n_gpus} GPU(s)" if self.n_gpus else "CPU"
        return f"{where} on {self.backend}, precision {self.precision}, jit/XLA {'on' if self.jit_compile else 'off'}"


def gpu_capabilities() -> list[float]:
    """CUDA compute capability of each visible GPU for the active backend (0.0 when unknown)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        details = [tf.config.experimental.get_device_details(g).get("compute_capability") for g in gpus]
        return [float(".".join(map(str, cc))) if cc else 0.0 for cc in details]
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        return [float(getattr(d, "compute_capability", 0.0) or 0.0) for d in gpus]
    return []


def choose_precision(requested: Precision, capabilities: list[float]) -> str:
    """The dtype policy for ``requested`` on GPUs of these capabilities (none: CPU)."""
    if requested != "auto":
        return requested
    if not capabilities:
        return "float32"
    return "mixed_bfloat16" if min(capabilities) >= BF16_MIN_CAPABILITY else "mixed_float16"


def choose_jit(backend: str, n_gpus: int) -> bool:
    """jit for JAX everywhere; XLA for TensorFlow on GPUs only (see the module docstring)."""
    return backend == "jax" or (backend == "tensorflow" and n_gpus > 0)


def survey_devices(precision: Precision = "auto", jit_compile: bool | None = None) -> DevicePlan:
    """Decide what this machine trains with, changing nothing (the flow asks before a step's cache
    key is computed: `for_machine`)."""
    backend = keras.backend.backend()
    capabilities = gpu_capabilities()
    return DevicePlan(
        backend=backend,
        n_gpus=len(capabilities),
        precision=choose_precision(precision, capabilities),
        jit_compile=choose_jit(backend, len(capabilities)) if jit_compile is None else jit_compile,
    )


def for_machine(settings: TransferSettings, plan: DevicePlan) -> TransferSettings:
    """``settings`` with everything that depends on the machine resolved for ``plan``: the stage-2
    image budget (all images on GPUs, `CPU_STAGE2_IMAGES` on a CPU) and the precision. Resolved
    before the transfer step's cache key is computed, so a GPU run on an output directory a CPU run
    filled never gets the CPU-trained model back from the cache, nor the other way round."""
    budget = stage2_budget(settings.stage2_max_images, plan.n_gpus)
    return settings.model_copy(update={"stage2_max_images": budget, "precision": plan.precision})


def plan_devices(precision: Precision = "auto", jit_compile: bool | None = None) -> DevicePlan:
    """Decide, and apply, the precision policy and (JAX, several GPUs) the data-parallel layout."""
    plan = survey_devices(precision, jit_compile)
    keras.mixed_precision.set_global_policy(plan.precision)
    if plan.backend == "jax" and plan.n_gpus > 1:
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    return plan


def distribution_scope(plan: DevicePlan) -> Any:
    """A MirroredStrategy scope over all GPUs with the TensorFlow backend, else a no-op (JAX's
    data parallelism is global, set by `plan_devices`)."""
    if plan.n_gpus > 1 and plan.backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    return contextlib.nullcontext()
