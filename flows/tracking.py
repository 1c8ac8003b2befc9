"""MLflow tracking from the full pipeline's flow (issue 30; the work is in `tasks.tracking`).

`start_tracking` runs first in a run: the ``champion`` alias is put back where ``champion/`` says.
`finish_tracking` runs last, after the gate and the artifacts: one MLflow run named after the run
folder, tagged with the Prefect flow run (its id, and its URL when a Prefect UI is known), the
data fingerprint and source and the git commit; then a Prefect link artifact to the MLflow run.
Every failure is one warning (`tasks.tracking.session`): tracking never fails a run.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect.artifacts import create_link_artifact
from prefect.runtime import flow_run

from flows.params import PipelineParams
from tasks.logs import get_logger
from tasks.progress import check_artifact_key, in_prefect_run
from tasks.results.gate import Decision
from tasks.results.report import build_run_report
from tasks.tracking.session import TrackedRun, TrackingSession

#: Key of the Prefect link artifact to the run's MLflow run.
LINK_KEY = "mlflow-run"


def start_tracking(params: PipelineParams, output_dir: Path) -> TrackingSession:
    """The run's tracking session, with the champion alias reconciled (nothing when tracking is off)."""
    session = TrackingSession(params.tracking, Path(output_dir))
    session.start()
    return session


def prefect_tags() -> dict[str, str]:
    """The Prefect flow run this code runs in: its id, and its UI URL when a Prefect UI is known."""
    if not in_prefect_run():
        return {}
    tags = {"prefect.flow_run_id": str(flow_run.id)}
    if flow_run.root_flow_run_id and str(flow_run.root_flow_run_id) != str(flow_run.id):
        tags["prefect.root_flow_run_id"] = str(flow_run.root_flow_run_id)
    url = str(flow_run.ui_url or "")
    if url.startswith(("http://", "https://")):  # without a known UI Prefect builds "None/flow-runs/..."
        tags["prefect.flow_run_url"] = url
    return tags


def run_report(run_dir: Path, plots: dict[str, Any], extra: dict[str, Any]) -> str | None:
    """The run report as markdown (what the Prefect report artifact shows), or None if it cannot be built."""
    try:
        return build_run_report(run_dir, plots, extra)
    except Exception as exc:  # the report is one artifact among many: the rest is still recorded
        get_logger().warning("MLflow: the run report was not logged (%s: %s)", type(exc).__name__, exc)
        return None


def finish_tracking(
    session: TrackingSession,
    params: PipelineParams,
    run_dir: Path,
    decision: Decision,
    data_fingerprint: str,
    plots: dict[str, Any],
    extra: dict[str, Any],
) -> TrackedRun | None:
    """Record the finished run in MLflow and link it from the Prefect flow run (module docstring)."""
    if not session.active:
        return None
    tags = {
        **prefect_tags(),
        "run_folder": Path(run_dir).name,
        "data_fingerprint": data_fingerprint,
        "data_source": "sample" if params.data.data_dir is None else "directory",
        "target": params.split.target,
    }
    dumped = params.model_dump(mode="json")  # secrets come out masked (SecretStr)
    report = run_report(Path(run_dir), plots, extra)
    tracked = session.finish(Path(run_dir), dumped, asdict(decision), tags, report)
    if tracked is not None and tracked.url and in_prefect_run():
        try:
            create_link_artifact(  # type: ignore[call-arg]  # Prefect adds _sync at run time
                link=tracked.url,
                link_text=f"MLflow run {tracked.run_id}",
                key=check_artifact_key(LINK_KEY),
                description=f"Run {Path(run_dir).name} in MLflow ({session.uri})",
                _sync=True,
            )
        except Exception as exc:  # a link is a convenience: never fail the run for it
            get_logger().warning("MLflow: no Prefect link artifact (%s: %s)", type(exc).__name__, exc)
    return tracked
