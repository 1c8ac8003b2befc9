"""Hold-out metrics that matter for imbalanced classes.

Every model is scored on the same hold-out with the same function: accuracy, macro-F1 (each
class counts equally, so the four 1-family classes matter), weighted-F1, per-class
precision/recall/F1/support and the confusion matrix (counts and row-normalised). A majority-
class reference shows what "learning nothing" scores. Accuracy and macro-F1 carry a percentile
interval from a seeded stratified bootstrap over the hold-out images (`tasks.results.bootstrap`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from tasks.data.dataset import read_classes_json
from tasks.data.splitting import ROLE_TRAIN, read_table
from tasks.io import atomic_write_json
from tasks.layout import RunFolder
from tasks.models.predictions import holdout_truth_and_pred, read_predictions
from tasks.results.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED, score_intervals

#: The scores that carry a bootstrap interval (``<score>_ci`` next to them in ``metrics.json``).
INTERVAL_SCORES = ("accuracy", "macro_f1")


@dataclass(frozen=True)
class EvaluationSummary:
    """What the evaluation step hands on (the full detail is in ``metrics.json``): the best model by
    hold-out macro-F1, its score next to the majority-class reference, the comparison rows and
    the best model's predictions file (what the submission is written from)."""

    metrics_path: str
    best_model: str
    n_classes: int
    best_macro_f1: float
    majority_macro_f1: float
    comparison: list[dict[str, Any]]
    predictions_path: str


def evaluate_predictions(truth: ArrayLike, predicted: ArrayLike, class_names: Sequence[str]) -> dict[str, Any]:
    """All hold-out metrics for one model, as a JSON-ready dict."""
    labels = list(range(len(class_names)))
    y_true, y_pred = np.asarray(truth, int), np.asarray(predicted, int)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    row_sums = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, row_sums, out=np.zeros_like(counts, dtype=float), where=row_sums > 0)
    present = [i for i in labels if support[i] > 0]  # classes absent from the hold-out can't be scored
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
        "per_class": [
            {
                "index": i,
                "name": class_names[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in labels
        ],
        "confusion_matrix": counts.tolist(),
        "confusion_matrix_normalised": np.round(normalised, 4).tolist(),
    }


def majority_class_predictions(y_train: Sequence[int], n: int) -> np.ndarray:
    """What a model that learned nothing predicts: the most frequent training class, n times."""
    values, counts = np.unique(np.asarray(y_train, int), return_counts=True)
    return np.full(n, values[np.argmax(counts)], dtype=int)


def comparison_rows(models: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model, best hold-out macro-F1 first."""
    rows = [
        {
            "model": name,
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
            "weighted_f1": m["weighted_f1"],
            **{f"{k}_ci": m[f"{k}_ci"] for k in INTERVAL_SCORES if f"{k}_ci" in m},
        }
        for name, m in models.items()
    ]
    return sorted(rows, key=lambda r: r["macro_f1"], reverse=True)


def format_comparison(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table for the console; a score with an interval reads ``0.788 [0.74, 0.83]``."""
    width = max([len("model")] + [len(r["model"]) for r in rows])
    cells = [[score_with_interval(r, k) for k in INTERVAL_SCORES] for r in rows]
    widths = [max([len(header)] + [len(c[i]) for c in cells]) for i, header in enumerate(("accuracy", "macro-F1"))]
    lines = [f"{'model':<{width}}  {'accuracy':<{widths[0]}}  {'macro-F1':<{widths[1]}}  weighted-F1"]
    lines += [
        f"{r['model']:<{width}}  {c[0]:<{widths[0]}}  {c[1]:<{widths[1]}}  {r['weighted_f1']:11.3f}"
        for r, c in zip(rows, cells)
    ]
    levels = sorted({r[f"{k}_ci"]["level"] for r in rows for k in INTERVAL_SCORES if f"{k}_ci" in r})
    if levels:
        shown = ", ".join(f"{level:.0%}" for level in levels)
        lines.append(f"[low, high]: {shown} stratified bootstrap interval over the hold-out images")
    return "\n".join(lines)


def score_with_interval(row: dict[str, Any], score: str) -> str:
    """``0.788 [0.74, 0.83]``, or ``0.788`` when the row has no interval for ``score``."""
    interval = row.get(f"{score}_ci")
    text = f"{row[score]:.3f}"
    return f"{text} [{interval['low']:.2f}, {interval['high']:.2f}]" if interval else text


def evaluate_models(
    table_path: Path,
    predictions: dict[str, Path],
    classes_path: Path,
    target: str,
    run_dir: Path,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> EvaluationSummary:
    """Score every model on the shared hold-out, write ``metrics.json``, return the summary.

    The best model is the one with the highest hold-out macro-F1 (ties: first listed). Every model's
    accuracy and macro-F1 get a ``level`` percentile interval (``accuracy_ci``, ``macro_f1_ci``) from
    ``resamples`` stratified bootstrap resamples of the hold-out images, the same for all models.
    """
    if not predictions:
        raise ValueError("no model produced predictions; nothing to evaluate")
    table = read_table(table_path)
    names = read_classes_json(classes_path).names(target)  # type: ignore[arg-type]
    models: dict[str, dict[str, Any]] = {}
    y_true = np.zeros(0, int)
    predicted: dict[str, np.ndarray] = {}
    for name, path in predictions.items():
        y_true, predicted[name] = holdout_truth_and_pred(table, read_predictions(path), target)
        models[name] = evaluate_predictions(y_true, predicted[name], names)
    if len(y_true):
        for name, intervals in score_intervals(y_true, predicted, len(names), resamples, level, seed).items():
            models[name].update({f"{k}_ci": intervals[k].to_dict() for k in INTERVAL_SCORES})
    y_train = table.loc[table["role"] == ROLE_TRAIN, target].astype(int).to_numpy()
    reference = evaluate_predictions(y_true, majority_class_predictions(y_train, len(y_true)), names)
    rows = comparison_rows(models)
    best = rows[0]["model"]
    metrics = {
        "target": target,
        "class_names": list(names),
        "holdout_size": int(len(y_true)),
        "best_model": best,
        "comparison": rows,
        "majority_reference": {k: reference[k] for k in ("accuracy", "macro_f1", "weighted_f1")},
        "bootstrap": {"resamples": resamples, "level": level, "seed": seed, "stratified_by": "true class"},
        "models": models,
    }
    metrics_path = atomic_write_json(RunFolder(run_dir).metrics, metrics)
    return EvaluationSummary(
        metrics_path=str(metrics_path),
        best_model=best,
        n_classes=len(names),
        best_macro_f1=models[best]["macro_f1"],
        majority_macro_f1=reference["macro_f1"],
        comparison=rows,
        predictions_path=str(predictions[best]),
    )
