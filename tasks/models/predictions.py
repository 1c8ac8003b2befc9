"""Per-model predictions on the hold-out and the test set, persisted as CSV.

Every model writes the same format, so evaluation, the submission and the plots treat a
Random Forest and a fine-tuned network alike: filename, split, role, pred.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tasks.data.splitting import ROLE_HOLDOUT, ROLE_TEST
from tasks.io import atomic_write_text

PREDICTION_COLUMNS = ["filename", "split", "role", "pred"]


def scored_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows a model must predict: the hold-out and the test set, in table order."""
    return table[table["role"].isin([ROLE_HOLDOUT, ROLE_TEST])]


def write_predictions(rows: pd.DataFrame, predicted: np.ndarray, path: Path) -> Path:
    """Persist predictions for ``rows`` (as returned by `scored_rows`)."""
    if len(rows) != len(predicted):
        raise ValueError(f"{len(rows)} rows but {len(predicted)} predictions")
    frame = rows.loc[:, ["filename", "split", "role"]].assign(pred=np.asarray(predicted, int))
    return atomic_write_text(Path(path), frame.to_csv(index=False))


def read_predictions(path: Path) -> pd.DataFrame:
    """Read a predictions CSV."""
    return pd.read_csv(path, dtype={"filename": str, "split": str, "role": str, "pred": int})


def holdout_truth_and_pred(
    table: pd.DataFrame, predictions: pd.DataFrame, target: str
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned (true, predicted) labels on the hold-out."""
    holdout = table[table["role"] == ROLE_HOLDOUT].loc[:, ["split", "filename", target]]
    merged = holdout.merge(predictions, on=["split", "filename"], how="left", validate="one_to_one")
    if merged["pred"].isna().any():
        raise ValueError("predictions do not cover the whole hold-out")
    return merged[target].astype(int).to_numpy(), merged["pred"].astype(int).to_numpy()


def test_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """The test rows of a predictions table, in their original order."""
    return predictions[predictions["role"] == ROLE_TEST]
