"""End-to-end pipeline: `python -m flows.full` (also the Prefect deployment entry point).

load -> checks -> stratified hold-out split (before any resampling) -> pixel baselines and the
transfer-learning model (stage 1 on cached backbone features, stage 2 fine-tuning) plus
classifiers on the backbone features -> evaluate all on the shared hold-out -> the best model's
test predictions -> submission.csv + metrics.json, inside a new run folder under
``<output-dir>/runs/``.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from flows.caching import (
    remember_validation,
    result_storage_block,
    reuse_validation,
    step_dir,
    validation_key,
)
from flows.cli import fail, parse_model, quiet_environment
from flows.notify import notify_on_failure
from flows.runners import make_task_runner
from flows.params import PipelineParams
from flows.steps import (
    adopt_task,
    artifacts_task,
    baseline_task,
    download_task,
    embeddings_task,
    evaluate_task,
    gate_task,
    kaggle_submit_task,
    pixel_features_task,
    plots_task,
    prepare_sample_task,
    split_task,
    submission_task,
    transfer_task,
)
from tasks.models.baselines import BaselineSettings
from tasks.results.champion import GateSettings
from tasks.data.dataset import check_data_dir, data_fingerprint, read_classes_json
from tasks.kaggle import KaggleCredentialsMissing, require_credentials
from tasks.models.embeddings import EmbeddingSpec
from tasks.results.evaluation import format_comparison
from tasks.layout import new_run_dir
from tasks.data.sample import SampleSpec
from tasks.models.transfer_settings import TransferSettings, resolve_input_size, seed_faithful_preset
from tasks.logs import get_logger
from tasks.validation import ValidationReport, publish_artifact

def resolve_data_dir(params: PipelineParams) -> Path:
    """The user's data directory (downloaded first with --download), or the embedded sample."""
    if params.download and params.data_dir is not None:
        return download_task(params.data_dir, params.competition, secret_block=params.kaggle_secret_block)
    if params.data_dir is not None:
        return check_data_dir(params.data_dir)
    spec = SampleSpec(per_family=params.sample_per_family, test_per_family=params.sample_test_per_family)
    return prepare_sample_task(Path(params.output_dir) / "sample", spec)


def transfer_settings(params: PipelineParams) -> TransferSettings:
    """The transfer model's settings from the run parameters (the preset overrides them)."""
    settings = TransferSettings(
        backbone=params.backbone, weights=params.weights, image_size=params.image_size, head=params.head,
        batch_size=params.batch_size, stage1_epochs=params.stage1_epochs, stage1_lr=params.stage1_lr,
        stage2_epochs=params.stage2_epochs, stage2_lr=params.stage2_lr, unfreeze_blocks=params.unfreeze_blocks,
        val_fraction=params.val_fraction, views=params.views, resampling=params.resampling,
        oversample_share=params.oversample_share, image_cache=params.image_cache, seed=params.seed,
    )
    return seed_faithful_preset(settings) if params.preset == "original" else settings


def embedding_spec(settings: TransferSettings) -> EmbeddingSpec:
    """Which cached backbone features the transfer model and the embedding baselines share."""
    size = resolve_input_size(settings.backbone, settings.image_size)
    return EmbeddingSpec(
        backbone=settings.backbone, weights=str(settings.weights), image_size=size,
        pooled=settings.head == "gap", views=settings.views, batch_size=settings.batch_size, seed=settings.seed,
    )


def baseline_settings(params: PipelineParams) -> BaselineSettings:
    """The scikit-learn baselines' hyper-parameters."""
    return BaselineSettings(
        seed=params.seed, rf_n_estimators=params.rf_n_estimators, rf_max_depth=params.rf_max_depth,
        svm_c=params.svm_c, svm_gamma=params.svm_gamma, svm_max_samples=params.svm_max_samples,
    )


@flow(name="living-things-full", log_prints=True, on_failure=[notify_on_failure], on_crashed=[notify_on_failure])
def full_pipeline(params: PipelineParams = PipelineParams()) -> dict[str, Any]:
    """Validate, train and evaluate every model on one hold-out, publish metrics and a submission.

    The stages run as a subflow so that the task runner chosen in the parameters (threads or a
    Dask cluster) applies to UI-triggered and scheduled runs too, not only to the CLI.
    """
    if params.task_runner == "thread":  # this flow's own runner: no subflow needed
        return run_stages.fn(params)
    runner = make_task_runner(params.task_runner, params.dask_address)
    return run_stages.with_options(task_runner=runner)(params)


@flow(name="living-things-stages", log_prints=True)
def run_stages(params: PipelineParams) -> dict[str, Any]:
    """Every stage of the pipeline, on the task runner its parent flow picked."""
    data_dir = resolve_data_dir(params)
    run_dir = new_run_dir(params.output_dir)
    cache_dir = Path(params.output_dir).resolve() / "cache"
    report = validate_or_reuse(data_dir, run_dir, params.validation, cache_dir, params.refresh)
    samples = Path(str(report.samples_path))
    classes_path = samples.parent / "classes.json"
    n_classes = len(read_classes_json(classes_path).names(params.target))
    table = split_task(samples, run_dir, params.target, params.holdout_fraction, params.seed, params.holdout_mode)
    cached = cached_options(cache_dir, params.refresh)
    futures: dict[str, PrefectFuture[Any]] = {}
    step_outputs: list[Path] = []
    if params.baselines:
        pixels = pixel_features_task.with_options(**cached)(table, params.pixel_size, cache_dir, refresh=params.refresh)
        for kind in params.baselines:
            out = step_dir(cache_dir, "baseline", baseline_task.fn, kind=kind, table=table, features=pixels,
                           target=params.target, settings=baseline_settings(params))
            futures[f"pixels_{kind}"] = baseline_task.with_options(**cached).submit(
                kind, "pixels", table, pixels, out, params.target, baseline_settings(params)
            )
            step_outputs.append(out)
    transfer_outputs: dict[str, str] = {}
    if params.transfer or params.embedding_baselines:
        settings = transfer_settings(params)
        embeddings = embeddings_task.with_options(**cached)(table, embedding_spec(settings), cache_dir, refresh=params.refresh)
        # Embedding classifiers: kernel SVM on raw features wants gamma="scale", not the pixel gamma.
        embed_settings = replace(baseline_settings(params), svm_gamma="scale", svm_c=1.0, rf_max_depth=None)
        for kind in params.embedding_baselines:
            out = step_dir(cache_dir, "baseline", baseline_task.fn, kind=kind, table=table, features=embeddings,
                           target=params.target, settings=embed_settings)
            futures[f"{settings.backbone}_{kind}"] = baseline_task.with_options(**cached).submit(
                kind, settings.backbone, table, embeddings, out, params.target, embed_settings
            )
            step_outputs.append(out)
        if params.transfer:
            out = step_dir(cache_dir, "transfer", "tasks.models.transfer", table=table, embeddings=embeddings,
                           settings=settings, target=params.target)
            transfer_outputs = transfer_task.with_options(**cached)(
                table, embeddings, settings, params.target, n_classes, out, cache_dir, refresh=params.refresh
            )
            step_outputs.append(out)
    predictions = {name: Path(future.result()) for name, future in futures.items()}
    predictions.update({name: Path(path) for name, path in transfer_outputs.items()})
    for out in step_outputs:
        adopt_task(out, run_dir)
    run_predictions = {name: run_dir / "predictions" / path.name for name, path in predictions.items()}
    summary = evaluate_task(table, run_predictions, classes_path, params.target, run_dir)
    submission = submission_task(
        Path(summary["predictions_path"]), samples, params.target, summary["n_classes"], run_dir,
        fallback=report.fallback_prediction,
    )
    plots = plots_task(run_dir)
    gate = GateSettings(min_improvement=params.gate_min_improvement, max_class_f1_drop=params.gate_max_class_f1_drop)
    decision = gate_task(run_dir, params.output_dir, data_fingerprint(data_dir), gate, params.force_promote)
    artifacts_task(run_dir, plots, {"decision": decision, "submission": submission, "data_docs": report.docs_index})
    if params.submit:
        kaggle_submit_task(params.output_dir, params.submit_message, params.competition,
                           secret_block=params.kaggle_secret_block)
    return {
        **summary, "run_dir": str(run_dir), "submission_path": str(submission), "data_dir": str(data_dir),
        "data_docs": report.docs_index, "validation_warnings": len(report.warnings),
        "champion_decision": decision.to_dict(), "plots": {k: str(v) for k, v in plots.items()},
    }


@task(name="reuse-validation", cache_policy=NO_CACHE)
def reuse_validation_task(cache_dir: Path, key: str | None, run_dir: Path) -> ValidationReport | None:
    """A passed validation of the very same data, settings and code, copied into this run."""
    report = reuse_validation(cache_dir, key, run_dir, ValidationReport)
    if report is not None:
        get_logger().info("Validation reused: same CSVs, images (size, mtime), settings and code as an earlier run")
        publish_artifact(report)  # type: ignore[arg-type]
    return report  # type: ignore[return-value]


def validate_or_reuse(data_dir: Path, run_dir: Path, settings: Any, cache_dir: Path, refresh: bool) -> ValidationReport:
    """Validation, the first stage: reused when nothing it looks at changed, else run in full."""
    from flows.validate import validate_dataset

    key = task(validation_key, name="validation-key")(data_dir, settings)
    report = None if refresh else reuse_validation_task(cache_dir, key, run_dir)
    if report is None:
        report = validate_dataset(data_dir, run_dir, settings, cache_dir)
        remember_validation(report, cache_dir, key)
    return report


def cached_options(cache_dir: Path, refresh: bool) -> dict[str, Any]:
    """Task options that persist cached results under the output directory (not the Prefect home)."""
    return {"result_storage": result_storage_block(cache_dir), "refresh_cache": refresh}


def format_summary(summary: dict[str, Any]) -> str:
    """The closing lines: the model table, then where everything is and the headline number."""
    return "\n".join(
        [
            format_comparison(summary["comparison"]),
            "",
            f"Run folder:  {summary['run_dir']}",
            f"Metrics:     {summary['metrics_path']}",
            f"Submission:  {summary['submission_path']}",
            f"Data Docs:   {summary['data_docs']}",
            f"Plots:       {Path(summary['run_dir']) / 'plots'}",
            f"Champion:    {'promoted' if summary['champion_decision']['promote'] else 'kept'}: "
            f"{summary['champion_decision']['reason']}",
            f"Hold-out macro-F1 of the best model ({summary['best_model']}): {summary['best_macro_f1']:.3f} "
            f"(majority-class reference: {summary['majority_macro_f1']:.3f})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: parse, check the data directory fast, run, print where things are."""
    params = parse_model(PipelineParams, argv, description=__doc__.splitlines()[0], prog="python -m flows.full")
    quiet_environment()
    if params.download and params.data_dir is None:
        fail("--download needs --data-dir (where to put the Kaggle data)")
    if params.download or params.submit:
        try:
            require_credentials(secret_block=params.kaggle_secret_block)
        except KaggleCredentialsMissing as exc:
            fail(str(exc))
    try:
        make_task_runner(params.task_runner, params.dask_address)  # bad combinations fail before any work
        if params.data_dir is not None and not params.download:
            check_data_dir(params.data_dir)  # fail in seconds, before a Prefect server starts
    except (ValueError, RuntimeError) as exc:
        fail(str(exc))
    try:
        summary = full_pipeline(params)
    except Exception as exc:  # one readable line; Prefect has already logged the traceback
        fail(f"the pipeline failed: {type(exc).__name__}: {exc}")
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
