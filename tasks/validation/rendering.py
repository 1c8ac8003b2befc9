"""How a validation outcome is shown: an offline HTML summary and the Prefect markdown artifact.

Both are written from the `ValidationReport` alone (no Great Expectations import): the HTML page
links each suite's Data Docs page by relative path, so the run folder can be moved or copied
(``flows.caching`` reuses it) and the page still works without a network.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

from tasks.io import atomic_write_text
from tasks.validation.report import ValidationReport

#: Key of the Prefect markdown artifact (one per validation run; the UI keeps its history).
ARTIFACT_KEY = "validation-report"


def write_summary_html(report: ValidationReport, path: Path, docs_index: Path) -> Path:
    """A self-contained HTML page of the outcome, linking each suite's Data Docs page.

    GX's own index.html lists validation results with JavaScript loaded from CDNs, so offline
    that list stays empty; this page needs nothing but the files of the run folder.
    """
    docs = Path(docs_index).parent
    rows = []
    for suite in report.suites:
        pages = sorted(docs.glob(f"validations/{suite.name}/**/*.html"))
        link = (
            f'<a href="{escape(str(pages[-1].relative_to(path.parent)))}">{escape(suite.name)}</a>'
            if pages
            else escape(suite.name)
        )
        rows.append(
            f"<tr><td>{link}</td><td>{'passed' if suite.success else 'failed'}</td>"
            f"<td>{suite.evaluated}</td><td>{suite.failed}</td><td>{suite.failed_critical}</td></tr>"
        )
    sections = []
    for title, items in (
        ("Failures (the run stops)", report.failures),
        ("Warnings (the run continues)", report.warnings),
    ):
        if items:
            sections.append(f"<h2>{title}</h2><ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>")
    body = (
        f"<h1>Data validation {'passed' if report.passed else 'FAILED'}</h1>"
        f"<p>Data: <code>{escape(report.data_dir)}</code></p>"
        "<table border=1 cellpadding=4><tr><th>suite (Data Docs page)</th><th>result</th><th>expectations</th>"
        "<th>failed</th><th>critical</th></tr>" + "".join(rows) + "</table>"
        f"<p>Rows: {escape(', '.join(f'{k} {v:,}' for k, v in report.counts.items()))}. "
        f"Quarantined train/val images: {report.quarantined}; flagged test images: {report.flagged_test}. "
        f"Reference distribution: {escape(report.reference)}.</p>"
        + "".join(sections)
        + f'<p><a href="{escape(str(Path(docs_index).relative_to(path.parent)))}">Great Expectations Data Docs index</a>'
        f' &middot; <a href="{escape(os.path.relpath(report.report_path, path.parent))}">report.json</a></p>'
    )
    html = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Data validation</title></head><body>{body}</body></html>\n"
    return atomic_write_text(path, html)


def render_markdown(report: ValidationReport, limit: int = 10) -> str:
    """The Prefect artifact: per-suite table, failures and warnings with examples, where things are."""
    verdict = "PASSED" if report.passed else "FAILED"
    lines = [
        f"# Data validation {verdict}",
        "",
        f"Data: `{report.data_dir}`",
        "",
        "| suite | result | expectations | failed | critical |",
        "|---|---|---|---|---|",
    ]
    for suite in report.suites:
        lines.append(
            f"| {suite.name} | {'passed' if suite.success else 'failed'} | {suite.evaluated} | "
            f"{suite.failed} | {suite.failed_critical} |"
        )
    lines += [
        "",
        "Rows: " + ", ".join(f"{k} {v:,}" for k, v in report.counts.items()),
        f"Quarantined train/val images: {report.quarantined}; flagged test images: {report.flagged_test}",
        f"Reference distribution: {report.reference}",
        "",
    ]
    for title, items in (
        ("Failures (the run stops)", report.failures),
        ("Warnings (the run continues)", report.warnings),
    ):
        if items:
            lines += [f"## {title}", ""] + [f"- {_md(item)}" for item in items[:limit]]
            if len(items) > limit:
                lines.append(f"- ... and {len(items) - limit} more (see report.json)")
            lines.append("")
    lines += [
        f"Data Docs: `{report.docs_index}` (offline summary: `{report.summary_html}`)",
        "",
        f"Report: `{report.report_path}`",
    ]
    if report.samples_path:
        lines += ["", f"Validated samples: `{report.samples_path}`"]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def publish_artifact(report: ValidationReport) -> None:
    """Create the ``validation-report`` markdown artifact when running inside a Prefect run."""
    try:
        from prefect.context import get_run_context

        get_run_context()
    except Exception:
        return
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        key=ARTIFACT_KEY, markdown=render_markdown(report), description="Great Expectations data validation summary"
    )
