"""Resampling touches the train split only and does what it says to the class counts."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.models.resampling import balanced_class_weights, resample

LABELS = np.array([0] * 18 + [1] * 6 + [2] * 1)


def test_oversample_lifts_minorities_to_target_share_by_repeating_rows() -> None:
    indices, weights, counts = resample(LABELS, 3, "oversample", seed=0, target_share=0.5)
    assert counts["before"] == [18, 6, 1]
    assert counts["after"] == [18, 9, 9]
    assert weights is None
    assert set(indices) == set(range(len(LABELS)))  # every original row kept, only repeats added
    assert indices.max() < len(LABELS)  # no new samples invented: only indices into the train rows


def test_undersample_caps_majority() -> None:
    indices, _, counts = resample(LABELS, 3, "undersample", seed=0, max_ratio=3.0)
    assert counts["after"] == [3, 3, 1]
    assert len(set(indices)) == len(indices)


def test_class_weights_balance_the_loss() -> None:
    indices, weights, counts = resample(LABELS, 3, "class-weights", seed=0)
    assert counts["after"] == counts["before"]
    assert sorted(indices) == list(range(len(LABELS)))
    total = {c: weights[c] * n for c, n in enumerate(counts["before"])}
    assert max(total.values()) == pytest.approx(min(total.values()))  # each class weighs the same


def test_absent_class_gets_no_weight() -> None:
    assert set(balanced_class_weights(np.array([0, 0, 2]), 4)) == {0, 2}


def test_resampling_is_seeded() -> None:
    a = resample(LABELS, 3, "oversample", seed=1)[0]
    b = resample(LABELS, 3, "oversample", seed=1)[0]
    c = resample(LABELS, 3, "oversample", seed=2)[0]
    assert (a == b).all() and not (a == c).all()


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown resampling strategy"):
        resample(LABELS, 3, "smote", seed=0)  # type: ignore[arg-type]
