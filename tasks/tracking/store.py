"""Which MLflow store a run is recorded in, and a client for it.

The default store is embedded, needing no server: ``sqlite:///<output-dir>/mlflow.db`` with the
artifacts beside it in ``<output-dir>/mlartifacts/`` (MLflow's ``./mlruns`` file store is
deprecated and raises). ``--tracking.uri`` or ``$MLFLOW_TRACKING_URI`` names another (a team
server). Both paths are named here, not in `tasks.layout`, because only tracking reads them; both
are checked against planted symbolic links like every other path in the output directory.

MLflow is imported only inside `mlflow_client` (a second or more; most callers never need it).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.confine import check_confined
from tasks.io import exclusive_lock
from tasks.tracking.settings import TrackingSettings

#: The embedded store's database and artifact folder, under the output directory.
DB_NAME = "mlflow.db"
ARTIFACTS_NAME = "mlartifacts"
#: Where `mlflow ui` serves by default (what `make mlflow-ui` starts).
DEFAULT_UI_URL = "http://127.0.0.1:5000"


def embedded_db(output_dir: Path) -> Path:
    return Path(output_dir).resolve() / DB_NAME


def embedded_artifacts(output_dir: Path) -> Path:
    return Path(output_dir).resolve() / ARTIFACTS_NAME


def resolve_uri(settings: TrackingSettings, output_dir: Path) -> str:
    """``--tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else the embedded SQLite store."""
    given = settings.uri or os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return given or f"sqlite:///{embedded_db(output_dir)}"


def is_embedded(uri: str, output_dir: Path) -> bool:
    return uri == f"sqlite:///{embedded_db(output_dir)}"


def ui_url(settings: TrackingSettings, uri: str) -> str | None:
    """Where a person opens the MLflow UI: the setting, a server's own URL, or the default `mlflow ui`."""
    if settings.ui_url:
        return settings.ui_url.rstrip("/")
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return DEFAULT_UI_URL if uri.startswith("sqlite:") else None


def run_url(base: str | None, experiment_id: str, run_id: str) -> str | None:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if base else None


@contextlib.contextmanager
def quick_requests(timeout_s: int) -> Iterator[None]:
    """No retries and a short timeout for HTTP requests to a tracking server, unless the user set
    them: an unreachable server costs one timeout and one warning, not minutes of backoff. MLflow
    reads these at each request; the previous values come back afterwards."""
    wanted = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s),
        "MLFLOW_DISABLE_TELEMETRY": "true",  # a pipeline run does not report usage
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # the run's log, not a terminal
    }
    before = {key: os.environ.get(key) for key in wanted}
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                os.environ.pop(key, None)


def mlflow_client(uri: str, output_dir: Path) -> Any:
    """An ``MlflowClient`` on ``uri`` (tracking and registry alike). For the embedded store the
    database path is checked for a planted link first (`tasks.confine`)."""
    if is_embedded(uri, output_dir):
        check_confined(embedded_db(output_dir))
        check_confined(embedded_artifacts(output_dir))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # read when mlflow is imported
    from mlflow import MlflowClient  # defers mlflow (a second or more): only runs that track need it

    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):  # "Creating initial MLflow database tables"
        logging.getLogger(name).setLevel(logging.WARNING)
    database = sqlite_database(uri)
    if database is None:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    # Two processes opening a new SQLite store at once both ran MLflow's schema migration, and one
    # failed ("duplicate column name"): creating and first touching a store take turns on a lock.
    with exclusive_lock(database.with_name(database.name + ".lock")):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    return client


def sqlite_database(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``sqlite:////abs/path`` or a relative one), else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :].split("?", 1)[0]) if uri.startswith(prefix) else None


def experiment_id(client: Any, name: str, uri: str, output_dir: Path) -> str:
    """The experiment's id, created on first use (the embedded store's artifacts beside its database;
    a server chooses its own artifact location)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location(uri, output_dir)))
    except Exception:  # another process created it a moment ago (a unique name): use that one
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def artifact_location(uri: str, output_dir: Path) -> str | None:
    """Where a new experiment keeps its artifacts: beside an SQLite database (the embedded one or
    another a user named; MLflow's default would be ``./mlruns`` in whatever folder the run
    started from); a server chooses its own (None)."""
    if is_embedded(uri, output_dir):
        return embedded_artifacts(output_dir).as_uri()
    database = sqlite_database(uri)
    return (database.resolve().parent / ARTIFACTS_NAME).as_uri() if database is not None else None
