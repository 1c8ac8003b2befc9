"""What validation tells the rest of the pipeline: the report and the exception of a failed run.

Plain pydantic (no Great Expectations, no pandas): the report is what the Prefect tasks pass
around, what ``flows.caching`` stores for reuse, and what ``flows.full`` reads the validated
samples' path and the fallback prediction from.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field


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
