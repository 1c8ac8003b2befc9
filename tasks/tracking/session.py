"""What a pipeline run asks of tracking: `TrackingSession.start` (reconcile the champion alias with
``champion/``) and `TrackingSession.finish` (record the run, register the gate's candidate, move
the aliases). Tracking never breaks training: the first failure of either (an unreachable server,
a locked or damaged database, any MLflow error) is ONE warning, tracking is off for the rest of
the run, and the run goes on with its files complete.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tasks.layout import RunFolder
from tasks.logs import get_logger
from tasks.tracking.record import log_pipeline_run
from tasks.tracking.registry import apply_decision, reconcile_champion_alias, register_candidate, registered_name
from tasks.tracking.settings import TrackingSettings
from tasks.tracking.store import experiment_id, mlflow_client, quick_requests, resolve_uri, run_url, ui_url

T = TypeVar("T")
#: The repository of this code, for the git commit tag (absent when installed from a wheel).
REPO = Path(__file__).resolve().parents[2]


def git_commit(repo: Path = REPO) -> str | None:
    """The code's git commit, or None (not a git checkout, or git missing)."""
    if not (repo / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


@dataclass(frozen=True)
class TrackedRun:
    """Where a pipeline run was recorded."""

    run_id: str
    experiment_id: str
    url: str | None
    models: list[str]
    version: str | None


@dataclass
class TrackingSession:
    """Tracking for one pipeline run into ``settings``'s store (module docstring)."""

    settings: TrackingSettings
    output_dir: Path
    failed: bool = False
    seconds: float = 0.0
    _client: Any = field(default=None, repr=False)
    _experiment: str | None = None

    @property
    def uri(self) -> str:
        return resolve_uri(self.settings, self.output_dir)

    @property
    def active(self) -> bool:
        return self.settings.enabled and not self.failed

    def guarded(self, what: str, action: Callable[[], T]) -> T | None:
        """``action()``, or None with one warning (the session's first failure) when it raises."""
        if not self.active:
            return None
        started = time.monotonic()
        try:
            with quick_requests(self.settings.request_timeout_s):
                return action()
        except Exception as exc:  # any MLflow, database or network error: tracking must not fail the run
            self.failed = True
            get_logger().warning(
                "MLflow tracking is off for the rest of this run (%s at %s failed: %s: %s); the run's files are "
                "complete and champion/ is unaffected.",
                what,
                self.uri,
                type(exc).__name__,
                str(exc).splitlines()[0][:300] if str(exc) else "",
            )
            return None
        finally:
            self.seconds += time.monotonic() - started

    def connect(self) -> tuple[Any, str]:
        if self._client is None or self._experiment is None:
            self._client = mlflow_client(self.uri, self.output_dir)
            self._experiment = experiment_id(self._client, self.settings.experiment, self.uri, self.output_dir)
        return self._client, self._experiment

    def start(self) -> list[str]:
        """Put the ``champion`` alias where ``champion/`` says (what changed, in words)."""

        def reconcile() -> list[str]:
            client, experiment = self.connect()
            return reconcile_champion_alias(client, experiment, self.output_dir)

        changed = self.guarded("reconciling the champion alias", reconcile) or []
        for line in changed:
            get_logger().info("MLflow: %s", line)
        return changed

    def finish(
        self,
        run_dir: Path,
        params: Mapping[str, Any],
        decision: Mapping[str, Any],
        tags: Mapping[str, str],
        report: str | None = None,
    ) -> TrackedRun | None:
        """Record the finished run folder, register its best model as a version and apply the gate's decision."""
        return self.guarded("recording the run", lambda: self._finish(Path(run_dir), params, decision, tags, report))

    def _finish(
        self,
        run_dir: Path,
        params: Mapping[str, Any],
        decision: Mapping[str, Any],
        tags: Mapping[str, str],
        report: str | None,
    ) -> TrackedRun:
        started = time.monotonic()
        client, experiment = self.connect()
        commit = git_commit()
        all_tags = {**tags, **({"git_commit": commit} if commit else {})}
        run_id, models = log_pipeline_run(
            client, experiment, run_dir, params, all_tags, report, log_models=self.settings.log_models
        )
        metrics = json.loads(RunFolder(run_dir).metrics.read_text(encoding="utf-8"))
        best, version = str(metrics["best_model"]), None
        if best in models:
            name = registered_name(str(metrics["target"]))
            version = register_candidate(client, name, run_id, best, run_dir.name, decision)
            get_logger().info("MLflow: %s", apply_decision(client, name, version, decision))
        for line in reconcile_champion_alias(client, experiment, self.output_dir):
            get_logger().info("MLflow: %s", line)
        url = run_url(ui_url(self.settings, self.uri), experiment, run_id)
        get_logger().info(
            "MLflow run %s recorded in %s%s (tracking took %.1f s in all)",
            run_id,
            self.uri,
            f" ({url})" if url else "",
            self.seconds + time.monotonic() - started,
        )
        return TrackedRun(run_id, experiment, url, models, version)
