"""A batch prediction's results: ``predictions.csv`` and ``prediction.json`` in its folder.

``predictions.csv`` has one row per input image, in input order: ``filename``, ``class_index``,
``class_name``, one probability column per class (``prob_<class name>``, in label order), then
``image_ok``, ``problem`` (why an image could not be used) and ``path``. An unusable image keeps
its row with empty class and probability cells: it is reported, not guessed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.io import atomic_write_json, atomic_write_text
from tasks.layout import PredictionFolder
from tasks.logs import get_logger
from tasks.models.inference import Predicted, load_published, predict_files
from tasks.predict.inputs import read_inputs
from tasks.predict.source import ModelSource

#: Decimals kept for probabilities in predictions.csv.
CSV_DECIMALS = 6


def probability_column(name: str) -> str:
    return f"prob_{name}"


def prediction_frame(inputs: pd.DataFrame, predicted: Predicted, class_names: list[str]) -> pd.DataFrame:
    """The CSV's rows (module docstring) from the validated inputs and the predictions of their usable rows."""
    ok = inputs["image_ok"].to_numpy(bool)
    if int(ok.sum()) != len(predicted.classes):
        raise ValueError(f"{int(ok.sum())} usable images but {len(predicted.classes)} predictions")
    index = pd.array([pd.NA] * len(inputs), dtype="Int64")
    index[ok] = predicted.classes
    names = pd.Series([""] * len(inputs), dtype=str)
    names[ok] = [class_names[int(c)] for c in predicted.classes]
    frame = pd.DataFrame({"filename": inputs["filename"].to_numpy(), "class_index": index, "class_name": names})
    probs = np.full((len(inputs), len(class_names)), np.nan)
    probs[ok] = predicted.probabilities
    for column, name in enumerate(class_names):
        frame[probability_column(name)] = probs[:, column].round(CSV_DECIMALS)
    return frame.assign(image_ok=ok, problem=inputs["problem"].to_numpy(), path=inputs["path"].to_numpy())


def class_counts(frame: pd.DataFrame) -> dict[str, int]:
    """How many images went to each predicted class (most frequent first)."""
    counts = frame.loc[frame["image_ok"], "class_name"].value_counts()
    return {str(name): int(n) for name, n in counts.items()}


@dataclass(frozen=True)
class PredictionSummary:
    """One batch prediction: which model (`ModelSource`'s fields), where its files are, the
    counts; ``prediction.json`` holds it. The gallery and a few unusable inputs are added once
    they exist (`tasks.predict.report.publish_prediction`, the flow)."""

    source: str
    folder: str
    model: str
    run: str
    prediction_dir: str
    predictions_path: str
    inputs: str
    images: int
    unreadable: int
    class_counts: dict[str, int]
    class_names: list[str]
    gallery: str | None = None
    unreadable_examples: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def predict_inputs(source: ModelSource, inputs_path: Path, prediction_dir: Path) -> PredictionSummary:
    """Classify the usable images of ``inputs.csv`` with the model ``source`` names
    (`tasks.predict.source.take_model`); write ``predictions.csv`` and ``prediction.json``; return a
    small summary."""
    model = source.model
    inputs = read_inputs(inputs_path)
    published = load_published(Path(source.folder), model)
    usable = inputs[inputs["image_ok"]]
    get_logger().info("Classifying %d image(s) with %s (%d unusable)", len(usable), model, len(inputs) - len(usable))
    predicted = predict_files(published, usable["path"].tolist())
    frame = prediction_frame(inputs, predicted, published.class_names)
    out = PredictionFolder(prediction_dir)
    atomic_write_text(out.predictions, frame.to_csv(index=False))
    summary = PredictionSummary(
        **asdict(source),
        prediction_dir=str(out.root),
        predictions_path=str(out.predictions),
        inputs=published.recipe.inputs.kind,
        images=len(frame),
        unreadable=int((~frame["image_ok"]).sum()),
        class_counts=class_counts(frame),
        class_names=list(published.class_names),
    )
    atomic_write_json(out.record, summary.to_json())
    return summary


def read_prediction_csv(path: Path) -> pd.DataFrame:
    """A predictions.csv as written (class_index nullable, image_ok boolean)."""
    frame = pd.read_csv(path, dtype={"filename": str, "class_name": str, "problem": str, "path": str})
    frame["class_index"] = frame["class_index"].astype("Int64")
    frame["image_ok"] = frame["image_ok"].astype(str).str.lower().eq("true")
    frame["problem"] = frame["problem"].fillna("")
    frame["class_name"] = frame["class_name"].fillna("")
    return frame
