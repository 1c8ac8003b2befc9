"""Every Prefect task of the pipeline, in one place: names for the UI, retries, caching.

The work is done by plain, typed functions under ``tasks/`` (unit-tested directly); this module
only wraps them. Retries: I/O steps retry with backoff, training steps only on transient errors
(flows.retries). Cached steps use `FingerprintPolicy`: their key is built from the contents of
their input files, their settings and the source of the code they run (flows.caching).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from flows.caching import FingerprintPolicy, adopt_outputs
from flows.retries import IO_RETRIES, TRAINING_RETRIES, is_first_attempt, retry_on_transient
from tasks.data.sample import ensure_sample
from tasks.data.splitting import split_dataset
from tasks.kaggle import download_competition, submit_champion
from tasks.models.baselines import train_baseline
from tasks.models.embeddings import compute_embeddings
from tasks.models.features import pixel_features
from tasks.models.transfer_settings import TransferSettings
from tasks.results.champion import promote_run
from tasks.results.evaluation import evaluate_models
from tasks.results.plots import make_run_plots
from tasks.results.report import publish_run_artifacts
from tasks.results.submission import write_run_submission

# Feature steps read many files but mostly compute: retry only what a retry can fix.
READ_RETRIES: dict[str, Any] = {**IO_RETRIES, "retry_condition_fn": retry_on_transient}

# --- data --------------------------------------------------------------------------------------
prepare_sample_task = task(ensure_sample, name="prepare-sample", **IO_RETRIES)
split_task = task(split_dataset, name="split-holdout")
download_task = task(download_competition, name="kaggle-download", **IO_RETRIES)

# --- models (cached across runs) ---------------------------------------------------------------
pixel_features_task = task(
    pixel_features, name="pixel-features", **READ_RETRIES,
    cache_policy=FingerprintPolicy(), persist_result=True,
)
embeddings_task = task(
    compute_embeddings, name="backbone-features", **READ_RETRIES,
    cache_policy=FingerprintPolicy(), persist_result=True,
)
baseline_task = task(
    train_baseline, name="train-baseline", task_run_name="train-{feature_name}-{kind}", **TRAINING_RETRIES,
    cache_policy=FingerprintPolicy(), persist_result=True,
)


def run_transfer(
    table: Path, embeddings: Path, settings: TransferSettings, target: str, n_classes: int, out_dir: Path,
    cache_dir: Path, refresh: bool = False,
) -> dict[str, str]:
    """Both transfer stages (imports Keras only when a run needs it, so the CLI starts fast).

    A retry after a transient error resumes from the stage-2 checkpoint, even under --refresh.
    """
    from tasks.models.transfer import train_transfer

    return train_transfer(table, embeddings, settings, target, n_classes, out_dir, cache_dir, refresh and is_first_attempt())


#: Keyed by the closure of the module that does the work (this wrapper only imports it lazily).
transfer_task = task(
    run_transfer, name="train-transfer", **TRAINING_RETRIES,
    cache_policy=FingerprintPolicy(code="tasks.models.transfer"), persist_result=True,
)

# --- results -----------------------------------------------------------------------------------
adopt_task = task(adopt_outputs, name="collect-outputs")
evaluate_task = task(evaluate_models, name="evaluate-holdout")
submission_task = task(write_run_submission, name="write-submission")
plots_task = task(make_run_plots, name="draw-plots")
gate_task = task(promote_run, name="champion-gate")  # no retries: each decision is recorded once
artifacts_task = task(publish_run_artifacts, name="publish-artifacts")
kaggle_submit_task = task(submit_champion, name="kaggle-submit", **IO_RETRIES)
