"""Against a real Prefect server: serve the deployments, trigger a run, check schedules and caching.

Starts `prefect server start` on 127.0.0.1 (isolated home and database) and
`python -m deployments.serve` as subprocesses, triggers the two training deployments at once with
a tiny sample, and checks what a user would see in the UI: completed runs that never trained at the
same time (the global `training` limit), their artifacts and run folders, upcoming runs of the
scheduled deployments, cached steps on an identical rerun, and the predict deployment classifying
the test images as the champion's submission does.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.helpers import REPO
from tests.integration.server import flow_run_tree, start, stop, tail, wait_for

TINY_PARAMS: dict[str, Any] = {
    "data": {"sample_per_family": 4, "sample_test_per_family": 1},
    "transfer": {"image_size": 32, "stage1_epochs": 5, "stage2_epochs": 1, "weights": "random"},
    "baselines": {"rf_n_estimators": 20, "embedding_models": ["logreg"]},
}


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
            names = [
                "living-things-full/manual",
                "living-things-full/weekly-retrain",
                "validate/daily-validate",
                "living-things-predict/predict",
            ]
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

            # Two training runs of different deployments, on different output directories (so the
            # output-dir lock cannot be what serialises them), triggered at once: the global
            # `training` limit lets one train at a time.
            other = {**params, "data": {**params["data"], "output_dir": str(tmp_path / "other")}}
            started = time.monotonic()
            first, rival = (
                run_deployment(name, parameters={"params": p}, timeout=0)
                for name, p in (("living-things-full/manual", params), ("living-things-full/weekly-retrain", other))
            )
            first, rival = (
                wait_for(
                    lambda run=run: (r := client.read_flow_run(run.id)).state.is_final() and r,
                    360,
                    f"flow run {run.name}",
                    alive=server,
                    log=serve_log,
                    interval=1,
                )
                for run in (first, rival)
            )
            first_seconds = time.monotonic() - started
            for run in (first, rival):
                assert run.state.is_completed(), (run.state, tail(serve_log, 120))
            spans = sorted(training_span(client, run.id) for run in (first, rival))
            print(
                f"training spans (s since the first start): {[(round(a - spans[0][0]), round(b - spans[0][0])) for a, b in spans]}"
            )
            assert spans[0][1] <= spans[1][0], f"two training runs overlapped: {spans}"
            assert "Got the 'training' slot" in run_logs(client, rival.id)

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

            for name in names[1:3]:  # the scheduled ones
                runs = wait_for(lambda d=deployments[name]: upcoming(d.id), 60, f"scheduled runs of {name}")
                assert all(run.expected_start_time is not None for run in runs)
            assert not upcoming(deployments[names[0]].id) and not upcoming(deployments[names[3]].id)  # on demand only

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

            # The predict deployment classifies the sample's test images with the champion: the
            # classes of the champion's own submission.
            test_csv = out / "sample" / "public" / "test.csv"
            predicted = run_deployment(
                "living-things-predict/predict",
                parameters={"params": {"images": str(test_csv), "data": {"output_dir": str(out)}}},
                timeout=240,
                poll_interval=1,
            )
            assert predicted.state is not None and predicted.state.is_completed(), (predicted.state, tail(serve_log))
            (written,) = (out / "predictions").glob("*/predictions.csv")
            rows = pd.read_csv(written, dtype={"filename": str})
            submission = pd.read_csv(out / "champion" / "submission.csv", dtype={"filename": str})
            assert rows["filename"].tolist() == submission["filename"].tolist()
            assert rows["class_index"].astype(int).tolist() == submission["coarse"].tolist()
    finally:
        stop(server)


def training_span(client: Any, flow_run_id: Any) -> tuple[float, float]:
    """When a training run's first task started and its last task ended (epoch seconds)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    task_runs = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_tree(client, flow_run_id)))
    )
    starts = [run.start_time.timestamp() for run in task_runs if run.start_time]
    ends = [run.end_time.timestamp() for run in task_runs if run.end_time]
    assert starts and ends, f"flow run {flow_run_id} ran no tasks"
    return min(starts), max(ends)


def run_logs(client: Any, flow_run_id: Any) -> str:
    """Every log line of a flow run, joined."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(log.message for log in logs)


def prefect_cli(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"prefect {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_prefect_yaml_deploys_to_the_process_work_pool(prefect_api: tuple[str, dict[str, str], Path]) -> None:
    """The README's work-pool commands, verbatim: create the pool and the GPU queue, `prefect deploy --all`."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url, env, _ = prefect_api
    prefect_cli("work-pool", "create", "living-things-process", "--type", "process", env=env)
    prefect_cli("work-queue", "create", "gpu", "--pool", "living-things-process", env=env)
    prefect_cli("gcl", "create", "training", "--limit", "1", env=env)
    deploy_output = prefect_cli("--no-prompt", "deploy", "--all", env=env)
    assert "FutureWarning" not in deploy_output

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        deployments = {f"{d.entrypoint}/{d.name}": d for d in client.read_deployments()}
        assert set(deployments) == {  # named apart from the served ones, so neither takes over the other
            "flows.full.full_pipeline/manual-pool",
            "flows.full.full_pipeline/weekly-retrain-pool",
            "flows.validate.validate/daily-validate-pool",
            "flows.predict.predict/predict-pool",
        }
        for key, deployment in deployments.items():
            assert deployment.work_pool_name == "living-things-process"
            training = "full_pipeline" in key
            assert deployment.work_queue_name == ("gpu" if training else "default")
            limit = deployment.global_concurrency_limit
            assert (limit.limit if limit else None) == (1 if training else None)
            assert "params" in deployment.parameter_openapi_schema["properties"]
        weekly = deployments["flows.full.full_pipeline/weekly-retrain-pool"]
        assert [s.schedule.cron for s in weekly.schedules] == ["0 3 * * 1"]
        assert not deployments["flows.full.full_pipeline/manual-pool"].schedules
        queues = {q.name for q in client.read_work_queues(work_pool_name="living-things-process")}
        assert "gpu" in queues
        assert client.read_global_concurrency_limit_by_name("training").limit == 1
