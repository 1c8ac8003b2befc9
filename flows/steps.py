"""Every Prefect task of the pipeline, in one place: names for the UI, retries, caching.

The work is done by plain, typed functions under ``tasks/`` (unit-tested directly); this module
only wraps them. Retries: I/O steps retry with backoff, training steps only on transient errors
(flows.retries). Cached steps use `FingerprintPolicy`: their key is built from the contents of
their input files, their settings and the source of the code they run (flows.caching).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from flows.caching import FingerprintPolicy, adopt_outputs
from flows.result_records import PlainJSONSerializer
from flows.retries import IO_RETRIES, TRAINING_RETRIES, is_first_attempt
from flows.validation_reuse import reuse_validated_report, validation_key
from tasks.data.sample import ensure_sample
from tasks.data.settings import SplitSettings
from tasks.data.splitting import split_dataset
from tasks.drift.check import check_drift
from tasks.kaggle import download_competition, submit_champion
from tasks.models.baselines import train_baseline
from tasks.models.chunk_tasks import compute_chunk
from tasks.models.drift_reference import write_drift_reference
from tasks.models.embeddings import compute_embeddings
from tasks.models.features import pixel_features
from tasks.models.settings import TransferSettings
from tasks.predict.inputs import validate_inputs
from tasks.predict.output import predict_inputs
from tasks.predict.report import publish_prediction
from tasks.predict.source import take_model
from tasks.results.champion import promote_run
from tasks.results.evaluation import evaluate_models
from tasks.results.plots import make_run_plots
from tasks.results.report import publish_run_artifacts
from tasks.results.submission import write_run_submission

if TYPE_CHECKING:
    from tasks.models.devices import DevicePlan  # imports Keras: only a run that trains pays for it
from tasks.validation.image_scan import scan_images
from tasks.validation.stages import publish_validation, validate_csvs, validate_images

P = ParamSpec("P")
R = TypeVar("R")


def step(fn: Callable[P, R], **options: Any) -> Task[P, R]:
    """``prefect.task(fn, **options)`` with its type kept (Prefect's overloads do not take both)."""
    return task(**options)(fn)  # type: ignore[call-overload, no-any-return]


#: Cached steps persist their results (paths, small dicts) as plain JSON, never a pickle.
PERSISTED: dict[str, Any] = {"persist_result": True, "result_serializer": PlainJSONSerializer()}

# --- data --------------------------------------------------------------------------------------
prepare_sample_task = step(ensure_sample, name="prepare-sample", **IO_RETRIES)
split_task = step(split_dataset, name="split-holdout")
#: Retried on transient errors only (IO_RETRIES): an existing complete download is kept, so a retry is safe.
download_task = step(download_competition, name="kaggle-download", **IO_RETRIES)

# --- models (cached across runs) ---------------------------------------------------------------
pixel_features_task = step(
    pixel_features,
    name="pixel-features",
    **IO_RETRIES,  # feature steps read many files: retried on transient errors only
    cache_policy=FingerprintPolicy(),
    **PERSISTED,
)
embeddings_task = step(
    compute_embeddings,
    name="backbone-features",
    **IO_RETRIES,  # feature steps read many files: retried on transient errors only
    cache_policy=FingerprintPolicy(),
    **PERSISTED,
)
#: One chunk of the backbone pass, on a Dask worker (flows.cluster): its file is its own cache.
feature_chunk_task = step(
    compute_chunk,
    name="backbone-chunk",
    task_run_name="backbone-chunk-{pass_index}-{chunk_index}",
    **IO_RETRIES,
    cache_policy=NO_CACHE,
    persist_result=False,
)
baseline_task = step(
    train_baseline,
    name="train-baseline",
    task_run_name="train-{feature_name}-{kind}",
    **TRAINING_RETRIES,
    cache_policy=FingerprintPolicy(),
    **PERSISTED,
)


def run_transfer(
    table: Path,
    embeddings: Path,
    settings: TransferSettings,
    split: SplitSettings,
    n_classes: int,
    out_dir: Path,
    cache_dir: Path,
    machine: DevicePlan,
    refresh: bool = False,
) -> dict[str, str]:
    """Both transfer stages (imports Keras only when a run needs it, so the CLI starts fast).

    ``machine`` is what the flow surveyed before the key was computed (``settings`` are resolved
    for it: `tasks.models.devices.for_machine`), so the cache never hands a CPU-trained model to a
    GPU run or the other way round. A retry after a transient error resumes from the stage-2
    checkpoint, even under --refresh.
    """
    from tasks.models.transfer.train import train_transfer

    return train_transfer(
        table, embeddings, settings, split, n_classes, out_dir, cache_dir, refresh and is_first_attempt(), machine
    )


#: The module whose import closure keys the transfer step (this wrapper only imports it lazily).
TRANSFER_CODE = "tasks.models.transfer.train"
#: Keyed by the closure of the module that does the work.
transfer_task = step(
    run_transfer,
    name="train-transfer",
    **TRAINING_RETRIES,
    cache_policy=FingerprintPolicy(code=TRANSFER_CODE),
    **PERSISTED,
)

# --- results -----------------------------------------------------------------------------------
adopt_task = step(adopt_outputs, name="collect-outputs")
evaluate_task = step(evaluate_models, name="evaluate-holdout")
submission_task = step(write_run_submission, name="write-submission")
plots_task = step(make_run_plots, name="draw-plots")
gate_task = step(promote_run, name="champion-gate")  # no retries: each decision is recorded once
artifacts_task = step(publish_run_artifacts, name="publish-artifacts")
#: Never retried: a submission is not idempotent (a retry after a lost reply would submit twice).
kaggle_submit_task = step(submit_champion, name="kaggle-submit", retries=0)

# --- validation --------------------------------------------------------------------------------
# No result caching: each run validates the data as it is now (the image scan has its own
# per-file cache, and flows.full reuses a whole passed validation), and the tasks return small
# dicts, not tables.
UNCACHED: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
validate_csvs_task = step(validate_csvs, name="validate-csvs", **UNCACHED)
#: Retried on transient I/O errors; the per-file cache makes a retry cheap.
scan_images_task = step(scan_images, name="scan-images", retries=2, retry_delay_seconds=[1, 5], **UNCACHED)
validate_images_task = step(validate_images, name="validate-images", **UNCACHED)
publish_validation_task = step(publish_validation, name="publish-validation", **UNCACHED)
#: Key of a validation outcome (data, settings, code); computed in the flow's process, never cached.
validation_key_task = step(validation_key, name="validation-key", cache_policy=NO_CACHE)
reuse_validation_task = step(reuse_validated_report, name="reuse-validation", cache_policy=NO_CACHE)

# --- prediction --------------------------------------------------------------------------------
# Never cached: each call classifies the images as they are now with the model published now.
# The model runs in the flow's process (imports Keras only when the model needs it).
take_model_task = step(take_model, name="take-model", **UNCACHED)
check_images_task = step(validate_inputs, name="check-images", retries=2, retry_delay_seconds=[1, 5], **UNCACHED)
predict_images_task = step(predict_inputs, name="predict-images", **UNCACHED)
publish_prediction_task = step(publish_prediction, name="publish-predictions", **UNCACHED)

# --- drift -------------------------------------------------------------------------------------
#: A run's drift reference (seconds: one read of its cached features); written for every run, never cached.
drift_reference_task = step(write_drift_reference, name="drift-reference", **UNCACHED)
#: Today's data against the champion's (standalone validation); its event is emitted once per run.
check_drift_task = step(check_drift, name="check-drift", **UNCACHED)
