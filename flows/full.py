"""End-to-end pipeline: `python -m flows.full` (also the Prefect deployment entry point).

load -> checks -> stratified hold-out split (before any resampling) -> pixel baselines ->
evaluate on the shared hold-out -> predict the test set -> submission.csv + metrics.json,
all inside a new run folder under ``<output-dir>/runs/``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.cli import fail, parse_model, quiet_environment
from flows.params import PipelineParams
from tasks.baselines import train_pixel_baseline
from tasks.dataset import check_data_dir, load_dataset
from tasks.evaluation import evaluate_models, format_comparison
from tasks.features import pixel_features
from tasks.runs import new_run_dir
from tasks.sample import SampleSpec, ensure_sample
from tasks.splitting import split_dataset
from tasks.submission import write_run_submission

# Thin task wrappers: names for the UI, retries where I/O can fail transiently.
io_retries: dict[str, Any] = {"retries": 2, "retry_delay_seconds": [1, 5]}
prepare_sample_task = task(ensure_sample, name="prepare-sample", **io_retries)
load_dataset_task = task(load_dataset, name="load-dataset", **io_retries)
split_task = task(split_dataset, name="split-holdout")
pixel_features_task = task(pixel_features, name="pixel-features", **io_retries)
train_baseline_task = task(train_pixel_baseline, name="train-pixel-baseline", task_run_name="train-pixels-{kind}")
evaluate_task = task(evaluate_models, name="evaluate-holdout")
submission_task = task(write_run_submission, name="write-submission")


def resolve_data_dir(params: PipelineParams) -> Path:
    """The user's data directory, or the embedded sample (generated once, then reused)."""
    if params.data_dir is not None:
        return check_data_dir(params.data_dir)
    spec = SampleSpec(per_family=params.sample_per_family, test_per_family=params.sample_test_per_family)
    return prepare_sample_task(Path(params.output_dir) / "sample", spec)


@flow(name="living-things-full", log_prints=True)
def full_pipeline(params: PipelineParams = PipelineParams()) -> dict[str, Any]:
    """Train and evaluate every model on one hold-out, publish metrics and a submission."""
    data_dir = resolve_data_dir(params)
    run_dir = new_run_dir(params.output_dir)
    cache_dir = Path(params.output_dir).resolve() / "cache"
    samples = load_dataset_task(data_dir, run_dir)
    table = split_task(samples, run_dir, params.target, params.holdout_fraction, params.seed, params.holdout_mode)
    features = pixel_features_task(table, params.pixel_size, cache_dir)
    futures = {
        f"pixels_{kind}": train_baseline_task.submit(
            kind, table, features, run_dir, params.target, params.seed,
            rf_n_estimators=params.rf_n_estimators, rf_max_depth=params.rf_max_depth,
            svm_c=params.svm_c, svm_gamma=params.svm_gamma, svm_max_samples=params.svm_max_samples,
        )
        for kind in params.baselines
    }
    predictions = {name: future.result() for name, future in futures.items()}
    summary = evaluate_task(table, predictions, run_dir / "classes.json", params.target, run_dir)
    submission = submission_task(
        Path(summary["predictions_path"]), samples, params.target, summary["n_classes"], run_dir
    )
    return {**summary, "run_dir": str(run_dir), "submission_path": str(submission), "data_dir": str(data_dir)}


def format_summary(summary: dict[str, Any]) -> str:
    """The closing lines: the model table, then where everything is and the headline number."""
    return "\n".join(
        [
            format_comparison(summary["comparison"]),
            "",
            f"Run folder:  {summary['run_dir']}",
            f"Metrics:     {summary['metrics_path']}",
            f"Submission:  {summary['submission_path']}",
            f"Hold-out macro-F1 of the best model ({summary['best_model']}): {summary['best_macro_f1']:.3f} "
            f"(majority-class reference: {summary['majority_macro_f1']:.3f})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: parse, check the data directory fast, run, print where things are."""
    params = parse_model(PipelineParams, argv, description=__doc__.splitlines()[0], prog="python -m flows.full")
    quiet_environment()
    if params.data_dir is not None:
        try:
            check_data_dir(params.data_dir)  # fail in seconds, before a Prefect server starts
        except ValueError as exc:
            fail(str(exc))
    try:
        summary = full_pipeline(params)
    except Exception as exc:  # one readable line; Prefect has already logged the traceback
        fail(f"the pipeline failed: {type(exc).__name__}: {exc}")
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
