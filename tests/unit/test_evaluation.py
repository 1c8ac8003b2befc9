"""Hold-out metrics: right numbers, per class, and sensitive to label mix-ups."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.results.evaluation import comparison_rows, evaluate_predictions, majority_class_predictions

NAMES = ["a", "b", "c"]


def test_metrics_on_a_known_example() -> None:
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 1, 2, 0]
    m = evaluate_predictions(y_true, y_pred, NAMES)
    assert m["accuracy"] == pytest.approx(6 / 8)
    f1 = [c["f1"] for c in m["per_class"]]
    assert f1 == pytest.approx([0.75, 0.8, 2 / 3])
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["confusion_matrix_normalised"][2] == [0.5, 0.0, 0.5]
    assert [c["support"] for c in m["per_class"]] == [4, 2, 2]


def test_majority_reference_scores_low_macro_f1() -> None:
    y_train = [0] * 18 + [1, 2]
    y_true = np.array([0] * 9 + [1, 2])
    ref = evaluate_predictions(y_true, majority_class_predictions(y_train, len(y_true)), NAMES)
    assert ref["accuracy"] > 0.8 and ref["macro_f1"] < 0.35  # why accuracy alone misleads


def test_permuted_labels_score_near_zero() -> None:
    y = np.arange(30) % 3
    assert evaluate_predictions(y, (y + 1) % 3, NAMES)["macro_f1"] == 0.0


def test_comparison_sorted_by_macro_f1() -> None:
    models = {
        "x": {"accuracy": 0.9, "macro_f1": 0.4, "weighted_f1": 0.8},
        "y": {"accuracy": 0.7, "macro_f1": 0.6, "weighted_f1": 0.7},
    }
    assert [r["model"] for r in comparison_rows(models)] == ["y", "x"]
