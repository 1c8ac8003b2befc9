"""Inference with a published model: load it and its recipe, compute its inputs for image files by
the very code path training used, and return class probabilities.

Why the training code path and not a re-implementation: a prediction must match what the run
recorded for the same image (the exported-model check and the tests compare them exactly). So:

- pixels: `tasks.models.features.load_pixel_matrix` with the recipe's size and colour;
- embeddings: the backbone seeded and built as `tasks.models.embeddings.write_embeddings` builds it,
  `tasks.models.embeddings.extract_features` with the same `EmbeddingSpec` (batch size included),
  whose float16 output is read back as float32, exactly as training stored and loaded it;
- images: `tasks.models.images.make_image_dataset` with the recipe's size and batch size, as
  `tasks.models.transfer.stage2.image_dataset_for` calls it for predictions.

Probabilities: Keras models output softmax probabilities; scikit-learn models give
``predict_proba`` where they have one (Random Forest, the logistic-regression pipeline). An SVC
fitted without ``probability=True`` (the pipeline's SVMs: Platt scaling would cost a 5-fold
refit) has none, so its probability columns are the one-hot of its ``predict``: 1 for the class
it predicts, 0 elsewhere. The class of a scikit-learn model is always its ``predict`` (what the
run recorded), of a Keras model the argmax of its probabilities (likewise).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.layout import RunFolder
from tasks.models.embeddings import clean_features
from tasks.models.features import load_pixel_matrix
from tasks.models.persistence import KERAS_SUFFIX, load_model
from tasks.models.recipe import EmbeddingInputs, ImageInputs, InputsRecipe, PixelInputs, RecipeError, read_recipe


@dataclass(frozen=True)
class Predicted:
    """Predictions for n images: class labels ``(n,)`` and probabilities ``(n, n_classes)``."""

    classes: np.ndarray
    probabilities: np.ndarray


@dataclass(frozen=True)
class PublishedModel:
    """A loaded model, its recipe and the folder's class names (label order)."""

    model: Any
    recipe: InputsRecipe
    class_names: list[str]

    @property
    def is_keras(self) -> bool:
        return self.recipe.model_file.endswith(KERAS_SUFFIX)


def class_names_of(folder: Path) -> list[str]:
    """The class names of the folder's run (``metrics.json``), in label order."""
    path = RunFolder(folder).metrics
    try:
        names = json.loads(path.read_text(encoding="utf-8"))["class_names"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RecipeError(f"{path} does not name the classes ({type(exc).__name__}: {exc})") from exc
    return [str(name) for name in names]


def load_published(folder: Path, model: str) -> PublishedModel:
    """``model`` of a run or champion folder: its file (loaded without running code from it,
    `tasks.models.persistence`), its recipe and the class names."""
    recipe = read_recipe(folder, model)
    names = class_names_of(folder)
    if any(not 0 <= label < len(names) for label in recipe.output_classes):
        raise RecipeError(f"{RunFolder(folder).model_inputs(model)} names classes outside the run's {len(names)}")
    return PublishedModel(load_model(RunFolder(folder).models / recipe.model_file), recipe, names)


def backbone_features(inputs: EmbeddingInputs, paths: Sequence[str], ok: np.ndarray) -> np.ndarray:
    """The cached-features computation of `tasks.models.embeddings.write_embeddings` for these
    images (clean views only), as float32 read back from float16."""
    return clean_features(inputs.spec(), list(paths), ok).astype(np.float32)


def model_inputs(recipe: InputsRecipe, paths: Sequence[str], ok: np.ndarray | None = None) -> Any:
    """The model's input for these image files (recipe kinds in the module docstring); ``ok``
    False marks files validation found unreadable (mid-gray, as in training)."""
    flags = np.ones(len(paths), bool) if ok is None else np.asarray(ok, bool)
    spec = recipe.inputs
    if isinstance(spec, PixelInputs):
        return load_pixel_matrix(list(paths), spec.size, spec.grayscale)
    if isinstance(spec, EmbeddingInputs):
        return backbone_features(spec, paths, flags)
    if isinstance(spec, ImageInputs):
        from tasks.models.images import make_image_dataset

        return make_image_dataset(list(paths), None, spec.image_size, spec.batch_size, ok=flags, shuffle=False)
    raise RecipeError(f"unknown input kind in the recipe of {recipe.model}")  # pragma: no cover - pydantic checks


def run_model(published: PublishedModel, inputs: Any) -> Predicted:
    """Class labels and probabilities (one column per class of the run) of a model on its inputs."""
    n_classes = len(published.class_names)
    model, recipe = published.model, published.recipe
    if published.is_keras:
        batch = recipe.inputs.predict_batch_size if isinstance(recipe.inputs, EmbeddingInputs) else None
        probs = np.asarray(model.predict(inputs, verbose=0, batch_size=batch), np.float64)
        if probs.shape[1] != n_classes:
            raise RecipeError(f"{recipe.model} outputs {probs.shape[1]} classes, the run has {n_classes}")
        return Predicted(classes=probs.argmax(1).astype(int), probabilities=probs)
    x = inputs.reshape(len(inputs), -1)  # embeddings baselines see flat features, as in training
    classes = np.asarray(model.predict(x)).astype(int)
    full = np.zeros((len(x), n_classes))
    columns = np.asarray(model.classes_).astype(int)
    if hasattr(model, "predict_proba"):  # an SVC without probability=True has none
        full[:, columns] = model.predict_proba(x)
    else:
        full[np.arange(len(x)), classes] = 1.0
    return Predicted(classes=classes, probabilities=full)


def predict_files(published: PublishedModel, paths: Sequence[str], ok: np.ndarray | None = None) -> Predicted:
    """Predict image files with a loaded model (nothing to compute for no files)."""
    if not len(paths):
        n_classes = len(published.class_names)
        return Predicted(classes=np.zeros(0, int), probabilities=np.zeros((0, n_classes)))
    return run_model(published, model_inputs(published.recipe, paths, ok))


def predict_images(folder: Path, model: str, paths: Sequence[str], ok: np.ndarray | None = None) -> Predicted:
    """Load ``model`` from a run or champion folder and predict image files with it."""
    return predict_files(load_published(folder, model), paths, ok)
