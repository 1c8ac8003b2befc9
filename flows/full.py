"""End-to-end pipeline: `python -m flows.full` (also the Prefect deployment entry point).

load -> checks -> stratified hold-out split (before any resampling) -> pixel baselines and the
transfer-learning model (stage 1 on cached backbone features, stage 2 fine-tuning) plus
classifiers on the backbone features -> evaluate all on the shared hold-out -> the best model's
test predictions -> submission.csv + metrics.json, inside a new run folder under
``<output-dir>/runs/``.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.futures import PrefectFuture

from flows.audit import ValidationKeySettings, run_audit
from flows.caching import cached_options, step_dir
from flows.cli import fail, parse_model, quiet_environment
from flows.cluster import check_workers, spread_backbone_pass, workers_api
from flows.failures import INPUT_ERRORS, input_failure
from flows.notify import notify_on_failure
from flows.params import LEGACY_FLAGS, PipelineParams
from flows.runners import make_task_runner
from flows.slots import training_slot
from flows.steps import (
    TRANSFER_CODE,
    adopt_task,
    artifacts_task,
    baseline_task,
    download_task,
    drift_reference_task,
    embeddings_task,
    evaluate_task,
    gate_task,
    kaggle_submit_task,
    pixel_features_task,
    plots_task,
    prepare_sample_task,
    reuse_validation_task,
    split_task,
    submission_task,
    transfer_task,
    validation_key_task,
)
from flows.tracking import finish_tracking, start_tracking
from flows.validate import validate_dataset
from flows.validation_reuse import remember_validation
from flows.watchdog import start_watchdog
from tasks.data.dataset import check_data_dir, check_output_outside, data_fingerprint, read_classes_json
from tasks.data.splitting import ROLE_TRAIN, read_table
from tasks.kaggle import require_kaggle
from tasks.layout import OutputDir, RunFolder
from tasks.lock import OutputDirBusy, ensure_free, output_dir_lock
from tasks.logs import get_logger
from tasks.models.embeddings import EmbeddingSpec, ensure_recipe
from tasks.models.settings import BaselineSettings, TransferSettings
from tasks.models.sizing import check_feature_memory, preset_warning
from tasks.results.evaluation import EvaluationSummary, format_comparison
from tasks.results.gate import Decision
from tasks.results.promotion import reconcile_champion
from tasks.results.provenance import provenance_lines, run_provenance
from tasks.validation.report import ValidationReport
from tasks.validation.settings import AuditSettings, ValidationSettings


@dataclass(frozen=True)
class RunSummary:
    """What a run of the full pipeline returns: the evaluation's summary, where the run's files
    are, the champion gate's decision and the run's provenance (settings, data, machine)."""

    evaluation: EvaluationSummary
    run_dir: str
    submission_path: str
    data_dir: str
    data_docs: str | None
    validation_warnings: int
    champion_decision: Decision
    plots: dict[str, str]
    provenance: dict[str, Any]


def check_inputs(params: PipelineParams) -> None:
    """What must hold before any work, for the command line and UI-triggered runs alike (raises
    one sentence): the output directory is not inside the data directory, and --download or
    --submit find the Kaggle client package and credentials."""
    data, kaggle = params.data, params.kaggle
    if data.data_dir is not None:
        check_output_outside(data.data_dir, data.output_dir)
    if kaggle.download or kaggle.submit:
        require_kaggle(secret_block=kaggle.kaggle_secret_block)


def worker_paths(params: PipelineParams) -> tuple[list[Path], list[Path]]:
    """What a cluster's workers must read (the data directory, when it exists here already; the
    sample lives in the output directory) and write (the output directory: caches, step folders)."""
    data_dir = params.data.data_dir
    readable = [Path(data_dir)] if data_dir is not None and Path(data_dir).is_dir() else []
    return readable, [Path(params.data.output_dir)]


def resolve_data_dir(params: PipelineParams) -> Path:
    """The user's data directory (downloaded first with --download), or the embedded sample."""
    data, kaggle = params.data, params.kaggle
    if kaggle.download and data.data_dir is not None:
        return download_task(data.data_dir, kaggle.competition, secret_block=kaggle.kaggle_secret_block)
    if data.data_dir is not None:
        return check_data_dir(data.data_dir)
    return prepare_sample_task(OutputDir(data.output_dir).sample, data.sample_spec())


@flow(name="living-things-full", log_prints=True, on_failure=[notify_on_failure], on_crashed=[notify_on_failure])
def full_pipeline(params: PipelineParams = PipelineParams()) -> RunSummary:
    """Validate, train and evaluate every model on one hold-out, publish metrics and a submission.

    The stages run as a subflow so that the task runner chosen in the parameters (threads or a
    Dask cluster) applies to UI-triggered and scheduled runs too, not only to the CLI. The whole
    run holds the output directory's lock (tasks.lock): a second run on it waits, or with
    ``runtime.wait`` off fails at once naming the holder. A run of a deployment first takes a
    slot of the global ``training`` concurrency limit (flows.slots): one training run at a time
    across every training deployment.
    """
    runtime = params.runtime
    try:
        check_inputs(params)  # before the lock creates anything in the output directory
        with training_slot(), output_dir_lock(params.data.output_dir, wait=runtime.wait):
            if runtime.task_runner == "thread":  # this flow's own runner: no subflow needed
                return run_stages.fn(params)
            runner = make_task_runner(runtime.task_runner, runtime.dask_address)
            with workers_api() as api_url:  # the workers report to this run's API (flows.cluster)
                if runtime.dask_address:
                    check_workers(runtime.dask_address, api_url, *worker_paths(params))
                return run_stages.with_options(task_runner=runner)(params)
    except INPUT_ERRORS as exc:  # the user's to fix: one reason, no traceback (flows.failures)
        return input_failure(exc)  # type: ignore[no-any-return]


@flow(name="living-things-stages", log_prints=True)
def run_stages(params: PipelineParams) -> RunSummary:
    """Every stage of the pipeline, on the task runner its parent flow picked."""
    split, output = params.split, OutputDir(params.data.output_dir)
    reconcile_champion(output.root)  # finish or undo a promotion a crash interrupted (logs what it did)
    tracking = start_tracking(params, output.root)  # the MLflow champion alias follows champion/ (flows.tracking)
    data_dir = resolve_data_dir(params)
    run = output.new_run()
    report = validate_or_reuse(data_dir, run.root, params.validation, output, params.runtime.refresh, params.audit)
    samples = Path(str(report.samples_path))
    n_classes = len(read_classes_json(run.classes).names(split.target))
    table = split_task(samples, run.root, split.target, split.holdout_fraction, split.seed, split.holdout_mode)
    if params.audit.changes_training:  # it takes training rows out of the split: before any training
        run_audit(params, table, run.root, output.cache)
    trained = train_models(params, table, n_classes, output.cache)
    if not params.audit.changes_training:  # report only: on the features the training step cached
        run_audit(params, table, run.root, output.cache)
    step_predictions = trained.predictions()  # waits for the baselines before their outputs are adopted
    for out in trained.step_outputs:
        adopt_task(out, run.root)
    run_predictions = {name: run.predictions / path.name for name, path in step_predictions.items()}
    evaluation = evaluate_task(table, run_predictions, run.classes, split.target, run.root)
    submission = submission_task(
        Path(evaluation.predictions_path),
        samples,
        split.target,
        evaluation.n_classes,
        run.root,
        fallback=report.fallback_prediction,
    )
    plots = plots_task(run.root)
    decision = gate_task(run.root, output.root, data_fingerprint(data_dir), params.gate)
    provenance = run_provenance(read_table(table), run, data_dir, params.data.data_dir is None, key_settings(params))
    extra = {"decision": decision, "submission": submission, "data_docs": report.docs_index, "provenance": provenance}
    artifacts_task(run.root, plots, extra)
    finish_tracking(tracking, params, run.root, decision, data_fingerprint(data_dir), plots, extra)  # never raises
    kaggle = params.kaggle
    if kaggle.submit:
        kaggle_submit_task(
            output.root, kaggle.submit_message, kaggle.competition, secret_block=kaggle.kaggle_secret_block
        )
    return RunSummary(
        evaluation=evaluation,
        run_dir=str(run.root),
        submission_path=str(submission),
        data_dir=str(data_dir),
        data_docs=report.docs_index,
        validation_warnings=len(report.warnings),
        champion_decision=decision,
        plots={k: str(v) for k, v in plots.items()},
        provenance=provenance,
    )


def key_settings(params: PipelineParams) -> dict[str, Any]:
    """The settings that decide the scores, for the report's provenance lines."""
    split, transfer = params.split, params.transfer.resolved()
    settings: dict[str, Any] = {"target": split.target, "seed": split.seed, "resampling": split.resampling}
    if transfer.enabled:
        settings |= {
            "backbone": f"{transfer.backbone} at {transfer.input_size()} px",
            "stage 1": transfer.stage1,
            "stage-2 epochs": transfer.stage2_epochs,
        }
    return settings


@dataclass
class TrainedModels:
    """What the training stage started: baseline futures, transfer outputs, step work folders."""

    futures: dict[str, PrefectFuture[Any]] = field(default_factory=dict)
    transfer: dict[str, str] = field(default_factory=dict)
    step_outputs: list[Path] = field(default_factory=list)

    def predictions(self) -> dict[str, Path]:
        """Model name -> predictions CSV in its step folder (waits for the baselines)."""
        found = {name: Path(future.result()) for name, future in self.futures.items()}
        return {**found, **{name: Path(path) for name, path in self.transfer.items()}}


def train_models(params: PipelineParams, table: Path, n_classes: int, cache_dir: Path) -> TrainedModels:
    """Pixel baselines, the backbone pass, classifiers on its features and the transfer model;
    scikit-learn fits are submitted so they overlap with the transfer model's training."""
    trainer = Trainer(params, table, n_classes, cache_dir)
    baselines, transfer = params.baselines, params.transfer.resolved()
    # The pixel baselines overlap with the backbone pass. Started after it instead (tried on <= 4
    # cores, where both want every core), they coincided with stage 2 and the other fits: peak RSS
    # at 10k images rose from 2.31 to 2.89 GB (benchmarks/bench_scale), so the overlap stays.
    if baselines.pixel_models:
        pixels = trainer.pixel_features()
        for kind in baselines.pixel_models:
            trainer.submit_baseline(kind, "pixels", pixels, baselines)
    if transfer.enabled or baselines.embedding_models:
        spec = EmbeddingSpec.of(transfer, params.split.seed)
        embeddings = trainer.backbone_features(transfer, spec)
        for model in baselines.embedding_models:
            trainer.submit_baseline(model, transfer.backbone, embeddings, baselines.on_embeddings())
        if transfer.enabled:
            trainer.train_transfer(transfer, embeddings)
        # What later data is compared with (tasks.drift); after the training steps, off their path.
        drift_reference_task(table, embeddings, spec)
    return trainer.trained


@dataclass
class Trainer:
    """The training stage of one run: what its steps share, and what it started (`trained`)."""

    params: PipelineParams
    table: Path
    n_classes: int
    cache_dir: Path
    trained: TrainedModels = field(default_factory=TrainedModels)

    @functools.cached_property
    def cached(self) -> dict[str, Any]:
        """Options of the cached steps (saves the result-storage block once per run)."""
        return cached_options(self.cache_dir, self.params.runtime.refresh)

    def pixel_features(self) -> Path:
        """The cached grayscale pixel matrix (cached results come back from plain JSON: paths as strings)."""
        size, refresh = self.params.baselines.pixel_size, self.params.runtime.refresh
        return Path(pixel_features_task.with_options(**self.cached)(self.table, size, self.cache_dir, refresh=refresh))

    def submit_baseline(self, kind: str, feature_name: str, features: Path, settings: BaselineSettings) -> None:
        """Start one scikit-learn fit in its own step folder; it runs while the next steps do."""
        split = self.params.split
        inputs = {"table": self.table, "features": features, "target": split.target, "settings": settings}
        out = step_dir(self.cache_dir, "baseline", baseline_task.fn, kind=kind, seed=split.seed, **inputs)
        self.trained.futures[f"{feature_name}_{kind}"] = baseline_task.with_options(**self.cached).submit(
            kind, feature_name, self.table, features, out, split.target, settings, split.seed
        )
        self.trained.step_outputs.append(out)

    def backbone_features(self, transfer: TransferSettings, spec: EmbeddingSpec) -> Path:
        """The backbone pass (spread over a Dask cluster's workers first, when there is one)."""
        refresh, chunk = self.params.runtime.refresh, transfer.feature_chunk
        check_feature_budget(transfer, self.table)  # before the hour-long pass, not after it
        on_cluster = self.params.runtime.task_runner == "dask"
        if on_cluster:  # the chunks run on the workers first; the step below assembles their files
            spread_backbone_pass(self.table, spec, self.cache_dir, chunk, refresh)
        step = embeddings_task.with_options(**self.cached)
        embeddings = Path(
            step(self.table, spec, self.cache_dir, refresh=refresh, chunk_size=chunk, reuse_chunks=on_cluster)
        )
        ensure_recipe(embeddings, spec)  # the step may come from the cache: its recipe may not
        return embeddings

    def train_transfer(self, transfer: TransferSettings, embeddings: Path) -> None:
        """The transfer model, its settings resolved for this machine before the key is computed."""
        from tasks.models.devices import for_machine, survey_devices  # defers Keras to runs that train

        split = self.params.split
        machine = survey_devices(transfer.precision)  # resolved before the key, and part of it
        transfer = for_machine(transfer, machine)
        inputs = {"table": self.table, "embeddings": embeddings, "settings": transfer, "split": split}
        out = step_dir(self.cache_dir, "transfer", TRANSFER_CODE, machine=machine, **inputs)
        self.trained.transfer = transfer_task.with_options(**self.cached)(
            self.table,
            embeddings,
            transfer,
            split,
            self.n_classes,
            out,
            self.cache_dir,
            machine,
            refresh=self.params.runtime.refresh,
        )
        self.trained.step_outputs.append(out)


def check_feature_budget(transfer: TransferSettings, table: Path) -> None:
    """Refuse features that would not fit in memory (`FeaturesTooLarge`); warn what
    ``--preset original`` costs at this size (tasks.models.sizing)."""
    frame = read_table(table)
    n_images, n_train = len(frame), int((frame["role"] == ROLE_TRAIN).sum())
    check_feature_memory(transfer, n_images, n_train)
    warning = preset_warning(transfer, n_images, n_train)
    if warning:
        get_logger().warning(warning)


def validate_or_reuse(
    data_dir: Path,
    run_dir: Path,
    settings: ValidationSettings,
    output: OutputDir,
    refresh: bool,
    audit: AuditSettings = AuditSettings(),
) -> ValidationReport:
    """Validation, the first stage: reused when nothing it looks at changed, else run in full."""
    key = validation_key_task(data_dir, ValidationKeySettings(validation=settings, audit=audit))
    report = None if refresh else reuse_validation_task(output.cache, key, run_dir, data_dir)
    if report is None:
        report = validate_dataset(data_dir, run_dir, settings, output.image_scan_cache, audit)
        remember_validation(report, output.cache, key)
    return report


def format_summary(summary: RunSummary) -> str:
    """The closing lines: the model table, then where everything is and the headline number."""
    evaluation, decision = summary.evaluation, summary.champion_decision
    return "\n".join(
        [
            format_comparison(evaluation.comparison),
            "",
            *provenance_lines(summary.provenance),
            "",
            f"Run folder:  {summary.run_dir}",
            f"Metrics:     {evaluation.metrics_path}",
            f"Submission:  {summary.submission_path}",
            f"Data Docs:   {summary.data_docs}",
            f"Plots:       {RunFolder(Path(summary.run_dir)).plots}",
            f"Champion:    {'promoted' if decision.promote else 'kept'}: {decision.reason}",
            f"Hold-out macro-F1 of the best model ({evaluation.best_model}): {evaluation.best_macro_f1:.3f} "
            f"(majority-class reference: {evaluation.majority_macro_f1:.3f})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: parse, check the data directory fast, run, print where things are."""
    params = parse_model(
        PipelineParams, argv, description=__doc__.splitlines()[0], prog="python -m flows.full", legacy=LEGACY_FLAGS
    )
    quiet_environment()
    data, kaggle, runtime = params.data, params.kaggle, params.runtime
    if kaggle.download and data.data_dir is None:
        fail("--download needs --data-dir (where to put the Kaggle data)")
    try:
        check_inputs(params)  # output dir outside the data dir; Kaggle client and credentials
        make_task_runner(runtime.task_runner, runtime.dask_address)  # bad combinations fail before any work
        if data.data_dir is not None and not kaggle.download:
            check_data_dir(data.data_dir)  # fail in seconds, before a Prefect server starts
    except (ValueError, RuntimeError) as exc:
        fail(str(exc))
    try:
        if not runtime.wait:
            ensure_free(data.output_dir)  # fail before a Prefect server starts
    except OutputDirBusy as exc:
        fail(str(exc))
    start_watchdog()  # kills Prefect's temporary server if this process is killed
    try:
        summary = full_pipeline(params)
    except OutputDirBusy as exc:
        fail(str(exc))
    except Exception as exc:  # one readable line; Prefect has already logged the traceback
        fail(f"the pipeline failed: {type(exc).__name__}: {exc}")
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
