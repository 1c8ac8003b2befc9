"""The flow on a local two-worker Dask cluster: backbone chunks and baselines run on the workers,
every worker reports to the flow's Prefect API, and workers that cannot do the work are named."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from flows.cluster import WorkersCannotReach, check_workers, workers_api
from flows.params import PipelineParams, RuntimeSettings
from tasks.data.settings import DataSettings
from tasks.layout import RunFolder
from tasks.models.settings import BaselineSettings, TransferSettings

CHUNK = 64  # images per backbone chunk: the tiny sample's 400 images make 7


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """Two single-threaded worker processes on this machine (what `dask worker` would start)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as local:
        yield local


def worker_pids(cluster: object) -> set[int]:
    from distributed import Client

    with Client(cluster.scheduler_address) as client:  # type: ignore[attr-defined]
        return set(client.run(os.getpid).values())


def logged_lines(since: datetime, starts_with: str) -> list[str]:
    """Lines some flow run logged to the API since ``since`` that start with ``starts_with``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTimestamp

    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(timestamp=LogFilterTimestamp(after_=since)))
    return [log.message for log in logs if log.message.startswith(starts_with)]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_backbone_chunks_and_baselines_run_on_the_cluster_workers(
    prefect_server: None, cluster: object, tiny_sample: Path, tmp_path: Path
) -> None:
    from prefect.settings import get_current_settings

    from flows.full import full_pipeline
    from tasks.models.embeddings import EmbeddingSpec, compute_embeddings, load_embeddings

    transfer = TransferSettings(enabled=False, image_size=64, feature_chunk=CHUNK)
    params = PipelineParams(
        data=DataSettings(data_dir=tiny_sample, output_dir=tmp_path / "out"),
        baselines=BaselineSettings(pixel_models=["random_forest"], rf_n_estimators=20, embedding_models=["logreg"]),
        transfer=transfer,
        runtime=RuntimeSettings(task_runner="dask", dask_address=cluster.scheduler_address),  # type: ignore[attr-defined]
    )
    started = datetime.now(UTC)
    summary = full_pipeline(params)

    assert {row["model"] for row in summary.evaluation.comparison} == {
        "pixels_random_forest",
        "efficientnet_lite0_logreg",
    }
    [line] = logged_lines(started, "Backbone pass on the cluster")
    print(line)
    n_images = 400
    assert f"{-(-n_images // CHUNK)} of {-(-n_images // CHUNK)} chunks computed ({n_images} images)" in line
    pids = {int(pid) for pid in re.findall(r":(\d+)", line.split(" on ", 1)[1].split(" in ")[0])}
    assert pids and pids <= worker_pids(cluster) and os.getpid() not in pids  # on the workers, not here
    # One Prefect API: the workers' task runs went to this test's server, not to servers of their own.
    assert line.endswith(f"reported to {get_current_settings().api.url}")

    # The assembled features are exactly what one process computes alone.
    run_table = RunFolder(summary.run_dir).table
    spec = EmbeddingSpec.of(transfer, params.split.seed)
    alone = compute_embeddings(run_table, spec, tmp_path / "alone", chunk_size=1000)
    [on_cluster] = (tmp_path / "out" / "cache" / "embeddings").glob("*.npz")
    assert np.array_equal(load_embeddings(alone)["clean"], load_embeddings(on_cluster)["clean"])

    # A rerun finds every chunk and the assembled file: nothing is submitted again.
    again = datetime.now(UTC)
    full_pipeline(params)
    assert logged_lines(again, "Backbone pass on the cluster") == []


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_workers_that_cannot_reach_the_paths_or_the_api_are_named(
    prefect_server: None, cluster: object, tmp_path: Path
) -> None:
    from prefect.settings import get_current_settings

    address = cluster.scheduler_address  # type: ignore[attr-defined]
    api = str(get_current_settings().api.url)
    assert check_workers(address, api, [tmp_path], [tmp_path / "out"]) == 2

    with pytest.raises(WorkersCannotReach) as missing:
        check_workers(address, api, [tmp_path / "not-mounted"], [tmp_path / "out"])
    assert "2 of 2 Dask workers" in str(missing.value)
    assert f"cannot read the data directory {tmp_path / 'not-mounted'}" in str(missing.value)
    assert "shared storage" in str(missing.value)

    with pytest.raises(WorkersCannotReach, match=r"cannot reach the Prefect API at http://127\.0\.0\.1:9/api"):
        check_workers(address, "http://127.0.0.1:9/api", [tmp_path], [tmp_path / "out"])

    with pytest.raises(WorkersCannotReach, match="cannot connect to the Dask scheduler at tcp://127.0.0.1:9"):
        check_workers("tcp://127.0.0.1:9", api, [], [], timeout_s=2)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_flow_on_an_unreachable_cluster_fails_before_any_work(
    prefect_server: None, tiny_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.cluster
    from flows.full import full_pipeline

    monkeypatch.setattr(flows.cluster, "CONNECT_TIMEOUT_S", 2)
    params = PipelineParams(
        data=DataSettings(data_dir=tiny_sample, output_dir=tmp_path / "out"),
        runtime=RuntimeSettings(task_runner="dask", dask_address="tcp://127.0.0.1:9"),
    )
    with pytest.raises(WorkersCannotReach, match="cannot connect to the Dask scheduler"):
        full_pipeline(params)
    assert not (tmp_path / "out" / "runs").exists()  # nothing was started


def test_workers_are_pointed_at_the_temporary_server(prefect_server: None) -> None:
    """Without PREFECT_API_URL the settings shipped to the workers name the process's own server
    (else each worker process would start a temporary server and database of its own)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert get_current_settings().api.url is None  # as under `python -m flows.full`
        with workers_api() as url:
            assert url == SubprocessASGIServer().api_url
            assert get_current_settings().api.url == url
        assert get_current_settings().api.url is None
