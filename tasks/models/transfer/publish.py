"""What the transfer step leaves in its folder: per published model its hold-out and test
predictions, its ``.keras`` file and its inputs recipe (`tasks.models.recipe`); then the training
history (which stage was published and why) and the class counts before and after resampling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from tasks.data.settings import SplitSettings
from tasks.io import atomic_write_json
from tasks.layout import RunFolder
from tasks.models.persistence import KERAS_SUFFIX, save_model
from tasks.models.predictions import scored_rows, write_predictions
from tasks.models.recipe import Inputs, write_recipe
from tasks.models.settings import TransferSettings

#: Batch of the stage-1 head's predictions on cached features (its inputs recipe records it).
HEAD_PREDICT_BATCH = 256


@dataclass(frozen=True)
class Publisher:
    """Writes published models into one folder (a run or a step's work folder)."""

    out: RunFolder
    scored: Any  # the table's hold-out and test rows (`scored_rows`), in table order
    target: str
    n_classes: int

    @classmethod
    def of(cls, out: RunFolder, table: Any, target: str, n_classes: int) -> Publisher:
        return cls(out, scored_rows(table), target, n_classes)

    @property
    def scored_rows(self) -> np.ndarray:
        """Table row numbers of the rows every model predicts."""
        return self.scored.index.to_numpy()

    def publish(self, name: str, probs: np.ndarray, model: keras.Model, inputs: Inputs) -> str:
        """Predictions CSV, model file and inputs recipe of one model; returns the CSV's path."""
        path = write_predictions(self.scored, probs.argmax(1), self.out.predictions_of(name))
        model_file = save_model(model, self.out.model_file(name, KERAS_SUFFIX))
        write_recipe(self.out.root, name, model_file, self.target, range(self.n_classes), inputs)
        return str(path)


def write_history(
    out: RunFolder,
    settings: TransferSettings,
    split: SplitSettings,
    decision: dict[str, Any],
    history: list[dict[str, float]],
    counts: dict[str, list[int]],
) -> None:
    """``training_history.json`` (epochs of both stages, what was published and why) and ``resampling.json``."""
    atomic_write_json(
        out.training_history,
        {
            "model": settings.backbone,
            "stage1": settings.stage1,
            "stage2_max_images": settings.stage2_max_images,
            **decision,
            "epochs": history,
        },
    )
    atomic_write_json(out.resampling, {"strategy": split.resampling, **counts})
