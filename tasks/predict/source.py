"""Which model a batch prediction uses: the champion, or a named run's best model.

The champion is read through a snapshot: under ``.champion.lock`` (the lock every promotion holds
from its decision to its swap), an interrupted promotion is first finished or undone
(`tasks.results.promotion.recover_champion`, as every run does), then champion.json,
metrics.json and the model's files are hard-linked (copied where links are impossible) into the
prediction folder's ``model/``. A promotion that swaps the champion while the images are being
classified cannot mix two models' files, and the prediction folder keeps the exact model it used.
The lock is held for milliseconds, except while a promotion's exported-model check runs (then
the prediction waits for it). A run folder is read in place: nothing rewrites a finished run's models.

A champion that cannot serve (a model file listed in champion.json deleted, a garbled
``registry.jsonl`` line) is a `PredictionError` naming the file under ``champion/`` or the line:
an input error, so the flow ends with that one sentence (flows.failures), checked before any work
(`check_request`) and again under the lock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.io import link_or_copy
from tasks.layout import OutputDir, PredictionFolder, RunFolder
from tasks.logs import get_logger
from tasks.results.champion import model_files, read_champion
from tasks.results.promotion import ChampionError, champion_lock, read_json, recover_champion
from tasks.results.registry import RegistryError, read_registry
from tasks.tracking.fetch import RegisteredModelError, fetch_version, find_version, is_model_uri

#: The ``model`` parameter's value that names the current champion.
CHAMPION = "champion"


@dataclass(frozen=True)
class ModelSource:
    """The model a prediction uses: ``source`` ``champion`` (read from a snapshot ``folder`` of the
    champion), ``run`` (a run folder) or ``registry`` (a registered MLflow version's files, downloaded
    into the prediction folder: `tasks.tracking.fetch`), the model's name and the run that trained it."""

    source: str
    folder: str
    model: str
    run: str


class PredictionError(ValueError):
    """No model to predict with (no champion, unknown run); one sentence that says what to do."""


def run_folder_of(output_dir: Path, run_id: str) -> RunFolder:
    """The finished run ``run_id`` under ``<output-dir>/runs/``, or `PredictionError`."""
    runs = OutputDir(output_dir).runs
    if not run_id or Path(run_id).name != run_id or run_id.startswith("."):
        raise PredictionError(f"--model must be 'champion' or a run id (a folder name under {runs}), got {run_id!r}")
    run = RunFolder(runs / run_id)
    if not run.root.is_dir():
        raise PredictionError(f"there is no run {run_id!r} under {runs}; pass --model champion or an existing run id")
    if not run.metrics.is_file():
        raise PredictionError(f"run {run_id} has no {run.metrics.name} (it did not finish); pick a finished run")
    return run


@contextlib.contextmanager
def registered_model_errors() -> Iterator[None]:
    """A registered model that cannot be found or fetched is the user's to fix: one sentence."""
    try:
        yield
    except RegisteredModelError as exc:
        raise PredictionError(str(exc)) from exc


def champion_missing(output_dir: Path) -> str:
    return (
        f"there is no champion in {OutputDir(output_dir).champion.root} yet: train one first "
        f"(python -m flows.full --output-dir {output_dir}) or pass --model RUN_ID"
    )


def check_request(output_dir: Path, model: str) -> None:
    """Fail fast (before any work) when the model asked for does not exist; writes nothing."""
    if model == CHAMPION:
        if not OutputDir(output_dir).champion.champion_record.is_file():
            raise PredictionError(champion_missing(output_dir))
        check_champion(output_dir)
        return
    if is_model_uri(model):  # a registered MLflow model version (tasks.tracking.fetch)
        with registered_model_errors():
            find_version(model, Path(output_dir))
        return
    run_folder_of(output_dir, model)


@contextlib.contextmanager
def champion_read_errors(output_dir: Path) -> Iterator[None]:
    """Turn a damaged registry or champion record into `PredictionError`: the user's to fix, so the
    flow ends with its one sentence (an input error) instead of a task's and a flow's tracebacks."""
    try:
        yield
    except RegistryError as exc:
        raise PredictionError(
            f"{exc}. The registry is the champion's audit trail: repair or remove that line (keep a copy), "
            f"or pass --model RUN_ID to predict with a run's model without the champion"
        ) from exc
    except ChampionError as exc:
        raise PredictionError(f"the champion in {OutputDir(output_dir).champion.root} cannot be used: {exc}") from exc


def missing_champion_files(champion_root: Path, record: Mapping[str, Any]) -> list[str]:
    """The files champion.json lists (its ``model_files``, and metrics.json with them) that are not in
    ``champion_root``, relative to it: a champion missing one cannot predict (validate warns too).
    A record without ``model_files`` (an older version's) lists nothing to check."""
    if "model_files" not in record:
        return []
    listed = [RunFolder(champion_root).metrics.name, *(str(name) for name in record.get("model_files") or [])]
    return [name for name in listed if not (Path(champion_root) / name).is_file()]


def check_champion_files(output_dir: Path, record: Mapping[str, Any]) -> None:
    """`PredictionError` naming ``champion/`` and each missing file (`missing_champion_files`), and the
    champion's own run when it still has the model, instead of a load error about a snapshot's copy."""
    output = OutputDir(output_dir)
    missing = missing_champion_files(output.champion.root, record)
    if not missing and record.get("model_files", True):  # no key: an older version's record, not checked
        return
    run = str(record.get("run", ""))
    fallback = f"--model {run}" if run and (output.runs / run / "models").is_dir() else "--model RUN_ID"
    what = f"{', '.join(missing)} missing" if missing else "its champion.json lists no model files (an old run)"
    raise PredictionError(
        f"the champion in {output.champion.root} cannot predict: {what} "
        f"(model {record.get('model')}, run {run or '?'}). Promote a run again (python -m flows.full "
        f"--output-dir {output_dir} --force-promote) or pass {fallback}"
    )


def registry_settled(output_dir: Path) -> bool:
    """Whether registry.jsonl ends with a whole line, so that reading it without the lock is fair: a
    last line cut short (a crash, or an append under way) is for the recovery under the lock to judge."""
    path = OutputDir(output_dir).registry
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return True
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"
    except FileNotFoundError:
        return True


def check_champion(output_dir: Path) -> None:
    """The champion's record, files and registry, read without the lock before any work (a
    `PredictionError` saying what to fix); `snapshot_champion` checks the same under the lock."""
    with champion_read_errors(output_dir):
        if registry_settled(output_dir):
            read_registry(output_dir)
        record = read_champion(output_dir)
    if record is None:
        raise PredictionError(champion_missing(output_dir))
    check_champion_files(output_dir, record)


def snapshot_champion(output_dir: Path, prediction_dir: Path) -> ModelSource:
    """Freeze the champion's record, metrics and model files into the prediction folder (module docstring)."""
    output = OutputDir(output_dir)
    snapshot = PredictionFolder(prediction_dir).model_snapshot
    with champion_lock(output.root), champion_read_errors(output.root):
        for action in recover_champion(output.root):
            get_logger().warning("Champion recovery: %s", action)
        record = read_champion(output.root)
        if record is None:
            raise PredictionError(champion_missing(output_dir))
        check_champion_files(output.root, record)
        champion = output.champion
        files = [champion.champion_record, champion.metrics, *model_files(champion.root, record["model"])]
        for path in files:
            link_or_copy(path, snapshot.root / path.relative_to(champion.root))
    return ModelSource(CHAMPION, str(snapshot.root), str(record["model"]), str(record["run"]))


def take_model(output_dir: Path, model: str, prediction_dir: Path) -> ModelSource:
    """The folder to load from, the model's name and its run: a champion snapshot or a run folder."""
    if model == CHAMPION:
        return snapshot_champion(output_dir, prediction_dir)
    if is_model_uri(model):  # downloaded into the prediction folder, loaded like a run folder's files
        snapshot = PredictionFolder(prediction_dir).model_snapshot.root
        with registered_model_errors():
            version = fetch_version(model, Path(output_dir), snapshot)
        return ModelSource("registry", str(snapshot), version.tags["model"], version.tags.get("run_folder", model))

    run = run_folder_of(output_dir, model)
    best = read_json(run.metrics).get("best_model")
    if not isinstance(best, str):
        raise PredictionError(f"{run.metrics} names no best_model; pick another run")
    return ModelSource("run", str(run.root), best, run.root.name)
