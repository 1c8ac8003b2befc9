"""Classify new images with the champion (or a run's best model): `python -m flows.predict`.

    python -m flows.predict --images DIR_OR_CSV [--model champion|RUN_ID|models:/NAME@ALIAS] [--output-dir outputs]

(``--output-dir`` is ``--data.output-dir``: the data section every flow shares.)

The images are a folder (its image files, sorted by name) or a CSV with a ``filename`` column
(relative to the CSV's folder, or absolute; a Kaggle split CSV such as ``public/test.csv`` works
as it is). They are validated like training's images: an unusable file is reported in the output
and the artifact, never fatal. The model's inputs are computed by the training code path from its
inputs recipe (`tasks.predict`), so an image gets exactly the class the training run recorded.
Writes ``<output-dir>/predictions/<time>-<id>/predictions.csv`` (filename, class index and name,
one probability column per class), ``gallery.png`` and ``prediction.json``, and publishes a table
and a markdown artifact. Fails with one sentence when there is no champion or no such run, or
the champion cannot serve (a model file listed in champion.json is gone, a registry.jsonl line is
garbled): checked before any work, and again under the champion lock (`tasks.predict.source`).

Locking: no output-directory lock (a prediction must not wait hours for a training run): each call
writes only its own new folder, and reads the champion through a snapshot taken under the
champion lock (`tasks.predict.source`), so a promotion swapping it meanwhile is never half-seen.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from flows.cli import fail, parse_model, quiet_environment
from flows.failures import INPUT_ERRORS, input_failure
from flows.notify import notify_on_failure
from flows.steps import check_images_task, predict_images_task, publish_prediction_task, take_model_task
from flows.watchdog import start_watchdog
from tasks.data.settings import DataSettings
from tasks.layout import OutputDir
from tasks.logs import printable
from tasks.predict.inputs import InputError, list_images
from tasks.predict.output import PredictionSummary
from tasks.predict.source import CHAMPION, PredictionError, check_request
from tasks.settings_fields import NonEmptyPath


class PredictParams(BaseModel):
    """Parameters of the prediction flow: the images, the model, and the data section of every flow
    (its output_dir: ``--output-dir``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    images: NonEmptyPath = Field(
        description="A folder of images (its image files, sorted by name) or a CSV with a filename column "
        "(names relative to the CSV's folder, or absolute)."
    )
    model: str = Field(
        CHAMPION,
        description="champion: the current champion; or a run id (a folder name under <output-dir>/runs): "
        "that run's best model; or a registered MLflow version, models:/living-things-coarse@champion or "
        "models:/NAME/VERSION (from the store runs track into).",
    )
    data: DataSettings = Field(
        DataSettings(),
        description="Where the outputs are (every flow's data section; only output_dir is read here: the "
        "champion and the runs are under it, and predictions go under its predictions/).",
    )


def check_params(params: PredictParams) -> None:
    """What must hold before any work (raises one sentence): the model exists, the images are listable."""
    check_request(params.data.output_dir, params.model)
    list_images(params.images)


@flow(name="living-things-predict", log_prints=True, on_failure=[notify_on_failure], on_crashed=[notify_on_failure])
def predict(params: PredictParams) -> PredictionSummary:
    """Classify the images with the champion or a run's model; write predictions.csv and artifacts."""
    try:
        check_params(params)  # nothing is written when the model or the images are missing
    except INPUT_ERRORS as exc:  # the user's to fix: one reason, no traceback (flows.failures)
        return input_failure(exc)  # type: ignore[no-any-return]
    output = OutputDir(params.data.output_dir)
    folder = output.new_prediction()
    try:
        source = take_model_task(output.root, params.model, folder.root)
    except INPUT_ERRORS as exc:  # the champion broke since check_params (checked again under its lock)
        return input_failure(exc)  # type: ignore[no-any-return]
    inputs = check_images_task(params.images, folder.root, output.image_scan_cache)
    summary = predict_images_task(source, Path(inputs.inputs_path), folder.root)
    published = publish_prediction_task(summary)
    print(
        f"Classified {summary.images - summary.unreadable} of {summary.images} image(s) with "
        f"{summary.model}: {published.predictions_path}"
    )
    return replace(published, unreadable_examples=inputs.unreadable_examples)


def format_summary(summary: PredictionSummary) -> str:
    """The closing lines: which model, the counts, where the files are."""
    source = "champion" if summary.source == CHAMPION else "run"
    lines = [
        f"Model:        {summary.model} ({source} {summary.run})",
        f"Images:       {summary.images} ({summary.unreadable} could not be used)",
        *[f"  not used:   {printable(example)}" for example in summary.unreadable_examples],
        "Classes:      " + ", ".join(f"{name} {n}" for name, n in summary.class_counts.items()),
        f"Predictions:  {summary.predictions_path}",
        f"Gallery:      {summary.gallery}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: check fast, classify, print where the predictions are."""
    params = parse_model(
        PredictParams, argv, description=(__doc__ or "").splitlines()[0], prog="python -m flows.predict"
    )
    quiet_environment()
    try:
        check_params(params)  # in a second, before a Prefect server starts
    except (PredictionError, InputError) as exc:
        fail(printable(str(exc)))  # file names from the images argument: no raw control characters
    start_watchdog()  # kills Prefect's temporary server if this process is killed
    try:
        summary = predict(params)
    except (PredictionError, InputError) as exc:
        fail(printable(str(exc)))
    except Exception as exc:  # one readable line; Prefect has already logged the traceback
        fail(printable(f"the prediction failed: {type(exc).__name__}: {exc}"))
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
