"""Task runners: threads by default, Dask on a local cluster or an existing one."""

from __future__ import annotations

import os
import sys
import time

import pytest
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from flows.runners import default_dask_workers, make_task_runner


def test_thread_runner_is_the_default() -> None:
    assert isinstance(make_task_runner("thread"), ThreadPoolTaskRunner)
    assert make_task_runner("thread", max_workers=3)._max_workers == 3


def test_bad_kinds_and_combinations_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown task runner"):
        make_task_runner("ray")
    with pytest.raises(ValueError, match="--dask-address"):
        make_task_runner("thread", dask_address="tcp://127.0.0.1:8786")


def test_dask_settings() -> None:
    from prefect_dask import DaskTaskRunner

    remote = make_task_runner("dask", dask_address="tcp://10.0.0.5:8786")
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    local = make_task_runner("dask", n_workers=3)
    assert local.address is None
    assert local.cluster_kwargs["n_workers"] == 3 and local.cluster_kwargs["threads_per_worker"] == 1
    assert local.cluster_kwargs["processes"] is True


def test_missing_prefect_dask_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prefect_dask", None)  # import now raises ImportError
    with pytest.raises(RuntimeError, match=r'pip install -e "\.\[dask\]"'):
        make_task_runner("dask")


def test_local_cluster_size_follows_cores_and_memory() -> None:
    assert default_dask_workers(cpus=2, memory_gib=64) == 2
    assert default_dask_workers(cpus=16, memory_gib=8) == 3
    assert default_dask_workers(cpus=4, memory_gib=1) == 1
    assert default_dask_workers() >= 1


@task
def where_am_i(label: str) -> tuple[str, int]:
    time.sleep(1.0)  # long enough that the scheduler spreads the two tasks over both workers
    return label, os.getpid()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_dask_runner_runs_independent_tasks_in_worker_processes(prefect_server: None) -> None:
    @flow(task_runner=make_task_runner("dask", n_workers=2), persist_result=False)
    def two_independent() -> list[tuple[str, int]]:
        futures = [where_am_i.submit("a"), where_am_i.submit("b")]
        return [future.result() for future in futures]

    started = time.monotonic()
    results = two_independent()
    elapsed = time.monotonic() - started
    labels = [label for label, _ in results]
    pids = {pid for _, pid in results}
    print(f"dask flow: {elapsed:.1f}s, worker pids {pids}")
    assert labels == ["a", "b"]
    assert os.getpid() not in pids  # ran in Dask worker processes, not in the flow's process
    assert len(pids) == 2  # in parallel, one task per worker
