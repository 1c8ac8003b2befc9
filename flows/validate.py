"""Validate a data directory with Great Expectations: `python -m flows.validate`.

Runs the CSV suites, the class-balance suite and the image scan + image suite, builds Data Docs
(HTML) inside a new run folder ``<output-dir>/runs/<id>/validation/``, and publishes a Prefect
markdown artifact (key ``validation-report``). A dataset that breaks a critical rule stops here:
the command exits 1 and its message names every broken rule with examples; nothing earlier is
touched. The same `validate_dataset` flow is the first stage of ``flows.full``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from flows.cli import parse_model, quiet_environment
from flows.failures import INPUT_ERRORS, input_failure
from flows.notify import notify_on_failure
from flows.steps import (
    check_drift_task,
    prepare_sample_task,
    publish_validation_task,
    scan_images_task,
    validate_csvs_task,
    validate_images_task,
)
from flows.watchdog import start_watchdog
from tasks.data.dataset import DatasetError, check_data_dir, check_output_outside
from tasks.data.settings import DataSettings
from tasks.layout import OutputDir, RunFolder
from tasks.lock import output_dir_lock
from tasks.logs import printable
from tasks.validation.image_scan import ScanSummary
from tasks.validation.rendering import publish_artifact
from tasks.validation.report import ImageStage, ValidationFailed, ValidationReport
from tasks.validation.settings import AuditSettings, ValidationSettings

__all__ = [
    "ValidateParams",
    "ValidationFailed",
    "ValidationReport",
    "ValidationSettings",
    "main",
    "validate",
    "validate_dataset",
]


class ValidateParams(BaseModel):
    """Parameters of the standalone validation flow: the full pipeline's sections it needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: DataSettings = Field(DataSettings(), description="Where the data is and where outputs go.")
    validation: ValidationSettings = Field(ValidationSettings(), description="Data validation thresholds.")
    audit: AuditSettings = Field(
        AuditSettings(), description="The data audit (here: hash duplicates and image issues; no features)."
    )


@flow(name="validate-dataset", log_prints=True)
def validate_dataset(
    data_dir: Path,
    run_dir: Path,
    settings: ValidationSettings,
    scan_cache: Path,
    audit: AuditSettings = AuditSettings(),
) -> ValidationReport:
    """Validate ``data_dir``; write Data Docs, report.json and samples.csv under ``run_dir/validation/``.

    The image scan caches per file under ``scan_cache`` (``OutputDir.image_scan_cache``). Raises
    `ValidationFailed` (after the report, Data Docs and artifact are written) when a critical rule
    is broken; the image scan is skipped when the CSVs already failed.
    """
    run = RunFolder(run_dir)
    csv_stage = validate_csvs_task(Path(data_dir), run.validation, settings, runs_root=run.root.parent)
    scan_summary: ScanSummary | None = None
    image_stage: ImageStage | None = None
    if csv_stage.passed and csv_stage.list_path:
        scan_summary = scan_images_task(
            Path(csv_stage.list_path),
            run.image_scan,
            Path(scan_cache),
            workers=settings.scan_workers,
            max_pixels=settings.max_image_pixels,
        )
        image_stage = validate_images_task(Path(scan_summary.scan_path), run.validation, settings)
    report = publish_validation_task(Path(data_dir), run.root, settings, csv_stage, image_stage, scan_summary, audit)
    publish_artifact(report)
    if not report.passed:
        raise ValidationFailed(report.failure_message(), report)
    print(f"Data validation passed ({len(report.warnings)} warning(s)). Data Docs: {report.docs_index}")
    return report


@flow(name="validate", log_prints=True, on_failure=[notify_on_failure], on_crashed=[notify_on_failure])
def validate(params: ValidateParams = ValidateParams()) -> ValidationReport:
    """Standalone validation: a new run folder, the embedded sample unless a data dir is given.

    Holds the output directory's lock (tasks.lock) throughout, like ``full_pipeline``: a run that
    finds it taken waits for the holder (one log line names it). Data that passed are compared
    with the champion's (tasks.drift.check: ``data-drift`` artifact, ``validation/drift.json``);
    changed data emit ``living-things.data.changed``, which the weekly-retrain deployment's trigger
    turns into a retrain.
    """
    try:
        if params.data.data_dir is not None:  # UI-triggered runs too: nothing is written into the data
            check_output_outside(params.data.data_dir, params.data.output_dir)
        output = OutputDir(params.data.output_dir)
        with output_dir_lock(output.root, wait=True):
            data_dir = params.data.data_dir
            if data_dir is None:
                data_dir = prepare_sample_task(output.sample, params.data.sample_spec())
            run = output.new_run()
            report = validate_dataset(
                Path(data_dir), run.root, params.validation, output.image_scan_cache, params.audit
            )
            check_drift_task(report, output.root, params.validation)  # vs the champion; may emit an event
            return report
    except INPUT_ERRORS as exc:  # the user's to fix: one reason, no traceback (flows.failures)
        return input_failure(exc)  # type: ignore[no-any-return]


def format_report(report: ValidationReport) -> str:
    """The closing lines of a successful run."""
    lines = [f"Data validation passed: {', '.join(f'{k} {v:,} rows' for k, v in report.counts.items())}."]
    if report.warnings:
        lines.append(f"{len(report.warnings)} warning(s):")
        lines += [f"  - {printable(w)}" for w in report.warnings]  # they quote file names from the data
    lines += [
        f"Data Docs:  {report.docs_index}",
        f"Summary:    {report.summary_html}",
        f"Report:     {report.report_path}",
        f"Samples:    {report.samples_path}",
    ]
    return "\n".join(lines)


def parse_params(argv: list[str] | None) -> ValidateParams:
    """One flag per field, grouped by section, built like every entry point's (flows.cli)."""
    return parse_model(
        ValidateParams, argv, description=(__doc__ or "").splitlines()[0], prog="python -m flows.validate"
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: exit 0 when the data passed, 1 (with every broken rule) when it did not."""
    params = parse_params(argv)
    quiet_environment()
    if params.data.data_dir is not None:
        try:
            check_output_outside(params.data.data_dir, params.data.output_dir)  # nothing is written there
            check_data_dir(params.data.data_dir)  # fail in a second, before a Prefect server starts
        except DatasetError as exc:
            print(f"Data validation failed: {exc}", file=sys.stderr)
            return 1
    start_watchdog()  # kills Prefect's temporary server if this process is killed
    try:
        report = validate(params)
    except ValidationFailed as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
