"""The stages of data validation, each a plain function that returns a small typed result.

Why a separate step from ``tasks.data.dataset.load_samples``: that function raises on the first bad
row, while a user needs every problem at once (which file, which row, which rule). So the CSVs
are read here as raw strings and validated by the suites of ``expectations.suites``; only a
dataset that passed is loaded with ``load_samples``.

The ``flows.validate.validate_dataset`` flow runs them in this order (the Prefect tasks pass
these results around, never tables):

1. `validate_csvs`: train/val/test CSV suites (critical) and the class-balance suite (warnings);
   writes the list of image files to scan.
2. ``tasks.validation.image_scan.scan_images``: the parallel, cached image scan.
3. `validate_images`: the image suite on the scan table and the quarantine policy.
4. `publish_validation`: builds the Data Docs, writes ``report.json``, ``quarantine.csv`` and
   ``samples.csv`` (only when the data passed), and returns a `ValidationReport`.

Policy for bad images (documented here because the report quotes it):

- A train/val image that is missing, empty, undecodable (truncated, not an image), smaller than
  ``min_short_side`` or larger than ``max_image_pixels`` is *quarantined*: listed in the report
  with its reason and left out of ``samples.csv``. Validation fails only if more than
  ``max_bad_image_fraction`` of train+val images are unusable.
- A test image with the same problems keeps its row in ``samples.csv`` with ``image_ok=False``:
  it still gets a submission row, predicted with the fallback (the most frequent train+val class,
  ``report.json["fallback_prediction"]``), and is flagged in the report. More than
  ``max_bad_image_fraction`` unusable test images fails validation too, since such a submission
  would be mostly guesses.

GX is imported inside the stages, not here: every command line imports ``flows.steps``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.confine import make_dirs
from tasks.data.columns import GROUP, IMAGE_OK, LABELLED_SPLITS, ROW, SAMPLE_COLUMNS, SPLITS, TARGETS
from tasks.data.dataset import (
    ClassInfo,
    DatasetError,
    check_data_dir,
    check_output_outside,
    load_samples,
    read_class_info,
    split_csv,
)
from tasks.io import atomic_write_json, atomic_write_text
from tasks.layout import RunFolder
from tasks.logs import get_logger, printable
from tasks.validation.audit import audit_messages, audit_scan
from tasks.validation.gx_results import describe_outcome, fatal_suite, summarise_suite
from tasks.validation.image_scan import ScanSummary, read_scan
from tasks.validation.rendering import write_summary_html
from tasks.validation.report import CsvStage, ImageStage, SuiteSummary, ValidationReport
from tasks.validation.settings import AuditSettings, ValidationSettings
from tasks.validation.tables import (
    is_known_taxonomy,
    label_distribution,
    prepare_balance_table,
    prepare_image_table,
    prepare_labelled_tables,
    prepare_test_table,
    read_raw_csv,
    reference_distribution,
    write_scan_list,
)


def _run_of(validation_dir: Path) -> RunFolder:
    """The run folder whose ``validation/`` folder (``RunFolder.validation``) this is."""
    return RunFolder(Path(validation_dir).parent)


# --------------------------------------------------------------------------------------------
# Stage 1: CSVs and class balance


def validate_csvs(
    data_dir: Path, validation_dir: Path, settings: ValidationSettings, runs_root: Path | None = None
) -> CsvStage:
    """Run the train/val/test CSV suites and the class-balance suite on the raw CSVs; when they
    pass, write the list of image files to scan (`CsvStage.list_path`)."""
    from expectations.context import make_context

    run = _run_of(validation_dir)
    check_output_outside(data_dir, run.root)  # every flow that validates: never write into the data
    make_dirs(run.validation)
    try:
        root = check_data_dir(data_dir)
        classes = read_class_info(root)
    except DatasetError as exc:
        return CsvStage(passed=False, suites=[fatal_suite("layout", str(exc))])
    raws, suites = read_raw_csvs(root)
    context = make_context(run)
    tables = prepare_labelled_tables(raws, classes, root)
    test_table = prepare_test_table(raws, root)
    suites += run_csv_suites(context, run, tables, test_table, raws, classes, settings)
    balance = prepare_balance_table(tables, classes)
    reference, reference_name, note = reference_distribution(settings.reference, classes, runs_root, run.root)
    suites.append(run_balance_suite(context, run, balance, classes, (reference, reference_name), settings))
    passed = not any(s["failed_critical"] for s in suites)
    list_path = str(write_scan_list(root, {**tables, "test": test_table}, run.scan_list)) if passed else None
    log_suites(suites)
    return CsvStage(
        passed=passed,
        suites=suites,
        counts={split: len(raw) for split, raw in raws.items() if raw is not None},
        list_path=list_path,
        label_distribution=label_distribution(balance, classes),
        reference=reference_name,
        classes=classes.to_json(),
        notes=[note] if note else [],
    )


def read_raw_csvs(root: Path) -> tuple[dict[str, pd.DataFrame | None], list[dict[str, Any]]]:
    """Each split's CSV as raw strings (None when unreadable), and a fatal suite per unreadable one."""
    raws: dict[str, pd.DataFrame | None] = {}
    fatal = []
    for split in SPLITS:
        try:
            raws[split] = read_raw_csv(split_csv(root, split))
        except DatasetError as exc:
            raws[split] = None
            fatal.append(fatal_suite(f"{split}_csv", str(exc)))
    return raws, fatal


def run_csv_suites(
    context: Any,
    run: RunFolder,
    tables: dict[str, pd.DataFrame],
    test_table: pd.DataFrame | None,
    raws: dict[str, pd.DataFrame | None],
    classes: ClassInfo,
    settings: ValidationSettings,
) -> list[dict[str, Any]]:
    """The labelled CSVs' suites (schema, labels, taxonomy, no overlap with the other splits) and test.csv's."""
    from expectations import suites as S
    from expectations.context import validate_frame

    present = [s for s in LABELLED_SPLITS if raws.get(s) is not None]
    summaries = []
    for split, table in tables.items():
        suite = S.build_labelled_csv_suite(
            split,
            len(classes.coarse),
            len(classes.fine),
            known_taxonomy=is_known_taxonomy(classes),
            other_splits=[s for s in present if s != split],
            min_rows=settings.min_rows,
            max_rows=settings.max_rows,
        )
        result = validate_frame(context, suite, table, [ROW, "filename"], run_name=run.root.name)
        summaries.append(summarise_suite(suite.name, result, settings.max_examples))
    if test_table is not None:
        suite = S.build_test_csv_suite(other_splits=present, min_rows=settings.min_rows, max_rows=settings.max_rows)
        result = validate_frame(context, suite, test_table, [ROW, "filename"], run_name=run.root.name)
        summaries.append(summarise_suite(suite.name, result, settings.max_examples))
    return summaries


def run_balance_suite(
    context: Any,
    run: RunFolder,
    balance: pd.DataFrame,
    classes: ClassInfo,
    reference: tuple[dict[str, dict[str, float]] | None, str],
    settings: ValidationSettings,
) -> dict[str, Any]:
    """The class-balance suite (warnings): class counts, imbalance, distance from the reference
    distribution ``(distribution, its name)``."""
    from expectations import suites as S
    from expectations.context import validate_frame

    distribution, name = reference
    suite = S.build_balance_suite(
        {"coarse": classes.coarse, "fine": classes.fine},
        min_class_count=settings.min_class_count,
        max_imbalance_ratio=settings.max_imbalance_ratio,
        reference=distribution,
        reference_name=name,
        max_kl_divergence=settings.max_kl_divergence,
    )
    result = validate_frame(context, suite, balance, [], run_name=run.root.name)
    return summarise_suite(suite.name, result, settings.max_examples)


def log_suites(suites: list[dict[str, Any]]) -> None:
    """One log line per suite: passed or failed, and its counts."""
    log = get_logger(__name__)
    for summary in suites:
        log.info(
            "Suite %s: %s (%d expectations, %d failed, %d critical)",
            summary["name"],
            "passed" if summary["success"] else "FAILED",
            summary["evaluated"],
            summary["failed"],
            summary["failed_critical"],
        )


# --------------------------------------------------------------------------------------------
# Stage 3: images (stage 2, the scan, is tasks.validation.image_scan)


def validate_images(scan_path: Path, validation_dir: Path, settings: ValidationSettings) -> ImageStage:
    """Run the image suite on the scan table; write quarantine.csv; return counts and outcomes."""
    from expectations import suites as S
    from expectations.context import make_context, validate_frame

    run = _run_of(validation_dir)
    table = prepare_image_table(read_scan(Path(scan_path)), settings)
    suite = S.build_image_suite(
        min_short_side=settings.min_short_side,
        max_pixels=settings.max_image_pixels,
        max_bad_fraction=settings.max_bad_image_fraction,
    )
    result = validate_frame(
        make_context(run), suite, table.drop(columns=["reason"]), ["split", "filename", "error"], run_name=run.root.name
    )
    summary = summarise_suite(suite.name, result, settings.max_examples)
    bad = table[table["reason"].notna()]
    quarantine_path = run.quarantine
    atomic_write_text(quarantine_path, bad.loc[:, ["split", "filename", "path", "reason"]].to_csv(index=False))
    labelled_bad = bad[bad["split"].isin(LABELLED_SPLITS)]
    test_bad = bad[~bad["split"].isin(LABELLED_SPLITS)]
    n_labelled = int(table["split"].isin(LABELLED_SPLITS).sum())
    get_logger(__name__).info(
        "Suite images: %s; %d of %d train/val images quarantined, %d test images flagged",
        "passed" if summary["success"] else "failed",
        len(labelled_bad),
        n_labelled,
        len(test_bad),
    )
    return ImageStage(
        suite=summary,
        quarantine_path=str(quarantine_path),
        quarantined=len(labelled_bad),
        labelled_images=n_labelled,
        flagged_test=len(test_bad),
        test_images=int(len(table) - n_labelled),
        quarantine_examples=_file_examples(labelled_bad, settings.max_examples),
        flagged_test_examples=_file_examples(test_bad, settings.max_examples),
    )


def _file_examples(bad: pd.DataFrame, limit: int) -> list[str]:
    return [printable(f"{r.split}/{r.filename}: {r.reason}") for r in bad.head(limit).itertuples(index=False)]


# --------------------------------------------------------------------------------------------
# Stage 4: publish


def write_validated_samples(
    data_dir: Path,
    validation_dir: Path,
    quarantine_path: Path | None,
    scan_path: Path | None = None,
    audit: AuditSettings | None = None,
) -> tuple[Path, dict[str, int]]:
    """``samples.csv`` (``tasks.data.dataset.write_samples`` format + ``image_ok``) without quarantined
    train/val rows; test rows are all kept, unusable ones with ``image_ok=False``. Also writes
    ``classes.json``. With the scan table, the scan audit runs first (tasks.validation.audit) and
    ``samples.csv`` gets each image's duplicate ``group``. Returns the path and the most frequent
    train+val class per target."""
    run = _run_of(validation_dir)
    samples, classes = load_samples(data_dir)
    bad = (
        pd.read_csv(quarantine_path, dtype=str, keep_default_na=False)
        if quarantine_path and Path(quarantine_path).is_file()
        else pd.DataFrame(columns=["split", "filename"])
    )
    bad_keys = set(zip(bad["split"], bad["filename"]))
    samples[IMAGE_OK] = [(s, f) not in bad_keys for s, f in zip(samples["split"], samples["filename"])]
    keep = samples[IMAGE_OK] | (samples["split"] == "test")
    samples = samples.loc[keep].reset_index(drop=True)
    columns = [*SAMPLE_COLUMNS, IMAGE_OK]
    if scan_path is not None and Path(scan_path).is_file():
        samples, _ = audit_scan(read_scan(Path(scan_path)), samples, run, audit or AuditSettings())
        columns.append(GROUP)
    path = atomic_write_text(run.samples, samples.loc[:, columns].to_csv(index=False))
    atomic_write_json(run.classes, classes.to_json())
    labelled = samples[samples["split"].isin(LABELLED_SPLITS)]
    fallback: dict[str, int] = {}
    for target in TARGETS:
        counts = labelled[target].value_counts()
        if len(counts):
            top = counts[counts == counts.max()].index.min()
            fallback[target] = int(top)
    return path, fallback


def publish_validation(
    data_dir: Path,
    run_dir: Path,
    settings: ValidationSettings,
    csv_stage: CsvStage,
    image_stage: ImageStage | None,
    scan_summary: ScanSummary | None,
    audit: AuditSettings | None = None,
) -> ValidationReport:
    """Build the Data Docs, write report.json (and samples.csv when the data passed); the scan
    audit (duplicates, image issues: ``audit``) adds its warnings, and fails the data when more
    images have image issues than ``audit.max_image_issue_fraction``."""
    run = RunFolder(run_dir)
    make_dirs(run.validation)
    make_dirs(run.data_docs)  # Great Expectations writes its pages there itself
    suites = list(csv_stage.suites) + ([image_stage.suite] if image_stage else [])
    failures, warnings = broken_rules(suites)
    warnings += csv_stage.notes
    if csv_stage.passed and image_stage is None:
        failures.append("[images] the image scan did not run")
    docs_index = build_data_docs(run, warnings)
    samples_path: Path | None = None
    fallback: dict[str, int] = {}
    if not failures:
        quarantine = Path(image_stage.quarantine_path) if image_stage else None
        scan_path = Path(scan_summary.scan_path) if scan_summary else None
        samples_path, fallback = write_validated_samples(data_dir, run.validation, quarantine, scan_path, audit)
        audit_failures, audit_warnings = scan_audit_messages(run, audit or AuditSettings())
        failures += audit_failures
        warnings += audit_warnings
        if audit_failures:
            samples_path = None
    classes = csv_stage.classes or {}
    warnings += image_warnings(image_stage, fallback, classes)
    report = ValidationReport(
        passed=not failures,
        data_dir=str(data_dir),
        run_dir=str(run.root),
        report_path=str(run.validation_report),
        docs_index=str(docs_index) if docs_index else None,
        samples_path=str(samples_path) if samples_path else None,
        quarantine_path=image_stage.quarantine_path if image_stage else None,
        scan_path=scan_summary.scan_path if scan_summary else None,
        counts=csv_stage.counts,
        suites=[SuiteSummary(**{k: s[k] for k in SuiteSummary.model_fields}) for s in suites],
        failures=failures,
        warnings=warnings,
        quarantined=image_stage.quarantined if image_stage else 0,
        flagged_test=image_stage.flagged_test if image_stage else 0,
        reference=csv_stage.reference or "none",
        fallback_prediction=fallback,
    )
    if docs_index:
        report.summary_html = str(write_summary_html(report, run.validation_summary, docs_index))
    write_report_json(run, report, settings, csv_stage, scan_summary, suites)
    return report


def scan_audit_messages(run: RunFolder, audit: AuditSettings) -> tuple[list[str], list[str]]:
    """(failures, warnings) of the scan audit (`tasks.validation.audit`), when it ran."""
    if not run.validation_audit.is_file():
        return [], []
    return audit_messages(json.loads(run.validation_audit.read_text(encoding="utf-8")), audit)


def broken_rules(suites: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(failures, warnings): the critical and the other expectations that did not pass, described;
    broken rules first, then the ones that could not run (usually because of a broken rule)."""
    outcomes = sorted(
        (o for s in suites for o in s["expectations"] if o["status"] != "passed"), key=lambda o: o["status"] == "error"
    )
    failures = [describe_outcome(o) for o in outcomes if o["severity"] == "critical"]
    return failures, [describe_outcome(o) for o in outcomes if o["severity"] != "critical"]


def build_data_docs(run: RunFolder, warnings: list[str]) -> Path | None:
    """The Data Docs' index page; None (with a warning added) when they could not be built:
    they are a convenience and never hide the validation outcome."""
    from expectations.context import build_docs, make_context

    try:
        return build_docs(make_context(run))
    except Exception as exc:
        warnings.append(f"Data Docs could not be built: {type(exc).__name__}: {exc}")
        return None


def write_report_json(
    run: RunFolder,
    report: ValidationReport,
    settings: ValidationSettings,
    csv_stage: CsvStage,
    scan_summary: ScanSummary | None,
    suites: list[dict[str, Any]],
) -> None:
    """``validation/report.json``: the report, the settings, and every expectation's outcome."""
    atomic_write_json(
        run.validation_report,
        {
            **report.model_dump(),
            "settings": settings.model_dump(),
            "classes": csv_stage.classes or {},
            "label_distribution": csv_stage.label_distribution,
            "fallback_rule": "unusable test images are predicted as the most frequent train+val class",
            "image_scan": scan_summary.to_dict() if scan_summary else None,
            "expectations": [o for s in suites for o in s["expectations"]],
        },
    )


def image_warnings(
    image_stage: ImageStage | None, fallback: dict[str, int], classes: dict[str, list[str]]
) -> list[str]:
    """The report's warnings about quarantined train/val images and flagged test images."""
    warnings: list[str] = []
    if image_stage and image_stage.quarantined:
        warnings.append(
            f"Quarantined {image_stage.quarantined} of {image_stage.labelled_images} train/val images "
            f"(listed in {image_stage.quarantine_path}, excluded from training): "
            + "; ".join(image_stage.quarantine_examples)
        )
    if image_stage and image_stage.flagged_test:
        label = fallback.get("coarse")
        name = classes.get("coarse", [])[label] if label is not None and classes.get("coarse") else "?"
        warnings.append(
            f"{image_stage.flagged_test} test image(s) unusable: they keep their submission row with the "
            f"fallback prediction (most frequent train+val class, coarse {label} {name}): "
            + "; ".join(image_stage.flagged_test_examples)
        )
    return warnings
