"""A saved model's inputs recipe: what it eats, so that it can be used on new images without the
settings of the run that trained it.

Every published model's file has a JSON sidecar, ``models/<name>.inputs.json``
(`tasks.layout.RunFolder.model_inputs`), written by the step that trains it
(`tasks.models.baselines`, `tasks.models.transfer`). It names the model file and how to turn image
files into that model's input, with the very settings training used:

- ``pixels``: small pixel vectors (`tasks.models.features.load_pixel_matrix`, size, grayscale);
- ``embeddings``: the frozen backbone's features (every `tasks.models.embeddings.EmbeddingSpec`
  field, batch size included, since features are computed batch by batch), stored as float16 by
  training and read back as float32; ``predict_batch_size`` is the batch of a Keras head's predict;
- ``images``: decoded, resized images for the fine-tuned network (input size, batch size).

``output_classes`` are the labels of the model's output columns (a scikit-learn model knows only
the classes it saw). Class *names* are not recorded here: training steps are cached by the content
of the run's table, which carries label indices, not names; the names come from the folder's
``metrics.json`` (`tasks.models.inference.class_names_of`). Only JSON is read back, validated by
these pydantic models: a recipe cannot run code.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasks.io import atomic_write_json
from tasks.layout import RunFolder
from tasks.models.embeddings import EmbeddingSpec

#: Bump when the meaning of a recipe changes (readers refuse versions they do not know).
RECIPE_VERSION = 1


class RecipeError(ValueError):
    """A recipe that is missing, unreadable or does not describe the model asked for; names the file."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PixelInputs(_Frozen):
    """Flat pixel vectors in [0, 1], as the pixel baselines were fitted on."""

    kind: Literal["pixels"] = "pixels"
    size: int = Field(ge=1)
    grayscale: bool


class EmbeddingInputs(_Frozen):
    """Backbone features as training cached them (every `EmbeddingSpec` field)."""

    kind: Literal["embeddings"] = "embeddings"
    backbone: str
    weights: str
    image_size: int = Field(ge=1)
    pooled: bool
    views: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    seed: int
    predict_batch_size: int | None = Field(None, ge=1)

    def spec(self) -> Any:
        """The `tasks.models.embeddings.EmbeddingSpec` these features were computed with."""
        return EmbeddingSpec(**self.model_dump(exclude={"kind", "predict_batch_size"}))


class ImageInputs(_Frozen):
    """RGB images in [0, 255] at ``image_size`` (the fine-tuned network's own input)."""

    kind: Literal["images"] = "images"
    image_size: int = Field(ge=1)
    batch_size: int = Field(ge=1)


Inputs = Union[PixelInputs, EmbeddingInputs, ImageInputs]


class InputsRecipe(_Frozen):
    """What one saved model eats and predicts (module docstring)."""

    version: int = RECIPE_VERSION
    model: str
    model_file: str
    target: str
    output_classes: list[int]
    inputs: Inputs = Field(discriminator="kind")

    @field_validator("model_file")
    @classmethod
    def plain_file_name(cls, value: str) -> str:
        """A name inside ``models/``: a recipe must not point a reader anywhere else."""
        if not value or Path(value).name != value or value.startswith("."):
            raise ValueError(f"must be a plain file name inside models/, got {value!r}")
        return value

    @field_validator("version")
    @classmethod
    def known_version(cls, value: int) -> int:
        if value != RECIPE_VERSION:
            raise ValueError(f"recipe version {value} is not known here (this code reads version {RECIPE_VERSION})")
        return value


def embedding_inputs(spec: Any, predict_batch_size: int | None = None) -> EmbeddingInputs:
    """The recipe inputs of features computed with ``spec`` (an `EmbeddingSpec`)."""
    return EmbeddingInputs(**asdict(spec), predict_batch_size=predict_batch_size)


def write_recipe(folder: Path, model: str, model_file: Path, target: str, classes: Any, inputs: Inputs) -> Path:
    """Write ``models/<model>.inputs.json`` of ``folder`` (a run or step folder), next to ``model_file``."""
    recipe = InputsRecipe(
        model=model,
        model_file=Path(model_file).name,
        target=target,
        output_classes=[int(c) for c in classes],
        inputs=inputs,
    )
    return atomic_write_json(RunFolder(folder).model_inputs(model), recipe.model_dump())


def read_recipe(folder: Path, model: str) -> InputsRecipe:
    """The recipe of ``model`` in ``folder`` (a run or champion folder), checked to describe that model."""
    path = RunFolder(folder).model_inputs(model)
    if not path.is_file():
        raise RecipeError(
            f"{path} not found: {model} has no inputs recipe (models trained before batch prediction existed "
            f"have none; retrain to use it)"
        )
    try:
        recipe = InputsRecipe.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors()[:3])
        raise RecipeError(f"{path} is not a valid inputs recipe ({problems})") from exc
    except (OSError, ValueError) as exc:
        raise RecipeError(f"{path} cannot be read ({type(exc).__name__}: {exc})") from exc
    if recipe.model != model or recipe.model_file.split(".", 1)[0] != model:
        raise RecipeError(f"{path} describes model {recipe.model!r} ({recipe.model_file}), not {model!r}")
    return recipe


def has_recipes(folder: Path) -> bool:
    """Whether any model in ``folder``'s ``models/`` has a recipe (the run was trained by this version)."""
    models = RunFolder(folder).models
    return models.is_dir() and any(models.glob("*.inputs.json"))
