"""Which model a batch prediction uses: the champion, or a named run's best model.

The champion is read through a snapshot: under ``.champion.lock`` (the lock every promotion holds
from its decision to its swap), an interrupted promotion is first finished or undone
(`tasks.results.promotion.recover_champion`, as every run does), then champion.json,
metrics.json and the model's files are hard-linked (copied where links are impossible) into the
prediction folder's ``model/``. A promotion that swaps the champion while the images are being
classified cannot mix two models' files, and the prediction folder keeps the exact model it used.
The lock is held for milliseconds, except while a promotion's exported-model check runs (then
the prediction waits for it). A run folder is read in place: nothing rewrites a finished run's models.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from tasks.layout import OutputDir, PredictionFolder, RunFolder
from tasks.logs import get_logger

#: The ``model`` parameter's value that names the current champion.
CHAMPION = "champion"


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
        return
    run_folder_of(output_dir, model)


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link (no extra disk, survives the source's deletion), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def snapshot_champion(output_dir: Path, prediction_dir: Path) -> dict[str, Any]:
    """Freeze the champion's record, metrics and model files into the prediction folder (module docstring)."""
    from tasks.results.champion import model_files, read_champion
    from tasks.results.promotion import champion_lock, recover_champion

    output = OutputDir(output_dir)
    snapshot = PredictionFolder(prediction_dir).model_snapshot
    with champion_lock(output.root):
        for action in recover_champion(output.root):
            get_logger().warning("Champion recovery: %s", action)
        record = read_champion(output.root)
        if record is None:
            raise PredictionError(champion_missing(output_dir))
        champion = output.champion
        files = [champion.champion_record, champion.metrics, *model_files(champion.root, record["model"])]
        for path in files:
            link_or_copy(path, snapshot.root / path.relative_to(champion.root))
    return {"source": CHAMPION, "folder": str(snapshot.root), "model": str(record["model"]), "run": str(record["run"])}


def take_model(output_dir: Path, model: str, prediction_dir: Path) -> dict[str, Any]:
    """The folder to load from, the model's name and its run: a champion snapshot or a run folder."""
    if model == CHAMPION:
        return snapshot_champion(output_dir, prediction_dir)
    from tasks.results.promotion import read_json

    run = run_folder_of(output_dir, model)
    best = read_json(run.metrics).get("best_model")
    if not isinstance(best, str):
        raise PredictionError(f"{run.metrics} names no best_model; pick another run")
    return {"source": "run", "folder": str(run.root), "model": best, "run": run.root.name}
