"""What validation tells the rest of the pipeline: the report and the exception of a failed run.

Plain pydantic (no Great Expectations, no pandas): the report is what the Prefect tasks pass
around, what ``flows.caching`` stores for reuse, and what ``flows.full`` reads the validated
samples' path and the fallback prediction from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from pydantic import BaseModel, Field


@dataclass(frozen=True)
class CsvStage:
    """What the CSV stage (`tasks.validation.stages.validate_csvs`) hands the image scan and the
    report. ``suites`` are the suite summaries exactly as report.json stores them
    (`tasks.validation.gx_results.summarise_suite`); ``list_path`` is the CSV of image files to
    scan, written only when the CSVs passed."""

    passed: bool
    suites: list[dict[str, Any]]
    counts: dict[str, int] = field(default_factory=dict)
    list_path: Optional[str] = None
    label_distribution: Optional[dict[str, Any]] = None
    reference: Optional[str] = None
    classes: Optional[dict[str, list[str]]] = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImageStage:
    """What the image stage (`tasks.validation.stages.validate_images`) found: its suite summary,
    the quarantine list it wrote, and counts with a few examples for the report."""

    suite: dict[str, Any]
    quarantine_path: str
    quarantined: int
    labelled_images: int
    flagged_test: int
    test_images: int
    quarantine_examples: list[str]
    flagged_test_examples: list[str]

    @property
    def passed(self) -> bool:
        return int(self.suite["failed_critical"]) == 0


class SuiteSummary(BaseModel):
    """Per-suite counts (the detail is in report.json and the Data Docs)."""

    name: str
    success: bool
    evaluated: int
    failed: int
    failed_critical: int


class ValidationReport(BaseModel):
    """What validation found; small enough to pass between Prefect tasks."""

    passed: bool
    data_dir: str
    run_dir: str
    report_path: str
    docs_index: Optional[str]
    samples_path: Optional[str]
    quarantine_path: Optional[str]
    scan_path: Optional[str]
    counts: dict[str, int]
    suites: list[SuiteSummary]
    failures: list[str]
    warnings: list[str]
    quarantined: int
    flagged_test: int
    reference: str
    fallback_prediction: dict[str, int] = Field(default_factory=dict)
    summary_html: Optional[str] = None

    def failure_message(self) -> str:
        """The message of `ValidationFailed`: every failed rule with examples, and the Data Docs."""
        lines = [
            f"Data validation of {self.data_dir} failed: {len(self.failures)} rule(s) broken; "
            "nothing was trained and no earlier output was touched."
        ]
        lines += [f"  - {failure}" for failure in self.failures]
        lines.append(f"Report: {self.report_path}")
        if self.docs_index:
            lines.append(f"Data Docs: {self.docs_index}")
        if self.summary_html:
            lines.append(f"Summary (works offline): {self.summary_html}")
        return "\n".join(lines)


class ValidationFailed(Exception):
    """The data broke a critical rule; the message names each rule with examples."""

    def __init__(self, message: str, report: ValidationReport | None = None) -> None:
        super().__init__(message)
        self.report = report
