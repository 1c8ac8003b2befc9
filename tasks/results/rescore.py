"""A challenger trained on other data than the champion: score both on the same images.

After new data arrived (new images, corrected labels) or with a hold-out drawn differently, the
champion's recorded scores were measured on other images than the challenger's, so the gate
could only refuse to compare them, and a data-triggered retrain could never replace the champion.
Since every published model carries its inputs recipe (`tasks.predict`), the champion's saved
model is run on the challenger's hold-out instead, through the training code path.

Only hold-out images the champion never trained on are used (its ``split.csv`` lists its train
role): scoring a model on its own training images would flatter it. Both models are scored on
exactly those images, with the challenger's labels, by the evaluation code of every run
(`tasks.results.evaluation`), and the gate's usual rules decide on those figures.

The gate's noise-aware rule needs both models' predictions of the same images: after re-scoring
they are the ones just made; when the scores are comparable as recorded (same hold-out, same
data), `recorded_pairs` reads them from the predictions files, the champion's from the champion
folder if it keeps them, else from its run folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.data.dataset import image_ok_flags
from tasks.data.splitting import ROLE_HOLDOUT, ROLE_TRAIN, read_split, read_table
from tasks.layout import RunFolder
from tasks.models.inference import predict_images
from tasks.models.predictions import holdout_truth_and_pred, read_predictions
from tasks.models.recipe import has_recipes
from tasks.results.evaluation import evaluate_predictions
from tasks.results.gate import PairedHoldout, comparability_problem, decide_promotion

#: Why a forced promotion's reason quotes no interval.
FORCED = "not computed for a forced promotion (--force-promote)"
#: Fewest shared hold-out images a comparison may rest on.
MIN_SHARED_IMAGES = 20


class RescoreError(RuntimeError):
    """The champion cannot be scored on the challenger's hold-out; the message says why."""


def shared_holdout(run_dir: Path, champion_dir: Path) -> pd.DataFrame:
    """The challenger's hold-out rows of its table (with an ``ok`` column) the champion never trained on."""
    table = read_table(RunFolder(run_dir).table)
    holdout = table[table["role"] == ROLE_HOLDOUT].assign(ok=lambda t: image_ok_flags(t))
    champion_split = RunFolder(champion_dir).split
    if not champion_split.is_file():
        raise RescoreError(f"{champion_split} is missing: the champion's training images are unknown")
    trained = read_split(champion_split)
    trained = trained[trained["role"] == ROLE_TRAIN]
    seen = set(zip(trained["split"], trained["filename"]))
    rows = holdout[[(s, f) not in seen for s, f in zip(holdout["split"], holdout["filename"])]]
    if len(rows) < MIN_SHARED_IMAGES:
        raise RescoreError(
            f"only {len(rows)} of the run's {len(holdout)} hold-out images were not in the champion's training "
            f"set (at least {MIN_SHARED_IMAGES} are needed)"
        )
    return rows


def gate_metrics(scores: Mapping[str, Any]) -> dict[str, Any]:
    """`tasks.results.evaluation.evaluate_predictions` output in the shape the gate compares."""
    return {
        "macro_f1": float(scores["macro_f1"]),
        "accuracy": float(scores["accuracy"]),
        "weighted_f1": float(scores["weighted_f1"]),
        "per_class_f1": {row["name"]: float(row["f1"]) for row in scores["per_class"] if row["support"] > 0},
    }


def recorded_pairs(
    challenger: Mapping[str, Any], champion: Mapping[str, Any], champion_dir: Path
) -> PairedHoldout | str:
    """Both models' recorded predictions of the challenger's hold-out (for comparable records: the
    same images), or why they cannot be read."""
    model = champion["model"]
    candidates = [RunFolder(champion_dir).predictions_of(model)]
    if champion.get("run_dir"):
        candidates.append(RunFolder(Path(champion["run_dir"])).predictions_of(model))
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        return f"the champion's hold-out predictions were not found ({' nor '.join(map(str, candidates))})"
    ours = RunFolder(Path(challenger["run_dir"])).predictions_of(challenger["model"])
    try:
        table = read_table(RunFolder(Path(challenger["run_dir"])).table)
        truth, our_pred = holdout_truth_and_pred(table, read_predictions(ours), challenger["target"])
        _, their_pred = holdout_truth_and_pred(table, read_predictions(found), challenger["target"])
    except (OSError, ValueError, KeyError) as exc:  # missing, damaged or partial predictions files
        return f"the hold-out predictions could not be read ({type(exc).__name__}: {exc})"
    return PairedHoldout(truth, our_pred, their_pred, len(challenger["class_names"]), str(found))


def rescore_on_challenger_holdout(
    challenger: Mapping[str, Any], champion: Mapping[str, Any], champion_dir: Path
) -> tuple[dict[str, Any], dict[str, Any], PairedHoldout]:
    """(challenger, champion) records whose ``metrics`` are measured on the same unseen hold-out
    images, and whose split and data fingerprints are the challenger's, with both models' predictions
    of those images; `RescoreError` otherwise."""
    if not has_recipes(champion_dir):
        raise RescoreError("the champion has no inputs recipe (it was trained by an older version)")
    run_dir = Path(challenger["run_dir"])
    rows = shared_holdout(run_dir, champion_dir)
    names = list(challenger["class_names"])
    try:
        champion_pred = predict_images(champion_dir, champion["model"], rows["path"].tolist(), rows["ok"].to_numpy())
    except Exception as exc:  # a model that cannot run on these images cannot be compared
        raise RescoreError(
            f"the champion's {champion['model']} could not predict them ({type(exc).__name__}: {exc})"
        ) from exc
    # Aligned to ``rows`` (table order), as evaluation aligns every model's predictions.
    recorded = read_predictions(RunFolder(run_dir).predictions_of(challenger["model"]))
    try:
        truth, our_pred = holdout_truth_and_pred(rows, recorded, challenger["target"])
    except ValueError as exc:  # predictions missing for some hold-out images
        raise RescoreError(f"{RunFolder(run_dir).predictions_of(challenger['model'])}: {exc}") from exc
    ours = evaluate_predictions(truth, our_pred, names)
    theirs = evaluate_predictions(truth, champion_pred.classes, names)
    note = {"rescored_on": {"run": challenger["run"], "images": len(rows)}}
    same_ground = {k: challenger[k] for k in ("split_fingerprint", "data_fingerprint")}
    paired = PairedHoldout(
        truth, our_pred, champion_pred.classes, len(names), f"the champion re-run on {len(rows)} images"
    )
    return (
        {**challenger, "metrics": gate_metrics(ours), **note},
        {**champion, **same_ground, "metrics": gate_metrics(theirs), **note},
        paired,
    )


def needs_rescoring(challenger: Mapping[str, Any], champion: Mapping[str, Any]) -> bool:
    """Same task (target and classes) but not comparable as recorded: the gate's own
    `comparability_problem` then means other data or another hold-out, i.e. other images."""
    same_task = challenger["target"] == champion["target"] and list(challenger["class_names"]) == list(
        champion["class_names"]
    )
    return same_task and comparability_problem(challenger, champion) is not None


def decide_on_shared_images(
    challenger: Mapping[str, Any], champion: Mapping[str, Any] | None, settings: Any, champion_dir: Path
) -> Any:
    """The gate's `Decision`; when the champion was measured on other images, on images both can be
    scored on (module docstring), or the refusal with why re-scoring was not possible."""

    if champion is not None and comparability_problem(challenger, champion) is None:
        # A forced promotion replaces the champion whatever the interval says: not computed.
        pairs = FORCED if settings.force_promote else recorded_pairs(challenger, champion, champion_dir)
        return decide_promotion(challenger, champion, settings, pairs)
    decision = decide_promotion(challenger, champion, settings)
    if champion is None or not settings.rescore_champion or not needs_rescoring(challenger, champion):
        return decision
    try:
        ours, theirs, paired = rescore_on_challenger_holdout(challenger, champion, champion_dir)
    except RescoreError as exc:
        return replace(decision, reason=f"{decision.reason} Re-scoring the champion was not possible: {exc}.")
    rescored = decide_promotion(ours, theirs, settings, paired)
    images = ours["rescored_on"]["images"]
    return replace(
        rescored,
        reason=f"the champion was measured on other images (other data or hold-out), so both models were scored "
        f"on the {images} hold-out images of this run that the champion never trained on: {rescored.reason}",
    )
