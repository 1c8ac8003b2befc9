"""Hold-out metrics that matter for imbalanced classes.

Every model is scored on the same hold-out with the same function: accuracy, macro-F1 (each
class counts equally, so the four 1-family classes matter), weighted-F1, per-class
precision/recall/F1/support and the confusion matrix (counts and row-normalised). A majority-
class reference shows what "learning nothing" scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


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
        {"model": name, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "weighted_f1": m["weighted_f1"]}
        for name, m in models.items()
    ]
    return sorted(rows, key=lambda r: r["macro_f1"], reverse=True)


def format_comparison(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table for the console."""
    width = max([len("model")] + [len(r["model"]) for r in rows])
    lines = [f"{'model':<{width}}  accuracy  macro-F1  weighted-F1"]
    lines += [
        f"{r['model']:<{width}}  {r['accuracy']:8.3f}  {r['macro_f1']:8.3f}  {r['weighted_f1']:11.3f}" for r in rows
    ]
    return "\n".join(lines)


def evaluate_models(
    table_path: Path, predictions: dict[str, Path], classes_path: Path, target: str, run_dir: Path
) -> dict[str, Any]:
    """Score every model on the shared hold-out, write ``metrics.json``, return the summary.

    The best model is the one with the highest hold-out macro-F1 (ties: first listed).
    """
    from tasks.data.dataset import read_classes_json
    from tasks.data.splitting import ROLE_TRAIN, read_table
    from tasks.io import atomic_write_json
    from tasks.layout import RunFolder
    from tasks.models.predictions import holdout_truth_and_pred, read_predictions

    if not predictions:
        raise ValueError("no model produced predictions; nothing to evaluate")
    table = read_table(table_path)
    names = read_classes_json(classes_path).names(target)  # type: ignore[arg-type]
    models: dict[str, dict[str, Any]] = {}
    y_true = np.zeros(0, int)
    for name, path in predictions.items():
        y_true, y_pred = holdout_truth_and_pred(table, read_predictions(path), target)
        models[name] = evaluate_predictions(y_true, y_pred, names)
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
        "models": models,
    }
    metrics_path = atomic_write_json(RunFolder(run_dir).metrics, metrics)
    return {
        "metrics_path": str(metrics_path),
        "best_model": best,
        "n_classes": len(names),
        "best_macro_f1": models[best]["macro_f1"],
        "majority_macro_f1": reference["macro_f1"],
        "comparison": rows,
        "predictions_path": str(predictions[best]),
    }
