"""The stages of data validation, each a plain function that returns a small JSON-friendly dict.

Why a separate step from ``tasks.data.dataset.load_samples``: that function raises on the first bad
row, while a user needs every problem at once (which file, which row, which rule). So the CSVs
are read here as raw strings and validated by the suites of ``expectations.suites``; only a
dataset that passed is loaded with ``load_samples``.

The ``flows.validate.validate_dataset`` flow runs them in this order (the Prefect tasks pass
these dicts around, never tables):

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

from pathlib import Path
from typing import Any

import pandas as pd

from tasks.data.columns import IMAGE_OK, LABELLED_SPLITS, ROW, SAMPLE_COLUMNS, SPLITS, TARGETS
from tasks.data.dataset import (
    DatasetError,
    check_data_dir,
    check_output_outside,
    load_samples,
    read_class_info,
    split_csv,
)
from tasks.io import atomic_write_json, atomic_write_text
from tasks.layout import RunFolder
from tasks.logs import get_logger
from tasks.validation.gx_results import describe_outcome, fatal_suite, summarise_suite
from tasks.validation.image_scan import read_scan
from tasks.validation.rendering import write_summary_html
from tasks.validation.report import SuiteSummary, ValidationReport
from tasks.validation.settings import ValidationSettings
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
) -> dict[str, Any]:
    """Run the train/val/test CSV suites and the class-balance suite on the raw CSVs.

    Returns a small dict: ``passed`` (no critical failure), per-suite outcomes, row counts, the
    label distribution and reference used, and ``list_path``, the CSV of image files to scan
    (only when the CSVs passed).
    """
    from expectations import suites as S
    from expectations.context import make_context, validate_frame

    log = get_logger(__name__)
    run = _run_of(validation_dir)
    check_output_outside(data_dir, run.root)  # every flow that validates: never write into the data
    run.validation.mkdir(parents=True, exist_ok=True)
    stage: dict[str, Any] = {
        "passed": False,
        "suites": [],
        "counts": {},
        "list_path": None,
        "label_distribution": None,
        "reference": None,
        "classes": None,
        "notes": [],
    }
    try:
        root = check_data_dir(data_dir)
        classes = read_class_info(root)
    except DatasetError as exc:
        stage["suites"].append(fatal_suite("layout", str(exc)))
        return stage
    stage["classes"] = classes.to_json()
    raws: dict[str, pd.DataFrame | None] = {}
    for split in SPLITS:
        try:
            raw = read_raw_csv(split_csv(root, split))
            raws[split] = raw
            stage["counts"][split] = len(raw)
        except DatasetError as exc:
            raws[split] = None
            stage["suites"].append(fatal_suite(f"{split}_csv", str(exc)))
    context = make_context(run)
    run_name = run.root.name
    tables = prepare_labelled_tables(raws, classes, root)
    for split, table in tables.items():
        suite = S.build_labelled_csv_suite(
            split,
            len(classes.coarse),
            len(classes.fine),
            known_taxonomy=is_known_taxonomy(classes),
            other_splits=[s for s in LABELLED_SPLITS if s != split and raws.get(s) is not None],
            min_rows=settings.min_rows,
            max_rows=settings.max_rows,
        )
        result = validate_frame(context, suite, table, [ROW, "filename"], run_name=run_name)
        stage["suites"].append(summarise_suite(suite.name, result, settings.max_examples))
    test_table = prepare_test_table(raws, root)
    if test_table is not None:
        suite = S.build_test_csv_suite(
            other_splits=[s for s in LABELLED_SPLITS if raws.get(s) is not None],
            min_rows=settings.min_rows,
            max_rows=settings.max_rows,
        )
        result = validate_frame(context, suite, test_table, [ROW, "filename"], run_name=run_name)
        stage["suites"].append(summarise_suite(suite.name, result, settings.max_examples))
    balance = prepare_balance_table(tables, classes)
    reference, reference_name, note = reference_distribution(settings.reference, classes, runs_root, run.root)
    if note:
        stage["notes"].append(note)
    suite = S.build_balance_suite(
        {"coarse": classes.coarse, "fine": classes.fine},
        min_class_count=settings.min_class_count,
        max_imbalance_ratio=settings.max_imbalance_ratio,
        reference=reference,
        reference_name=reference_name,
        max_kl_divergence=settings.max_kl_divergence,
    )
    result = validate_frame(context, suite, balance, [], run_name=run_name)
    stage["suites"].append(summarise_suite(suite.name, result, settings.max_examples))
    stage["label_distribution"] = label_distribution(balance, classes)
    stage["reference"] = reference_name
    stage["passed"] = not any(s["failed_critical"] for s in stage["suites"])
    if stage["passed"]:
        stage["list_path"] = str(write_scan_list(root, {**tables, "test": test_table}, run.scan_list))
    for summary in stage["suites"]:
        log.info(
            "Suite %s: %s (%d expectations, %d failed, %d critical)",
            summary["name"],
            "passed" if summary["success"] else "FAILED",
            summary["evaluated"],
            summary["failed"],
            summary["failed_critical"],
        )
    return stage


# --------------------------------------------------------------------------------------------
# Stage 3: images (stage 2, the scan, is tasks.validation.image_scan)


def validate_images(scan_path: Path, validation_dir: Path, settings: ValidationSettings) -> dict[str, Any]:
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
    return {
        "suite": summary,
        "passed": summary["failed_critical"] == 0,
        "quarantine_path": str(quarantine_path),
        "quarantined": len(labelled_bad),
        "labelled_images": n_labelled,
        "flagged_test": len(test_bad),
        "test_images": int(len(table) - n_labelled),
        "quarantine_examples": _file_examples(labelled_bad, settings.max_examples),
        "flagged_test_examples": _file_examples(test_bad, settings.max_examples),
    }


def _file_examples(bad: pd.DataFrame, limit: int) -> list[str]:
    return [f"{r.split}/{r.filename}: {r.reason}" for r in bad.head(limit).itertuples(index=False)]


# --------------------------------------------------------------------------------------------
# Stage 4: publish


def write_validated_samples(
    data_dir: Path, validation_dir: Path, quarantine_path: Path | None
) -> tuple[Path, dict[str, int]]:
    """``samples.csv`` (``tasks.data.dataset.write_samples`` format + ``image_ok``) without quarantined
    train/val rows; test rows are all kept, unusable ones with ``image_ok=False``. Also writes
    ``classes.json``. Returns the path and the most frequent train+val class per target."""
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
    path = atomic_write_text(run.samples, samples.loc[:, [*SAMPLE_COLUMNS, IMAGE_OK]].to_csv(index=False))
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
    csv_stage: dict[str, Any],
    image_stage: dict[str, Any] | None,
    scan_summary: dict[str, Any] | None,
) -> ValidationReport:
    """Build the Data Docs, write report.json (and samples.csv when the data passed)."""
    from expectations.context import build_docs, make_context

    run = RunFolder(run_dir)
    run.validation.mkdir(parents=True, exist_ok=True)
    suites = list(csv_stage["suites"]) + ([image_stage["suite"]] if image_stage else [])
    # Broken rules first, then the ones that could not run (usually because of a broken rule).
    outcomes = sorted(
        (o for s in suites for o in s["expectations"] if o["status"] != "passed"), key=lambda o: o["status"] == "error"
    )
    failures = [describe_outcome(o) for o in outcomes if o["severity"] == "critical"]
    warnings = [describe_outcome(o) for o in outcomes if o["severity"] != "critical"]
    warnings += list(csv_stage.get("notes") or [])
    if csv_stage["passed"] and image_stage is None:
        failures.append("[images] the image scan did not run")
    passed = not failures
    docs_index: Path | None = None
    try:
        docs_index = build_docs(make_context(run))
    except Exception as exc:  # Data Docs are a convenience; never hide the validation outcome
        warnings.append(f"Data Docs could not be built: {type(exc).__name__}: {exc}")
    samples_path: Path | None = None
    fallback: dict[str, int] = {}
    if passed:
        samples_path, fallback = write_validated_samples(
            data_dir, run.validation, Path(image_stage["quarantine_path"]) if image_stage else None
        )
    classes = csv_stage.get("classes") or {}
    warnings += image_warnings(image_stage, fallback, classes)
    report = ValidationReport(
        passed=passed,
        data_dir=str(data_dir),
        run_dir=str(run.root),
        report_path=str(run.validation_report),
        docs_index=str(docs_index) if docs_index else None,
        samples_path=str(samples_path) if samples_path else None,
        quarantine_path=image_stage["quarantine_path"] if image_stage else None,
        scan_path=scan_summary["scan_path"] if scan_summary else None,
        counts=csv_stage.get("counts") or {},
        suites=[SuiteSummary(**{k: s[k] for k in SuiteSummary.model_fields}) for s in suites],
        failures=failures,
        warnings=warnings,
        quarantined=image_stage["quarantined"] if image_stage else 0,
        flagged_test=image_stage["flagged_test"] if image_stage else 0,
        reference=csv_stage.get("reference") or "none",
        fallback_prediction=fallback,
    )
    if docs_index:
        report.summary_html = str(write_summary_html(report, run.validation_summary, docs_index))
    atomic_write_json(
        run.validation_report,
        {
            **report.model_dump(),
            "settings": settings.model_dump(),
            "classes": classes,
            "label_distribution": csv_stage.get("label_distribution"),
            "fallback_rule": "unusable test images are predicted as the most frequent train+val class",
            "image_scan": scan_summary,
            "expectations": [o for s in suites for o in s["expectations"]],
        },
    )
    return report


def image_warnings(
    image_stage: dict[str, Any] | None, fallback: dict[str, int], classes: dict[str, list[str]]
) -> list[str]:
    """The report's warnings about quarantined train/val images and flagged test images."""
    warnings: list[str] = []
    if image_stage and image_stage["quarantined"]:
        warnings.append(
            f"Quarantined {image_stage['quarantined']} of {image_stage['labelled_images']} train/val images "
            f"(listed in {image_stage['quarantine_path']}, excluded from training): "
            + "; ".join(image_stage["quarantine_examples"])
        )
    if image_stage and image_stage["flagged_test"]:
        label = fallback.get("coarse")
        name = classes.get("coarse", [])[label] if label is not None and classes.get("coarse") else "?"
        warnings.append(
            f"{image_stage['flagged_test']} test image(s) unusable: they keep their submission row with the "
            f"fallback prediction (most frequent train+val class, coarse {label} {name}): "
            + "; ".join(image_stage["flagged_test_examples"])
        )
    return warnings
