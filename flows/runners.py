"""Task runners: threads on one machine, or Dask (a local cluster or an existing one).

The same flows run under either. What is submitted, and so runs where the runner decides: the
scikit-learn fits and, under Dask only, one task per chunk of the backbone pass
(`flows.cluster.spread_backbone_pass`; under threads the pass runs in order in one task, since
several TensorFlow models in one process would only contend for its cores and memory). The
image scan, the pixel features, the transfer model's training, evaluation and publishing run in
the flow's process. Dask workers are separate processes (``processes=True``): TensorFlow and
Keras keep global state per process, and scikit-learn/NumPy release the GIL only part of the
time. One thread per worker keeps TF from oversubscribing the cores; TF's own thread pools are
sized per process. Workers report to the flow's Prefect API (`flows.cluster.workers_api`).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from prefect.task_runners import ThreadPoolTaskRunner

from tasks.machine import available_cores

__all__ = ["TaskRunnerKind", "available_cores", "default_dask_workers", "make_task_runner"]

TaskRunnerKind = Literal["thread", "dask"]

# A worker process that imports TensorFlow and holds a model plus a batch of images needs about
# 1.5-2.5 GiB; below this much memory per worker Dask would start pausing and restarting workers.
WORKER_MEMORY_GIB = 2.5


def default_dask_workers(cpus: int | None = None, memory_gib: float | None = None) -> int:
    """Worker processes for a local cluster: one per core, capped by memory, at least one."""
    if cpus is None:
        cpus = available_cores()
    if memory_gib is None:
        memory_gib = total_memory_gib()
    by_memory = int(memory_gib // WORKER_MEMORY_GIB) if memory_gib else cpus
    return max(1, min(cpus, by_memory))


def total_memory_gib() -> float | None:
    """Physical memory in GiB, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def make_task_runner(
    kind: str = "thread", dask_address: str | None = None, n_workers: int | None = None, max_workers: int | None = None
) -> Any:
    """A Prefect task runner of the given kind.

    ``thread``: Prefect's `ThreadPoolTaskRunner` (``max_workers`` threads, default Prefect's).
    ``dask``: `prefect_dask.DaskTaskRunner`; with ``dask_address`` (e.g. ``tcp://10.0.0.5:8786``)
    it connects to that existing cluster, otherwise it starts a local cluster of ``n_workers``
    single-threaded worker processes (default: one per core, capped by memory) and shuts it down
    when the flow ends.
    """
    if kind == "thread":
        if dask_address:
            raise ValueError("--dask-address needs --task-runner dask")
        return ThreadPoolTaskRunner(max_workers=max_workers) if max_workers else ThreadPoolTaskRunner()
    if kind != "dask":
        raise ValueError(f"unknown task runner {kind!r}: choose 'thread' or 'dask'")
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:  # the optional extra is not installed
        raise RuntimeError('the Dask task runner needs prefect-dask and distributed: pip install -e ".[dask]"') from exc
    if dask_address:
        return DaskTaskRunner(address=dask_address)
    workers = n_workers or default_dask_workers()
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            # Share the machine's memory between the workers; Dask pauses a worker that nears it.
            "memory_limit": "auto",
            # Offline, local-only: no dashboard port to bind, nothing listens beyond this host.
            "dashboard_address": None,
            "host": "127.0.0.1",
        },
    )
