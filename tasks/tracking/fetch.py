"""A registered model version's files, for ``flows.predict --model models:/living-things-coarse@champion``
(or ``models:/NAME/VERSION``): the version's MLflow run holds the model's own file (skops or
``.keras``), its inputs recipe and metrics.json, which are downloaded into the prediction folder and
then loaded like a run folder's, through `tasks.models.persistence` (nothing is unpickled, no
pyfunc). The store is the one a run records into (`tasks.tracking.store.resolve_uri`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tasks.layout import RunFolder
from tasks.models.recipe import read_recipe
from tasks.tracking.settings import TrackingSettings
from tasks.tracking.store import embedded_db, is_embedded, mlflow_client, quick_requests, resolve_uri

PREFIX = "models:/"
#: ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


class RegisteredModelError(ValueError):
    """The registered model version cannot be found or read; one sentence saying why."""


def is_model_uri(model: str) -> bool:
    return model.startswith(PREFIX)


def find_version(uri: str, output_dir: Path, settings: TrackingSettings = TrackingSettings()) -> tuple[Any, Any]:
    """(client, model version) that ``uri`` names, or `RegisteredModelError`."""
    match = MODEL_URI.match(uri)
    if not match:
        raise RegisteredModelError(f"{uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION")
    store = resolve_uri(settings, output_dir)
    if is_embedded(store, output_dir) and not embedded_db(output_dir).is_file():
        raise RegisteredModelError(
            f"there is no MLflow store at {embedded_db(output_dir)}: train with tracking on first, "
            f"or set MLFLOW_TRACKING_URI to the server that has {uri}"
        )
    try:
        with quick_requests(settings.request_timeout_s):
            client = mlflow_client(store, output_dir)
            name = match["name"]
            if match["alias"]:
                return client, client.get_model_version_by_alias(name, match["alias"])
            return client, client.get_model_version(name, match["version"])
    except Exception as exc:  # MlflowException (no such model, alias or version), an unreachable store
        raise RegisteredModelError(f"{uri} not found in {store}: {str(exc).splitlines()[0][:300]}") from exc


def fetch_version(uri: str, output_dir: Path, folder: Path, settings: TrackingSettings = TrackingSettings()) -> Any:
    """Download the version's model file, inputs recipe and metrics.json into ``folder`` (laid out
    like a run folder); returns the version (its tags name the model and the run folder)."""
    client, version = find_version(uri, output_dir, settings)
    model = (version.tags or {}).get("model")
    if not model or not version.run_id:
        raise RegisteredModelError(f"{uri} (version {version.version}) was not registered by this pipeline")
    run = RunFolder(folder)
    run.models.mkdir(parents=True, exist_ok=True)
    try:
        with quick_requests(settings.request_timeout_s):
            # A single file lands in the destination folder by its base name.
            client.download_artifacts(version.run_id, run.metrics.name, str(run.root))
            client.download_artifacts(version.run_id, f"models/{run.model_inputs(model).name}", str(run.models))
            recipe = read_recipe(run.root, model)
            client.download_artifacts(version.run_id, f"models/{recipe.model_file}", str(run.models))
    except Exception as exc:
        raise RegisteredModelError(f"the files of {uri} (run {version.run_id}) could not be fetched: {exc}") from exc
    return version
