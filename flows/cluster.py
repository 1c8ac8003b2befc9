"""Running on a Dask cluster: one Prefect API for every worker, paths the workers can reach, and
the backbone pass spread over the workers.

A task that runs on a Dask worker reports its states to the Prefect API named in the settings
the flow ships with it. When the flow runs on Prefect's temporary server (no ``PREFECT_API_URL``,
the default ``python -m flows.full``), those settings name no API, and each worker process then
started a temporary server of its own (measured: ports 8500 and 8844 next to the flow's 8822, and
a two-task flow took 54 s instead of 28 s). `workers_api` pins the flow's own server for the run,
so every task run lands in one database and shows in one UI.

An existing cluster (``--runtime.dask-address``) may be other machines. Before any work,
`check_workers` asks each worker (``Client.run``) whether it reaches the Prefect API, can read the
data directory and write the output directory (the same paths: shared storage), and runs the
same pipeline code as the flow (results are cached under the flow's code fingerprint); a
problem is one error naming the worker, the path and what to do.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect.logging import get_run_logger

from flows.caching import closure_fingerprint
from flows.steps import feature_chunk_task
from tasks.data.splitting import read_table
from tasks.models.chunk_tasks import pending_chunks
from tasks.models.embeddings import target_for
from tasks.progress import StageProgress

#: Modules whose code the workers run; a worker on another version of them would fill the
#: flow's caches with results of other code.
WORKER_CODE = ("tasks.models.chunk_tasks", "tasks.models.baselines")
#: Seconds to reach the scheduler, and for each worker to answer the probe.
CONNECT_TIMEOUT_S = 20


if TYPE_CHECKING:
    from tasks.models.chunk_tasks import ChunkReport  # imports Keras: only a run on a cluster pays for it


class WorkersCannotReach(RuntimeError):
    """The cluster's workers cannot do this run's work (API, paths, code), or there is no cluster."""


def api_url_for_workers() -> str | None:
    """The Prefect API this process talks to: ``PREFECT_API_URL``, else the temporary server this
    process started (None when there is neither)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if url:
        return str(url)
    server = SubprocessASGIServer()  # the process's singleton for the temporary server
    return server.api_url if server.running else None


@contextmanager
def workers_api() -> Iterator[str | None]:
    """Within: the settings (shipped with every task to the workers) name this process's API."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    url = api_url_for_workers()
    if url is None or get_current_settings().api.url:
        yield url
        return
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield url


def probe_worker(api_url: str | None, readable: list[str], writable: list[str], code: dict[str, str]) -> list[str]:
    """Run on each worker: what stops it from doing this run's work (empty: nothing)."""
    import httpx

    problems = []
    if api_url:
        try:
            httpx.get(f"{api_url.rstrip('/')}/health", timeout=5).raise_for_status()
        except Exception as err:
            problems.append(f"cannot reach the Prefect API at {api_url} ({type(err).__name__}: {err})")
    for path in readable:
        if not (os.path.isdir(path) and os.access(path, os.R_OK | os.X_OK)):
            problems.append(f"cannot read the data directory {path}")
    for path in writable:
        try:
            os.makedirs(path, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".worker-probe-"):
                pass
        except OSError as err:
            problems.append(f"cannot write to the output directory {path} ({err.strerror or err})")
    for module, fingerprint in code.items():
        if closure_fingerprint(module) != fingerprint:
            problems.append(f"runs other code than the flow (its {module} and the modules it imports differ)")
    return problems


def check_workers(
    address: str, api_url: str | None, readable: list[Path], writable: list[Path], timeout_s: float | None = None
) -> int:
    """Probe every worker of the cluster at ``address``; raises `WorkersCannotReach` naming each
    worker's problems. Returns the number of workers."""
    from distributed import Client

    code = {module: closure_fingerprint(module) for module in WORKER_CODE}
    try:
        with Client(address, timeout=timeout_s or CONNECT_TIMEOUT_S) as client:
            answers = client.run(probe_worker, api_url, [str(p) for p in readable], [str(p) for p in writable], code)
    except OSError as err:  # distributed raises OSError (or its TimeoutError) when nobody answers
        raise WorkersCannotReach(f"cannot connect to the Dask scheduler at {address}: {err}") from err
    if not answers:
        raise WorkersCannotReach(f"the Dask cluster at {address} has no workers (start some: dask worker {address})")
    failing = {worker: problems for worker, problems in answers.items() if problems}
    if failing:
        lines = "; ".join(f"worker {worker} {', '.join(problems)}" for worker, problems in sorted(failing.items()))
        hint = (
            " Every worker needs the project installed at the same version, the data and output directories "
            "at the same paths (shared storage), and a Prefect API it can reach: start one with "
            "`prefect server start --host 0.0.0.0` and set PREFECT_API_URL for this command "
            "(see deployments/README.md)."
        )
        raise WorkersCannotReach(
            f"{len(failing)} of {len(answers)} Dask workers cannot do this run's work: {lines}.{hint}"
        )
    return len(answers)


def spread_backbone_pass(table: Path, spec: Any, cache_dir: Path, chunk_size: int, refresh: bool) -> list[ChunkReport]:
    """Submit every unfinished chunk of the backbone pass to the task runner (one task per chunk)
    and wait for them; the backbone-features step then only assembles their files. Nothing is
    submitted when that step's file already exists (and ``refresh`` is off)."""
    if not refresh and target_for(read_table(table), spec, cache_dir).is_file():
        return []
    from prefect.futures import as_completed

    started = time.monotonic()
    futures = [
        feature_chunk_task.submit(table, spec, cache_dir, pass_index, chunk_index, chunk_size, refresh)
        for pass_index, chunk_index in pending_chunks(table, spec, cache_dir, chunk_size, refresh)
    ]
    done: list[ChunkReport] = []
    # Chunks/s and the ETA on the console and in a progress artifact, as the workers finish them.
    with StageProgress(f"{spec.backbone} features on the cluster", total=len(futures), unit="chunk") as progress:
        for future in as_completed(futures):
            done.append(future.result())
            progress.advance(1)
    if done:
        get_run_logger().info(describe_spread(done, time.monotonic() - started))
    return done


def describe_spread(done: list[ChunkReport], seconds: float) -> str:
    """One line: how many chunks and images, on which workers, reporting to which API."""
    computed = [d for d in done if d.computed]
    workers = sorted({d.worker for d in computed})
    apis = sorted({d.api_url for d in done})
    return (
        f"Backbone pass on the cluster: {len(computed)} of {len(done)} chunks computed "
        f"({sum(d.rows for d in computed)} images) on {len(workers)} worker(s) {', '.join(workers)} "
        f"in {seconds:.1f} s; their task runs reported to {', '.join(apis)}"
    )
