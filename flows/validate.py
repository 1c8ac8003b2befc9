"""Validate a data directory with Great Expectations: `python -m flows.validate`.

Runs the CSV suites, the class-balance suite and the image scan + image suite, builds Data Docs
(HTML) inside a new run folder ``<output-dir>/runs/<id>/validation/``, and publishes a Prefect
markdown artifact (key ``validation-report``). A dataset that breaks a critical rule stops here:
the command exits 1 and its message names every broken rule with examples; nothing earlier is
touched. The same `validate_dataset` flow is the first stage of ``flows.full``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field, ValidationError

from flows.cli import add_model_arguments, quiet_environment
from flows.notify import notify_on_failure
from flows.params import DataLocation
from tasks.data.dataset import DatasetError, check_data_dir
from tasks.validation.image_scan import scan_images_task
from tasks.layout import new_run_dir
from tasks.data.sample import SampleSpec, ensure_sample
from tasks.validation import (
    SCAN_NAME,
    ValidationFailed,
    ValidationReport,
    ValidationSettings,
    publish_artifact,
    publish_validation,
    validate_csvs,
    validate_images,
)

__all__ = ["ValidateParams", "ValidationFailed", "ValidationReport", "ValidationSettings", "main",
           "validate", "validate_dataset"]

# Thin task wrappers. No result caching: each run validates the data as it is now (the image
# scan has its own per-file cache), and the tasks return small dicts, not tables.
validate_csvs_task = task(validate_csvs, name="validate-csvs", cache_policy=NO_CACHE, persist_result=False)
validate_images_task = task(validate_images, name="validate-images", cache_policy=NO_CACHE, persist_result=False)
publish_task = task(publish_validation, name="publish-validation", cache_policy=NO_CACHE, persist_result=False)
scan_task = scan_images_task.with_options(cache_policy=NO_CACHE, persist_result=False)
prepare_sample_task = task(ensure_sample, name="prepare-sample", retries=2, retry_delay_seconds=[1, 5])


class ValidateParams(DataLocation):
    """Parameters of the standalone validation flow."""

    validation: ValidationSettings = Field(default_factory=ValidationSettings)


@flow(name="validate-dataset", log_prints=True)
def validate_dataset(
    data_dir: Path, run_dir: Path, settings: ValidationSettings, cache_dir: Path
) -> ValidationReport:
    """Validate ``data_dir``; write Data Docs, report.json and samples.csv under ``run_dir/validation/``.

    The image scan caches per file under ``cache_dir/image_scan/``. Raises `ValidationFailed`
    (after the report, Data Docs and artifact are written) when a critical rule is broken; the
    image scan is skipped when the CSVs already failed.
    """
    run_dir, cache_dir = Path(run_dir), Path(cache_dir)
    validation_dir = run_dir / "validation"
    csv_stage = validate_csvs_task(Path(data_dir), validation_dir, settings, runs_root=run_dir.parent)
    scan_summary: dict[str, Any] | None = None
    image_stage: dict[str, Any] | None = None
    if csv_stage["passed"]:
        scan_summary = scan_task(
            Path(csv_stage["list_path"]), validation_dir / SCAN_NAME, cache_dir / "image_scan",
            workers=settings.scan_workers, max_pixels=settings.max_image_pixels,
        )
        image_stage = validate_images_task(Path(scan_summary["scan_path"]), validation_dir, settings)
    report = publish_task(Path(data_dir), run_dir, settings, csv_stage, image_stage, scan_summary)
    publish_artifact(report)
    if not report.passed:
        raise ValidationFailed(report.failure_message(), report)
    print(f"Data validation passed ({len(report.warnings)} warning(s)). Data Docs: {report.docs_index}")
    return report


@flow(name="validate", log_prints=True, on_failure=[notify_on_failure], on_crashed=[notify_on_failure])
def validate(params: ValidateParams = ValidateParams()) -> ValidationReport:
    """Standalone validation: a new run folder, the embedded sample unless a data dir is given."""
    output_dir = Path(params.output_dir).expanduser().resolve()
    data_dir = params.data_dir
    if data_dir is None:
        data_dir = prepare_sample_task(output_dir / "sample", SampleSpec())
    run_dir = new_run_dir(output_dir)
    return validate_dataset(Path(data_dir), run_dir, params.validation, output_dir / "cache")


def format_report(report: ValidationReport) -> str:
    """The closing lines of a successful run."""
    lines = [f"Data validation passed: {', '.join(f'{k} {v:,} rows' for k, v in report.counts.items())}."]
    if report.warnings:
        lines.append(f"{len(report.warnings)} warning(s):")
        lines += [f"  - {w}" for w in report.warnings]
    lines += [f"Data Docs:  {report.docs_index}", f"Summary:    {report.summary_html}",
              f"Report:     {report.report_path}",
              f"Samples:    {report.samples_path}"]
    return "\n".join(lines)


def parse_params(argv: list[str] | None) -> ValidateParams:
    """``--data-dir``, ``--output-dir`` and one flag per `ValidationSettings` field."""
    prog = "python -m flows.validate"
    parser = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=ValidateParams.model_fields["data_dir"].description)
    parser.add_argument("--output-dir", type=Path, default=Path("outputs"),
                        help=ValidateParams.model_fields["output_dir"].description + " (default: outputs)")
    add_model_arguments(parser, ValidationSettings)
    namespace = vars(parser.parse_args(argv))
    data_dir, output_dir = namespace.pop("data_dir"), namespace.pop("output_dir")
    try:
        settings = ValidationSettings(**{k: v for k, v in namespace.items() if v is not None})
        return ValidateParams(data_dir=data_dir, output_dir=output_dir, validation=settings)
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        parser.exit(2, f"{prog}: error: {problems}\n")
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    """Command line: exit 0 when the data passed, 1 (with every broken rule) when it did not."""
    params = parse_params(argv)
    quiet_environment()
    if params.data_dir is not None:
        try:
            check_data_dir(params.data_dir)  # fail in a second, before a Prefect server starts
        except DatasetError as exc:
            print(f"Data validation failed: {exc}", file=sys.stderr)
            return 1
    try:
        report = validate(params)
    except ValidationFailed as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
