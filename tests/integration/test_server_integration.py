"""Against a real Prefect server: serve the deployments, trigger a run, check schedules and caching.

Starts `prefect server start` on 127.0.0.1 (isolated home and database) and
`python -m deployments.serve` as subprocesses, triggers the manual deployment twice with a tiny
sample, and checks what a user would see in the UI: a completed run with its artifacts and run
folder, upcoming runs of the scheduled deployments, and cached steps on the identical rerun.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.helpers import REPO  # noqa: E402

T = TypeVar("T")

TINY_PARAMS: dict[str, Any] = {
    "data": {"sample_per_family": 4, "sample_test_per_family": 1},
    "transfer": {"image_size": 32, "stage1_epochs": 5, "stage2_epochs": 1, "weights": "random"},
    "baselines": {"rf_n_estimators": 20, "embedding_models": ["logreg"]},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.5,
    alive: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail with the process log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"process exited ({alive.returncode}) while waiting for {what}:\n{tail(log)}")
        try:
            value = check()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}:\n{tail(log)}")


def tail(log: Path | None, lines: int = 60) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A subprocess in its own process group (so its children die with it)."""
    with open(log, "wb") as handle:
        return subprocess.Popen(
            args, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL what is left."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group (flow-run subprocesses)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(timeout=10)


def flow_run_tree(client: Any, flow_run_id: Any) -> list[Any]:
    """The flow run and all its subflow runs (artifacts and task runs belong to the run that made them)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    ids, frontier = [flow_run_id], [flow_run_id]
    while frontier:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier))
        )
        frontier = [child.id for child in children if child.id not in ids]
        ids += frontier
    return ids


@pytest.fixture()
def prefect_api(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """A real `prefect server start` on a free port with its own home; yields (api_url, env, log)."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    env.pop("PREFECT_PROFILES_PATH", None)
    log = tmp_path / "server.log"
    server = start(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, log
    )
    try:

        def healthy() -> bool:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                return response.status == 200

        wait_for(healthy, 120, "the Prefect server's /api/health", alive=server, log=log)
        yield api_url, env, log
    finally:
        stop(server)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_served_deployments_run_schedule_and_cache(
    prefect_api: tuple[str, dict[str, str], Path], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url, env, _ = prefect_api
    out = tmp_path / "out"
    serve_log = tmp_path / "serve.log"
    server = start([sys.executable, "-m", "deployments.serve", "--output-dir", str(out)], env, serve_log)
    params = {**TINY_PARAMS, "data": {**TINY_PARAMS["data"], "output_dir": str(out)}}
    try:
        with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            names = ["living-things-full/manual", "living-things-full/weekly-retrain", "validate/daily-validate"]
            deployments = {
                name: wait_for(
                    lambda name=name: client.read_deployment_by_name(name),
                    120,
                    f"deployment {name}",
                    alive=server,
                    log=serve_log,
                )
                for name in names
            }

            started = time.monotonic()
            first = run_deployment(
                "living-things-full/manual", parameters={"params": params}, timeout=240, poll_interval=1
            )
            first_seconds = time.monotonic() - started
            assert first.state is not None and first.state.is_completed(), (first.state, tail(serve_log, 120))

            # Artifacts: the validation report (published by the validation subflow) at least.
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=flow_run_tree(client, first.id))
                )
            )
            assert artifacts, "the run published no artifacts"
            assert "validation-report" in {a.key for a in artifacts}
            submissions = sorted((out / "runs").glob("*/submission.csv"))
            assert len(submissions) == 1 and submissions[0].stat().st_size > 0

            # The scheduled deployments have upcoming runs (the server's scheduler is on).
            def upcoming(deployment_id: Any) -> list[Any]:
                return client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                    flow_run_filter=FlowRunFilter(
                        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
                    ),
                )

            for name in names[1:]:
                runs = wait_for(lambda d=deployments[name]: upcoming(d.id), 60, f"scheduled runs of {name}")
                assert all(run.expected_start_time is not None for run in runs)
            assert not upcoming(deployments[names[0]].id)  # the manual deployment has no schedule

            # An identical rerun is served from the cache.
            started = time.monotonic()
            second = run_deployment(
                "living-things-full/manual", parameters={"params": params}, timeout=240, poll_interval=1
            )
            second_seconds = time.monotonic() - started
            assert second.state is not None and second.state.is_completed(), (second.state, tail(serve_log, 120))
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_tree(client, second.id)))
            )
            states = {run.name: run.state.name for run in task_runs if run.state is not None}
            print(f"first run {first_seconds:.1f}s, cached rerun {second_seconds:.1f}s; task states: {states}")
            assert "Cached" in states.values(), states
            assert len(sorted((out / "runs").glob("*/submission.csv"))) == 2
    finally:
        stop(server)


def prefect_cli(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"prefect {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_prefect_yaml_deploys_to_the_process_work_pool(prefect_api: tuple[str, dict[str, str], Path]) -> None:
    """The README's work-pool commands, verbatim: create the pool and the GPU queue, `prefect deploy --all`."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url, env, _ = prefect_api
    prefect_cli("work-pool", "create", "living-things-process", "--type", "process", env=env)
    prefect_cli("work-queue", "create", "gpu", "--pool", "living-things-process", "--limit", "1", env=env)
    prefect_cli("--no-prompt", "deploy", "--all", env=env)

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        deployments = {f"{d.entrypoint}/{d.name}": d for d in client.read_deployments()}
        assert set(deployments) == {
            "flows.full.full_pipeline/manual",
            "flows.full.full_pipeline/weekly-retrain",
            "flows.validate.validate/daily-validate",
        }
        for key, deployment in deployments.items():
            assert deployment.work_pool_name == "living-things-process"
            training = "full_pipeline" in key
            assert deployment.work_queue_name == ("gpu" if training else "default")
            limit = deployment.global_concurrency_limit
            assert (limit.limit if limit else None) == (1 if training else None)
            assert "params" in deployment.parameter_openapi_schema["properties"]
        weekly = deployments["flows.full.full_pipeline/weekly-retrain"]
        assert [s.schedule.cron for s in weekly.schedules] == ["0 3 * * 1"]
        assert not deployments["flows.full.full_pipeline/manual"].schedules
        queues = {q.name: q.concurrency_limit for q in client.read_work_queues(work_pool_name="living-things-process")}
        assert queues["gpu"] == 1
