"""One MLflow run per pipeline run: its settings, hold-out scores, files and models.

Named after the run folder. Parameters: every section of the pipeline's parameters, flattened
(``transfer.stage2_epochs``). Metrics: accuracy, macro-F1 and weighted-F1 of every model on the
hold-out (``holdout.<model>.macro_f1``) and of the majority-class reference, the best model's
per-class F1 (``best.f1.<class>``), and the transfer model's epochs as step metrics
(``transfer.stage<n>.<metric>``, step = epoch). Artifacts: metrics.json, the report, the plots,
split.csv, submission.csv, the validation summary and the training history. Models: each model's
own file (skops or ``.keras``) with its inputs recipe under ``models/``, exactly the files the
run folder has, so they load through `tasks.models.persistence` and nothing else (no pickle, no
pyfunc).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from tasks.io import in_chunks, link_or_copy
from tasks.layout import RunFolder
from tasks.models.persistence import KERAS_SUFFIX, SKLEARN_SUFFIX
from tasks.models.recipe import read_recipe

#: MLflow's per-call limits of ``log_batch``.
MAX_PARAMS_PER_CALL = 100
MAX_METRICS_PER_CALL = 1000
#: Longest parameter value MLflow stores.
MAX_PARAM_LENGTH = 6000
#: Characters MLflow accepts in a metric or parameter name.
UNSAFE_NAME = re.compile(r"[^\w\-. /]")
#: Files of the run folder logged as they are (relative path in the run = artifact path).
RUN_FILES = ("metrics.json", "split.csv", "submission.csv", "training_history.json", "resampling.json")


def metric_name(*parts: str) -> str:
    """A dotted metric name whose parts keep only characters MLflow accepts (others become ``_``)."""
    return ".".join(UNSAFE_NAME.sub("_", str(part)) for part in parts)


def flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"transfer": {"stage2_epochs": 3}}`` -> ``{"transfer.stage2_epochs": "3"}``; lists as JSON,
    None as ``none`` (what the command line takes)."""
    flat: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            text = "none" if value is None else json.dumps(value) if isinstance(value, list | tuple) else str(value)
            flat[name] = text[:MAX_PARAM_LENGTH]
    return flat


def holdout_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Hold-out scores of every model and of the majority-class reference, and the best model's per-class F1."""
    found: dict[str, float] = {}
    for model, scores in metrics["models"].items():
        for key in ("accuracy", "macro_f1", "weighted_f1"):
            found[metric_name("holdout", model, key)] = float(scores[key])
    for key, value in metrics.get("majority_reference", {}).items():
        found[metric_name("holdout", "majority_reference", key)] = float(value)
    best = metrics["best_model"]
    found[metric_name("best", "macro_f1")] = float(metrics["models"][best]["macro_f1"])
    for row in metrics["models"][best].get("per_class", []):
        found[metric_name("best", "f1", row["name"])] = float(row["f1"])
    return found


def history_metrics(history: Mapping[str, Any]) -> list[tuple[str, float, int]]:
    """(name, value, step) for every numeric value of every epoch of ``training_history.json``."""
    rows = []
    for epoch in history.get("epochs", []):
        stage, step = epoch.get("stage", 1), int(epoch.get("epoch", 0))
        for key, value in epoch.items():
            if key in ("stage", "epoch") or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            rows.append((metric_name("transfer", f"stage{stage}", key), float(value), step))
    return rows


def model_artifacts(run_dir: Path, models: Iterable[str]) -> dict[str, list[Path]]:
    """Model -> its file and inputs recipe, for each model whose recipe names a safe file that exists.
    Anything else in ``models/`` (checkpoints, an older version's ``.joblib``) is never logged."""
    run, found = RunFolder(run_dir), {}
    for model in models:
        try:
            recipe = read_recipe(run.root, model)
        except Exception:  # no recipe (an older run), or a damaged one: the model is not logged
            continue
        path = run.models / recipe.model_file
        if path.suffix in (SKLEARN_SUFFIX, KERAS_SUFFIX) and path.is_file():
            found[model] = [path, run.model_inputs(model)]
    return found


def log_pipeline_run(
    client: Any,
    experiment_id: str,
    run_dir: Path,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    report: str | None = None,
    log_models: bool = True,
) -> tuple[str, list[str]]:
    """Record the finished run folder as one MLflow run; returns its id and the models logged."""
    from mlflow.entities import Metric, Param, RunTag  # defers mlflow: only runs that track need it

    run = RunFolder(run_dir)
    metrics = json.loads(run.metrics.read_text(encoding="utf-8"))
    created = client.create_run(experiment_id, run_name=run.root.name, tags=dict(tags))
    run_id = str(created.info.run_id)
    status = "FAILED"
    try:
        now = int(created.info.start_time or 0)
        flat = [Param(key, value) for key, value in flatten(params).items()]
        for param_chunk in in_chunks(flat, MAX_PARAMS_PER_CALL):
            client.log_batch(run_id, params=param_chunk)
        values = [Metric(k, v, now, 0) for k, v in holdout_metrics(metrics).items()]
        if run.training_history.is_file():
            history = json.loads(run.training_history.read_text(encoding="utf-8"))
            values += [Metric(k, v, now, step) for k, v, step in history_metrics(history)]
            if "published" in history:
                client.set_tag(run_id, "transfer.published", str(history["published"]))
        for metric_chunk in in_chunks(values, MAX_METRICS_PER_CALL):
            client.log_batch(run_id, metrics=metric_chunk)
        client.log_batch(run_id, tags=[RunTag("best_model", str(metrics["best_model"]))])
        log_files(client, run_id, run, report)
        logged = []
        if log_models:
            local = local_artifacts(created.info.artifact_uri)
            for model, paths in model_artifacts(run.root, metrics["models"]).items():
                for path in paths:
                    log_model_file(client, run_id, path, local)
                logged.append(model)
        status = "FINISHED"
        return run_id, logged
    finally:
        client.set_terminated(run_id, status=status)


def local_artifacts(artifact_uri: str | None) -> Path | None:
    """The run's artifact folder when it is on this machine (the embedded store), else None."""
    parsed = urlparse(artifact_uri or "")
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def log_model_file(client: Any, run_id: str, path: Path, local: Path | None) -> None:
    """One model file under ``models/``: hard-linked into a local artifact folder (a model is tens of
    MB, and nothing rewrites a finished run's files: they are replaced, never changed in place),
    copied where links are impossible, uploaded to a server."""
    if local is None:
        client.log_artifact(run_id, str(path), "models")
        return
    link_or_copy(path, local / "models" / path.name)


def log_files(client: Any, run_id: str, run: RunFolder, report: str | None) -> None:
    """The run's result files, plots, validation summary and report (markdown)."""
    for name in RUN_FILES:
        path = run.root / name
        if path.is_file():
            client.log_artifact(run_id, str(path))
    if run.plots.is_dir():
        client.log_artifacts(run_id, str(run.plots), "plots")
    for path in (run.validation_summary, run.validation_report, run.champion_decision):
        if path.is_file():
            folder = "validation" if path.parent == run.validation else None
            client.log_artifact(run_id, str(path), folder)
    if report:
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "report.md"
            path.write_text(report, encoding="utf-8")
            client.log_artifact(run_id, str(path))
