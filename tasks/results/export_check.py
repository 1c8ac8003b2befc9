"""The exported-model check before a promotion (TFX's InfraValidator): the candidate champion's
files, as staged for publication, are loaded in a fresh process and must reproduce the run's
recorded hold-out predictions.

Why a fresh process: the training process still holds the model objects, the imported custom
objects and warm caches; a model that only loads there (a loss that is a closure, a missing file,
a truncated ``.keras``) would be published and fail its first user. The child runs
``python -m tasks.results.export_check`` on the STAGED folder, with a quiet, offline environment,
and predicts a deterministic subset of the hold-out: up to ``GateSettings.export_check_rows``
images, evenly spaced in the run's predictions file, through the training code path
(`tasks.models.inference`). The parent compares labels exactly: the same code, settings and
batch size must give the same class. Any mismatch, load error, crash or timeout raises
`ExportCheckFailed`, and `tasks.results.champion.promote_run` records the candidate as not
promoted with the reason. A truncated or garbled model file is caught first, in milliseconds, by
its zip archive's own checks, before any process is started.

Runs trained before models had inputs recipes (no ``models/*.inputs.json`` at all) cannot be
checked; their promotion goes ahead with the check recorded as skipped. A run that has recipes
but none for its best model fails the check.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.data.dataset import image_ok_flags
from tasks.data.splitting import ROLE_HOLDOUT, read_table
from tasks.layout import RunFolder
from tasks.models.predictions import read_predictions
from tasks.models.recipe import RecipeError, has_recipes, read_recipe

#: The repository root: the child runs there, so ``-m tasks...`` is this code, whatever the caller's cwd.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Quiet and offline: TensorFlow's C++ logging and warnings off (the parent keeps only a failure's
#: reason), no analytics; backbone weights come from the caches that training filled (the caller's
#: KERAS_HOME / LIVING_THINGS_CACHE are kept), so nothing is downloaded.
CHILD_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONWARNINGS": "ignore",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false",
    # On a GPU the parent still holds its memory: the child allocates what it needs, when it needs it.
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    "TF_FORCE_GPU_ALLOW_GROWTH": "true",
}
#: Mismatching images quoted in a failure's reason.
QUOTED = 3


class ExportCheckFailed(RuntimeError):
    """The staged model does not load, crashed, timed out or predicts differently; says which."""


def evenly_spaced(n: int, limit: int) -> np.ndarray:
    """Up to ``limit`` of ``n`` positions, spread evenly and always including the first and last."""
    if limit <= 0 or n == 0:
        return np.zeros(0, int)
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def check_rows(run_dir: Path, model: str, limit: int) -> pd.DataFrame:
    """The hold-out images the check predicts: filename, path, ok flag and the recorded ``pred``."""
    run = RunFolder(run_dir)
    recorded = read_predictions(run.predictions_of(model))
    holdout = recorded[recorded["role"] == ROLE_HOLDOUT].reset_index(drop=True)
    chosen = holdout.iloc[evenly_spaced(len(holdout), limit)]
    table = read_table(run.table)
    table = table.assign(ok=image_ok_flags(table)).loc[:, ["split", "filename", "path", "ok"]]
    rows = chosen.merge(table, on=["split", "filename"], how="left", validate="one_to_one")
    if rows["path"].isna().any():
        raise ExportCheckFailed(f"{run.predictions_of(model)} names hold-out images that are not in {run.table}")
    return rows.loc[:, ["filename", "path", "ok", "pred"]]


def check_files(staging: Path, model: str) -> None:
    """What can be checked in milliseconds before a process is started: the staged recipe parses and
    names a model file that is a complete zip archive (``.keras`` and ``.skops`` both are: a truncated
    or garbled copy fails its central directory or a member's CRC)."""
    try:
        recipe = read_recipe(staging, model)
    except RecipeError as exc:
        raise ExportCheckFailed(str(exc)) from exc
    path = RunFolder(staging).models / recipe.model_file
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile) as exc:
        raise ExportCheckFailed(f"{path.name} is damaged or missing ({type(exc).__name__}: {exc})") from exc
    if bad is not None:
        raise ExportCheckFailed(f"{path.name} is damaged: its member {bad} fails its CRC check")


def child_environment() -> dict[str, str]:
    """The caller's environment (backend, caches) made quiet and offline."""
    return {**os.environ, **CHILD_ENVIRONMENT}


def predict_in_fresh_process(folder: Path, model: str, rows: pd.DataFrame, timeout_s: float) -> list[int]:
    """Run `main` in a new interpreter on ``folder``; its labels for ``rows``, or `ExportCheckFailed`."""
    with tempfile.TemporaryDirectory(prefix="export-check-") as tmp:
        rows_path, out_path = Path(tmp) / "rows.csv", Path(tmp) / "result.json"
        rows.loc[:, ["path", "ok"]].to_csv(rows_path, index=False)
        command = [
            sys.executable,
            "-m",
            "tasks.results.export_check",
            str(folder),
            model,
            str(rows_path),
            str(out_path),
        ]
        try:
            done = subprocess.run(
                command,
                cwd=PROJECT_ROOT,
                env=child_environment(),
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as exc:
            raise ExportCheckFailed(
                f"reloading {model} in a fresh process did not finish within {timeout_s:g} s "
                f"(--gate.export-check-timeout-s)"
            ) from exc
        result = json.loads(out_path.read_text(encoding="utf-8")) if out_path.is_file() else {}
        if done.returncode != 0 or "pred" not in result:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            why = result.get("error") or (lines[-1] if lines else "no message")
            raise ExportCheckFailed(f"reloading {model} in a fresh process failed (exit {done.returncode}): {why}")
    return [int(p) for p in result["pred"]]


def check_exported_model(run_dir: Path, staging: Path, model: str, rows: int, timeout_s: float) -> dict[str, Any]:
    """Check the staged copy of ``model`` against the run's recorded hold-out predictions.

    Returns what was checked (recorded in champion.json); raises `ExportCheckFailed` with the reason.
    """
    if rows <= 0:
        return {"status": "skipped", "reason": "--gate.export-check-rows 0"}
    if not has_recipes(run_dir):
        return {"status": "skipped", "reason": "the run's models have no inputs recipes (trained by an older version)"}
    check_files(staging, model)
    chosen = check_rows(run_dir, model, rows)
    predicted = predict_in_fresh_process(staging, model, chosen, timeout_s)
    if len(predicted) != len(chosen):
        raise ExportCheckFailed(f"the reloaded {model} returned {len(predicted)} labels for {len(chosen)} images")
    recorded = chosen["pred"].astype(int).to_numpy()
    wrong = np.flatnonzero(np.asarray(predicted) != recorded)
    if len(wrong):
        examples = ", ".join(
            f"{chosen['filename'].iloc[i]}: recorded {recorded[i]}, reloaded {predicted[i]}" for i in wrong[:QUOTED]
        )
        raise ExportCheckFailed(
            f"the saved {model}, reloaded in a fresh process, predicts {len(wrong)} of {len(chosen)} hold-out "
            f"images differently from the run's recorded predictions (e.g. {examples})"
        )
    return {"status": "passed", "model": model, "images": len(chosen)}


def main(argv: list[str] | None = None) -> int:
    """The child: ``FOLDER MODEL ROWS_CSV OUT_JSON``; writes ``{"pred": [...]}`` or ``{"error": ...}``."""
    parser = argparse.ArgumentParser(prog="python -m tasks.results.export_check", description=main.__doc__)
    for name in ("folder", "model", "rows", "out"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        from tasks.models.inference import predict_images

        rows = pd.read_csv(args.rows, dtype={"path": str})
        ok = rows["ok"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
        predicted = predict_images(Path(args.folder), args.model, rows["path"].tolist(), ok)
    except Exception as exc:  # the reason goes back to the parent, which records it
        out.write_text(json.dumps({"error": f"{type(exc).__name__}: {str(exc)[:500]}"}), encoding="utf-8")
        return 1
    out.write_text(json.dumps({"pred": predicted.classes.astype(int).tolist()}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
