"""The registered model ``living-things-<target>``: one version per candidate the gate judged, and
its aliases, which follow ``champion/`` (the source of truth) and never lead it.

A version's source is its MLflow run's ``models`` folder; its tags say which model (``model``),
which run folder (``run_folder``), the gate's verdict (``decision``: promoted or kept) and its
``reason``. The alias ``champion`` is on the version of the model in ``champion/``, and
``challenger`` on the last refused candidate. `reconcile_champion_alias` (every run's start)
puts ``champion`` back where ``champion/`` says: on that run's version, on a version registered
from ``champion/``'s own files when no tracked run has it (a champion promoted while tracking was
off or failing), or nowhere when there is no champion.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.layout import OutputDir
from tasks.results.champion import read_champion
from tasks.tracking.record import model_artifacts

CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
TARGETS = ("coarse", "fine")
#: Longest tag value MLflow stores (a gate's reason is a few sentences).
MAX_TAG_LENGTH = 5000


def registered_name(target: str) -> str:
    return f"living-things-{target}"


def ensure_registered_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException  # defers mlflow: only runs that track need it

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="Best model of each pipeline run judged by the champion gate (flows.full)."
        )


def register_candidate(
    client: Any, name: str, run_id: str, model: str, run_folder: str, decision: Mapping[str, Any]
) -> str:
    """A new version for the gate's candidate, tagged with the verdict; returns its version number."""
    ensure_registered_model(client, name)
    tags = {
        "model": model,
        "run_folder": run_folder,
        "decision": "promoted" if decision.get("promote") else "kept",
        "forced": str(bool(decision.get("forced"))).lower(),
        "reason": str(decision.get("reason", ""))[:MAX_TAG_LENGTH],
    }
    version = client.create_model_version(name, source=f"runs:/{run_id}/models", run_id=run_id, tags=tags)
    return str(version.version)


def versions_of(client: Any, name: str) -> list[Any]:
    from mlflow.exceptions import MlflowException  # defers mlflow: only runs that track need it

    try:
        client.get_registered_model(name)
    except MlflowException:
        return []
    return list(client.search_model_versions(f"name='{name}'", max_results=10_000))


def alias_version(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException  # defers mlflow: only runs that track need it

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def is_version_of(version: Any, run_folder: str, model: str) -> bool:
    tags = version.tags or {}
    return tags.get("run_folder") == run_folder and tags.get("model") == model


def reconcile_champion_alias(client: Any, experiment_id: str, output_dir: Path) -> list[str]:
    """Point ``champion`` at the version of the model in ``champion/`` (module docstring); returns
    what was changed, in words (nothing when the alias already agrees)."""
    record = read_champion(output_dir)
    if record is None:
        changed = []
        for target in TARGETS:
            name = registered_name(target)
            if alias_version(client, name, CHAMPION_ALIAS) is not None:
                client.delete_registered_model_alias(name, CHAMPION_ALIAS)
                changed.append(f"{name}@{CHAMPION_ALIAS} removed: there is no champion")
        return changed
    name, run_folder, model = registered_name(record["target"]), str(record["run"]), str(record["model"])
    current = alias_version(client, name, CHAMPION_ALIAS)
    if current is not None and is_version_of(current, run_folder, model):
        return []
    matching = [v for v in versions_of(client, name) if is_version_of(v, run_folder, model)]
    if matching:
        version = str(max(matching, key=lambda v: int(v.version)).version)
        what = f"{name}@{CHAMPION_ALIAS} moved to version {version} (run {run_folder}, the champion)"
    else:
        version = register_champion_folder(client, experiment_id, output_dir, record)
        what = f"{name}@{CHAMPION_ALIAS} set on version {version}, registered from champion/ (run {run_folder})"
    client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    return [what]


def register_champion_folder(client: Any, experiment_id: str, output_dir: Path, record: Mapping[str, Any]) -> str:
    """A version from ``champion/``'s own files (its model, recipe and metrics), in an MLflow run
    named after the champion's run folder and tagged as imported."""
    champion = OutputDir(output_dir).champion
    run_folder, model = str(record["run"]), str(record["model"])
    created = client.create_run(
        experiment_id, run_name=run_folder, tags={"living_things.imported_from": "champion/", "run_folder": run_folder}
    )
    run_id = str(created.info.run_id)
    try:
        client.log_artifact(run_id, str(champion.metrics))
        for path in model_artifacts(champion.root, [model]).get(model, []):
            client.log_artifact(run_id, str(path), "models")
    finally:
        client.set_terminated(run_id)
    decision = {"promote": True, "forced": record.get("forced"), "reason": "registered from champion/ at a run start"}
    return register_candidate(client, registered_name(str(record["target"])), run_id, model, run_folder, decision)


def apply_decision(client: Any, name: str, version: str, decision: Mapping[str, Any]) -> str:
    """The gate's decision on the version: ``champion`` to a promoted candidate, ``challenger`` to a
    refused one; returns what was done, in words."""
    if decision.get("promote"):
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        return f"{name}@{CHAMPION_ALIAS} on version {version} (promoted)"
    client.set_registered_model_alias(name, CHALLENGER_ALIAS, version)
    return f"{name}@{CHALLENGER_ALIAS} on version {version} (kept the champion)"
