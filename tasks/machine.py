"""Facts about the machine a step runs on, free of TensorFlow so that flows and fits can ask cheaply."""

from __future__ import annotations

import os

#: At most this many cores, a scikit-learn fit gets one thread by default: in the training flow the
#: fits run alongside TensorFlow (the backbone pass, stage 2), which already uses every core.
SMALL_MACHINE_CORES = 4


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def fit_jobs(requested: int | None) -> int:
    """Threads for a scikit-learn fit: ``requested``, or by default 1 on a small machine (at most
    `SMALL_MACHINE_CORES` cores) and all cores (-1) on a larger one."""
    if requested is not None:
        return requested
    return 1 if available_cores() <= SMALL_MACHINE_CORES else -1
