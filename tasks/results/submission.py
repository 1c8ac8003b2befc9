"""The Kaggle submission: checked before it is published, written atomically.

Format (docs/dataset.md): header ``filename,<target>``, one row per test.csv row in the same order, an
integer label in info.json order, no index column. The original project wrote alphabetical
class ids; labels here are always indices into info.json's list, never sorted names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tasks.data.dataset import Target, image_ok_flags, read_samples
from tasks.io import atomic_write_text
from tasks.layout import RunFolder
from tasks.models.predictions import read_predictions, test_predictions


class SubmissionError(ValueError):
    """A submission that would be rejected by Kaggle or score the wrong classes."""


def build_submission(filenames: Sequence[str], labels: Sequence[int], target: Target) -> pd.DataFrame:
    """The submission table for the given test filenames and predicted label indices."""
    if len(filenames) != len(labels):
        raise SubmissionError(f"{len(filenames)} test filenames but {len(labels)} predictions")
    return pd.DataFrame({"filename": list(filenames), target: [int(v) for v in labels]})


def check_submission(frame: pd.DataFrame, expected_filenames: Sequence[str], target: Target, n_classes: int) -> None:
    """Raise SubmissionError unless the table is exactly what Kaggle expects."""
    problems: list[str] = []
    if list(frame.columns) != ["filename", target]:
        problems.append(f"header is {','.join(map(str, frame.columns))}, expected filename,{target}")
    else:
        duplicated = frame.loc[frame["filename"].duplicated(), "filename"].tolist()
        if duplicated:
            problems.append(f"{len(duplicated)} duplicated filename(s), e.g. {duplicated[:3]}")
        expected = set(expected_filenames)
        missing = sorted(expected - set(frame["filename"]))
        extra = sorted(set(frame["filename"]) - expected)
        if missing:
            problems.append(f"{len(missing)} test.csv filename(s) missing, e.g. {missing[:3]}")
        if extra:
            problems.append(f"{len(extra)} filename(s) not in test.csv, e.g. {extra[:3]}")
        labels = pd.to_numeric(frame[target], errors="coerce")
        bad = frame.loc[labels.isna() | (labels != labels.round()) | (labels < 0) | (labels >= n_classes)]
        if not bad.empty:
            examples = [f"{f}={v}" for f, v in zip(bad["filename"][:3], bad[target][:3])]
            problems.append(f"{len(bad)} label(s) not an integer in 0..{n_classes - 1}, e.g. {examples}")
    if problems:
        raise SubmissionError("submission refused: " + "; ".join(problems))


def publish_submission(
    frame: pd.DataFrame, path: Path, expected_filenames: Sequence[str], target: Target, n_classes: int
) -> Path:
    """Check, then write atomically; a refused submission leaves any previous file untouched."""
    check_submission(frame, expected_filenames, target, n_classes)
    return atomic_write_text(Path(path), frame.to_csv(index=False))


def write_run_submission(
    predictions_path: Path,
    samples_path: Path,
    target: Target,
    n_classes: int,
    run_dir: Path,
    fallback: dict[str, int] | None = None,
) -> Path:
    """Build the run's ``submission.csv`` from the best model's test predictions, in test.csv order.

    Test images that validation found undecodable (``image_ok`` False) still get a row: the
    documented fallback class for the target (the most frequent labelled class) when one is given.
    """
    samples = read_samples(samples_path)
    test = samples[samples["split"] == "test"]
    expected = test["filename"].tolist()
    predicted = test_predictions(read_predictions(predictions_path)).set_index("filename")["pred"]
    missing = [f for f in expected if f not in predicted.index]
    if missing:
        raise SubmissionError(f"the model has no prediction for {len(missing)} test image(s), e.g. {missing[:3]}")
    labels = predicted.loc[expected].to_numpy().copy()
    if fallback and target in fallback:
        labels[~image_ok_flags(test)] = int(fallback[target])
    frame = build_submission(expected, labels.tolist(), target)
    return publish_submission(frame, RunFolder(run_dir).submission, expected, target, n_classes)
