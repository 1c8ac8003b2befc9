"""Validate a Kaggle-layout data directory with Great Expectations, before anything else reads it.

Why a separate step from ``tasks.data.dataset.load_samples``: that function raises on the first bad
row, while a user needs every problem at once (which file, which row, which rule). So the CSVs
are read here as raw strings and validated by the suites of ``expectations.suites``; only a
dataset that passed is loaded with ``load_samples``.

Three stages, each a plain function that returns a small JSON-friendly dict (the Prefect tasks
pass these around, never tables):

1. `validate_csvs`: train/val/test CSV suites (critical) and the class-balance suite (warnings);
   writes the list of image files to scan.
2. ``tasks.validation.image_scan.scan_images``: the parallel, cached image scan.
3. `validate_images`: the image suite on the scan table and the quarantine policy.

`publish_validation` then builds the Data Docs, writes ``report.json``, ``quarantine.csv`` and
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
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from tasks.data.dataset import (
    LABELLED_SPLITS,
    SAMPLE_COLUMNS,
    SPLITS,
    ClassInfo,
    DatasetError,
    check_data_dir,
    load_samples,
    public_dir,
    read_class_info,
    unsafe_filename_reason,
)
from tasks.validation.image_scan import DEFAULT_MAX_PIXELS, LIST_COLUMNS, read_scan
from tasks.io import atomic_write_json, atomic_write_text
from tasks.logs import get_logger
from tasks.data.taxonomy import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE, real_coarse_distribution


#: Files written under ``<run>/validation/``.
REPORT_NAME = "report.json"
SAMPLES_NAME = "samples.csv"
QUARANTINE_NAME = "quarantine.csv"
SCAN_LIST_NAME = "image_list.csv"
SCAN_NAME = "image_scan.csv"
DOCS_FOLDER = "data_docs"
GX_FOLDER = "gx"
ARTIFACT_KEY = "validation-report"


class ValidationSettings(BaseModel):
    """Thresholds of data validation (a field of the full pipeline's parameters, too)."""

    model_config = ConfigDict(extra="forbid")

    max_bad_image_fraction: float = Field(
        0.01, ge=0.0, le=1.0,
        description="Largest share of train+val (and of test) images that may be unusable; they are "
        "quarantined (train/val) or get the fallback prediction (test). Above it validation fails.",
    )
    min_class_count: int = Field(
        5, ge=0, description="Warn when a coarse or fine class has fewer train+val images than this."
    )
    max_imbalance_ratio: float = Field(
        50.0, gt=0, description="Warn when largest/smallest class exceeds this (the real data is 18:1 coarse)."
    )
    reference: Literal["known", "previous"] = Field(
        "known", description="Label distribution to compare with: the real dataset's known one, or the "
        "last validated run's under <output-dir>/runs (a drift check; falls back to known)."
    )
    max_kl_divergence: float = Field(
        0.1, ge=0.0, description="Warn when the label distribution's KL divergence from the reference exceeds this."
    )
    min_rows: int = Field(1, ge=0, description="Fewest data rows each CSV must have.")
    max_rows: int = Field(10_000_000, ge=1, description="Most data rows a CSV may have.")
    min_short_side: int = Field(32, ge=1, description="Images with a shorter short side (px) are unusable.")
    max_image_pixels: int = Field(
        DEFAULT_MAX_PIXELS, ge=1, description="Images with more pixels are unusable (decompression bombs)."
    )
    scan_workers: Optional[int] = Field(None, ge=1, description="Image scan threads (empty: one per CPU).")
    max_examples: int = Field(5, ge=1, le=100, description="Offending rows or files quoted per failed rule.")


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
        lines = [f"Data validation of {self.data_dir} failed: {len(self.failures)} rule(s) broken; "
                 "nothing was trained and no earlier output was touched."]
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


# --------------------------------------------------------------------------------------------
# Reading the raw files


def read_raw_csv(path: Path) -> pd.DataFrame:
    """A CSV as raw strings, exactly as `tasks.data.dataset` reads it (BOM stripped, names stripped);
    empty cells become nulls so that GX's not-null rules see them. Raises DatasetError when the
    file is not a CSV at all."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: the file is empty (not even a header line).") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot be read as a UTF-8 CSV: {exc}") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read: {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.astype(object)
    return frame.where(frame != "", None)


def is_known_taxonomy(classes: ClassInfo) -> bool:
    """True when info.json lists the real dataset's names in the real order (DESIGN §2)."""
    return classes.coarse == COARSE_NAMES and classes.fine == FINE_NAMES


# --------------------------------------------------------------------------------------------
# Tables the suites validate


def label_columns(raw: pd.DataFrame, target: str, n_classes: int) -> tuple[pd.Series, pd.Series]:
    """(whole-number value or NaN, valid class index or NaN) of one raw label column."""
    if target not in raw.columns:
        empty = pd.Series(np.nan, index=raw.index, dtype="float64")
        return empty, empty.copy()
    numeric = pd.to_numeric(raw[target].astype("string").str.strip(), errors="coerce").astype("float64")
    whole = numeric.where(numeric == np.round(numeric))
    in_range = whole.where((whole >= 0) & (whole < n_classes))
    return whole, in_range


def overlap_column(filenames: pd.Series | None, others: dict[str, set[str]], index: pd.Index) -> pd.Series:
    """For each row, which other split(s) list the same filename ('val', 'train+val'), else None."""
    result = pd.Series([None] * len(index), index=index, dtype=object)
    if filenames is None:
        return result
    for split, names in others.items():
        hit = filenames.isin(names).to_numpy()
        current = result[hit]
        result[hit] = [split if c is None else f"{c}+{split}" for c in current]
    return result


def filename_set(raw: pd.DataFrame | None) -> set[str]:
    if raw is None or "filename" not in raw.columns:
        return set()
    return set(raw["filename"].dropna().tolist())


def prepare_labelled_tables(
    raws: dict[str, pd.DataFrame | None], classes: ClassInfo
) -> dict[str, pd.DataFrame]:
    """train/val tables: the raw columns plus the derived columns of ``expectations.suites``."""
    from expectations import suites as S

    tables: dict[str, pd.DataFrame] = {}
    for split in LABELLED_SPLITS:
        raw = raws.get(split)
        if raw is None:
            continue
        table = raw.copy()
        table[S.ROW] = np.arange(1, len(raw) + 1, dtype="int64")
        for target in ("coarse", "fine"):
            whole, in_range = label_columns(raw, target, len(classes.names(target)))
            table[f"_{target}{S.INT_SUFFIX}"] = whole
            table[f"_{target}{S.IN_RANGE_SUFFIX}"] = in_range
        others = {s: filename_set(raws.get(s)) for s in LABELLED_SPLITS if s != split}
        table[S.ALSO_IN] = overlap_column(table.get("filename"), others, table.index)
        if is_known_taxonomy(classes):
            lookup = np.asarray(FINE_TO_COARSE, dtype="float64")
            fine = table["_fine_in_range"]
            table[S.TAXONOMY_COARSE] = np.where(fine.notna(), lookup[fine.fillna(0).astype(int)], np.nan)
        else:
            table[S.TAXONOMY_COARSE] = np.nan
        tables[split] = table
    majority = family_majority(list(tables.values()))
    for table in tables.values():
        table[S.FAMILY_COARSE] = table["_fine_in_range"].map(majority).astype("float64")
    return tables


def family_majority(tables: list[pd.DataFrame]) -> dict[float, float]:
    """The coarse class most rows of each family carry (ties: the smaller index), over train+val."""
    if not tables:
        return {}
    pairs = pd.concat([t[["_fine_in_range", "_coarse_in_range"]] for t in tables]).dropna()
    if pairs.empty:
        return {}
    counts = pairs.value_counts().rename("n").reset_index()
    counts = counts.sort_values(["_fine_in_range", "n", "_coarse_in_range"], ascending=[True, False, True])
    first = counts.drop_duplicates("_fine_in_range")
    return dict(zip(first["_fine_in_range"], first["_coarse_in_range"]))


def prepare_test_table(raws: dict[str, pd.DataFrame | None]) -> pd.DataFrame | None:
    """test table: raw columns plus row number and overlap with train/val filenames."""
    from expectations import suites as S

    raw = raws.get("test")
    if raw is None:
        return None
    table = raw.copy()
    table[S.ROW] = np.arange(1, len(raw) + 1, dtype="int64")
    others = {s: filename_set(raws.get(s)) for s in LABELLED_SPLITS}
    table[S.ALSO_IN] = overlap_column(table.get("filename"), others, table.index)
    return table


def prepare_balance_table(tables: dict[str, pd.DataFrame], classes: ClassInfo) -> pd.DataFrame:
    """train+val labels as class names (null where the label is not a valid index)."""
    frames = []
    for table in tables.values():
        frame = pd.DataFrame(index=table.index)
        for target in ("coarse", "fine"):
            names = np.asarray(classes.names(target), dtype=object)
            index = table[f"_{target}_in_range"]
            frame[f"{target}_name"] = np.where(index.notna(), names[index.fillna(0).astype(int)], None)
        frames.append(frame)
    if not frames:
        return pd.DataFrame({"coarse_name": pd.Series(dtype=object), "fine_name": pd.Series(dtype=object)})
    return pd.concat(frames, ignore_index=True)


def label_distribution(balance: pd.DataFrame, classes: ClassInfo) -> dict[str, dict[str, float]]:
    """Share of each class name in train+val, per target (saved for the 'previous' reference)."""
    result: dict[str, dict[str, float]] = {}
    for target in ("coarse", "fine"):
        counts = balance[f"{target}_name"].value_counts()
        total = float(counts.sum()) or 1.0
        result[target] = {name: round(float(counts.get(name, 0)) / total, 6) for name in classes.names(target)}
    return result


def reference_distribution(
    kind: str, classes: ClassInfo, runs_root: Path | None, current_run: Path | None
) -> tuple[dict[str, dict[str, float]] | None, str, str | None]:
    """(reference shares per target, its name, a note) for the class-balance suite.

    ``known``: the real dataset's distribution (DESIGN §2: coarse by family counts, fine
    uniform), only when info.json has the known names. ``previous``: ``label_distribution`` of
    the newest run under ``runs_root`` whose validation passed with the same class names
    (run folders sort by start time); if there is none, the known distribution, with a note.
    """
    note = None
    if kind == "previous":
        for report_path in sorted(Path(runs_root).glob(f"*/validation/{REPORT_NAME}"), reverse=True) if runs_root else []:
            if current_run is not None and report_path.parent.parent.resolve() == Path(current_run).resolve():
                continue
            try:
                data = json.loads(report_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if data.get("passed") and data.get("classes") == classes.to_json() and data.get("label_distribution"):
                return data["label_distribution"], f"previous run {report_path.parent.parent.name}", None
        note = f"no earlier validated run with the same classes under {runs_root}; compared with the known distribution"
    if is_known_taxonomy(classes):
        fine = {name: 1.0 / len(FINE_NAMES) for name in FINE_NAMES}
        return {"coarse": real_coarse_distribution(), "fine": fine}, "known (real dataset)", note
    return None, "none", (note or "") + ("; " if note else "") + (
        "info.json class names differ from the known dataset: no reference distribution to compare with")


# --------------------------------------------------------------------------------------------
# Turning GX results into readable outcomes


FRIENDLY = {
    "_coarse_int": "coarse", "_fine_int": "fine", "_coarse_in_range": "coarse", "_fine_in_range": "fine",
    "_family_coarse": "family's majority coarse", "_taxonomy_coarse": "known coarse of this fine",
    "_also_in": "also listed in", "_short_side": "short side", "_pixels": "pixels",
    "_usable_train_val": "usable", "_usable_test": "usable",
}


def _plain(value: Any) -> Any:
    """JSON-friendly scalars (numpy -> Python, NaN -> None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, float) and value == int(value) and abs(value) < 1e15:
        return int(value)
    return value


def _exception_message(info: Any) -> str | None:
    """The first exception message GX recorded for an Expectation, if it raised."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "exception")
    for value in info.values():
        found = _exception_message(value)
        if found:
            return found
    return None


def _format_entry(entry: dict[str, Any], column: str | None, etype: str) -> str:
    """One offending row or file, e.g. ``row 3 (line 4): filename='../x.jpg' (is a relative ...)``."""
    entry = {k: _plain(v) for k, v in entry.items()}
    parts: list[str] = []
    if "_row" in entry:
        parts.append(f"row {entry['_row']} (line {entry['_row'] + 1})")
    elif "split" in entry and "filename" in entry:
        parts.append(f"{entry['split']}/{entry['filename']}")
    details = []
    if "_row" in entry and "filename" in entry:
        entry = {"filename": entry.pop("filename"), **entry}
    for key, value in entry.items():
        if key in ("_row", "split", "error") or (key == "filename" and "_row" not in entry):
            continue
        if entry.get("error") and key in ("decodes", "exists", "size_bytes"):
            continue  # the scan's error text says it better
        details.append(f"{FRIENDLY.get(key, key)}={value!r}")
    if column == "filename" and "regex" in etype and (reason := unsafe_filename_reason(entry.get("filename"))):
        details.append(f"({reason})")
    if entry.get("error"):
        details.append(str(entry["error"]))
    return ": ".join([" ".join(parts)] + ([", ".join(details)] if details else [])) if parts else ", ".join(details)


def _aggregate_examples(etype: str, result: dict[str, Any]) -> tuple[str | None, list[str]]:
    """(observed value, examples) of the aggregate Expectations (columns, counts, balance)."""
    details = result.get("details") or {}
    observed = result.get("observed_value")
    if "mismatched" in details:
        mismatch = details["mismatched"] or {}
        examples = []
        if mismatch.get("missing"):
            examples.append(f"missing column(s): {', '.join(mismatch['missing'])}")
        if mismatch.get("unexpected"):
            examples.append(f"unexpected column(s): {', '.join(mismatch['unexpected'])}")
        return "columns " + ", ".join(str(c) for c in observed or [] if not str(c).startswith("_")), examples
    if "below_minimum" in details:
        return f"smallest class {observed}", [f"{d['value']}: {d['count']}" for d in details["below_minimum"]]
    if "largest" in details:
        big, small = details["largest"], details["smallest"]
        return f"ratio {observed}", [f"largest {big['value']}: {big['count']}, smallest {small['value']}: {small['count']}"]
    if "kl_divergence" in etype:
        value = "infinite" if observed is None else f"{float(observed):.4f}"
        return f"KL divergence {value}", []
    if "row_count" in etype:
        return f"{observed} rows", []
    return (None if observed is None else str(_plain(observed))), []


def summarise_expectation(suite: str, item: Any, max_examples: int) -> dict[str, Any]:
    """One Expectation's result as a small dict: rule, status, counts, a few examples."""
    config = item.expectation_config
    kwargs = dict(config.kwargs)
    etype = config.type
    column = kwargs.get("column")
    if column is None and "column_A" in kwargs:
        column = f"{kwargs['column_A']},{kwargs['column_B']}"
    severity = getattr(config.severity, "value", str(config.severity))
    result = dict(item.result or {})
    error = _exception_message(item.exception_info)
    status = "passed" if item.success else ("error" if error else "failed")
    observed, examples = _aggregate_examples(etype, result)
    entries = result.get("partial_unexpected_index_list") or []
    if entries:
        examples = [_format_entry(e, column, etype) for e in entries]
    elif result.get("partial_unexpected_list") and not examples:
        examples = [repr(_plain(v)) for v in result["partial_unexpected_list"]]
    return {
        "suite": suite,
        "expectation": etype,
        "column": FRIENDLY.get(column, column) if column else None,
        "rule": (config.meta or {}).get("rule") or config.description or etype,
        "severity": severity,
        "status": status,
        "observed": observed,
        "element_count": _plain(result.get("element_count")),
        "unexpected_count": _plain(result.get("unexpected_count")),
        "error": error,
        "examples": examples[:max_examples],
    }


def describe_outcome(outcome: dict[str, Any]) -> str:
    """``[suite] rule: N of M rows, e.g. ...`` for failure and warning lists."""
    text = f"[{outcome['suite']}] {outcome['rule']}"
    if outcome["status"] == "error":
        return f"{text}: could not be checked ({outcome['error']})"
    examples = "; ".join(outcome["examples"])
    if outcome.get("unexpected_count") is not None and outcome.get("element_count") is not None:
        unit = "files" if outcome["suite"] == "images" else "rows"
        counted = f"{outcome['unexpected_count']:,} of {outcome['element_count']:,} {unit} break it"
        return f"{text}: {counted}" + (f", e.g. {examples}" if examples else "")
    observed = f"observed {outcome['observed']}" if outcome.get("observed") is not None else ""
    return text + ": " + " -- ".join(part for part in (observed, examples) if part)


def summarise_suite(name: str, suite_result: Any, max_examples: int) -> dict[str, Any]:
    """All Expectations of one suite run, plus counts."""
    outcomes = [summarise_expectation(name, item, max_examples) for item in suite_result.results]
    failed = [o for o in outcomes if o["status"] != "passed"]
    return {
        "name": name,
        "success": not failed,
        "evaluated": len(outcomes),
        "failed": len(failed),
        "failed_critical": sum(o["severity"] == "critical" for o in failed),
        "expectations": outcomes,
    }


def fatal_suite(name: str, message: str) -> dict[str, Any]:
    """A suite that could not run at all (unreadable file): one critical failure."""
    outcome = {"suite": name, "expectation": "read_file", "column": None, "rule": message, "severity": "critical",
               "status": "failed", "observed": None, "element_count": None, "unexpected_count": None,
               "error": None, "examples": []}
    return {"name": name, "success": False, "evaluated": 1, "failed": 1, "failed_critical": 1,
            "expectations": [outcome]}


# --------------------------------------------------------------------------------------------
# Stage 1: CSVs and class balance


def _gx_context(validation_dir: Path) -> Any:
    from expectations.context import make_context

    return make_context(Path(validation_dir) / GX_FOLDER, Path(validation_dir) / DOCS_FOLDER)


def validate_csvs(
    data_dir: Path, validation_dir: Path, settings: ValidationSettings, runs_root: Path | None = None
) -> dict[str, Any]:
    """Run the train/val/test CSV suites and the class-balance suite on the raw CSVs.

    Returns a small dict: ``passed`` (no critical failure), per-suite outcomes, row counts, the
    label distribution and reference used, and ``list_path``, the CSV of image files to scan
    (only when the CSVs passed).
    """
    from expectations import suites as S
    from expectations.context import validate_frame

    log = get_logger(__name__)
    validation_dir = Path(validation_dir)
    validation_dir.mkdir(parents=True, exist_ok=True)
    stage: dict[str, Any] = {"passed": False, "suites": [], "counts": {}, "list_path": None,
                             "label_distribution": None, "reference": None, "classes": None, "notes": []}
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
            raws[split] = read_raw_csv(public_dir(root) / f"{split}.csv")
            stage["counts"][split] = len(raws[split])
        except DatasetError as exc:
            raws[split] = None
            stage["suites"].append(fatal_suite(f"{split}_csv", str(exc)))
    context = _gx_context(validation_dir)
    run_name = validation_dir.parent.name
    tables = prepare_labelled_tables(raws, classes)
    for split, table in tables.items():
        suite = S.build_labelled_csv_suite(
            split, len(classes.coarse), len(classes.fine), known_taxonomy=is_known_taxonomy(classes),
            other_splits=[s for s in LABELLED_SPLITS if s != split and raws.get(s) is not None],
            min_rows=settings.min_rows, max_rows=settings.max_rows,
        )
        result = validate_frame(context, suite, table, [S.ROW, "filename"], run_name=run_name)
        stage["suites"].append(summarise_suite(suite.name, result, settings.max_examples))
    test_table = prepare_test_table(raws)
    if test_table is not None:
        suite = S.build_test_csv_suite(other_splits=[s for s in LABELLED_SPLITS if raws.get(s) is not None],
                                       min_rows=settings.min_rows, max_rows=settings.max_rows)
        result = validate_frame(context, suite, test_table, [S.ROW, "filename"], run_name=run_name)
        stage["suites"].append(summarise_suite(suite.name, result, settings.max_examples))
    balance = prepare_balance_table(tables, classes)
    reference, reference_name, note = reference_distribution(
        settings.reference, classes, runs_root, validation_dir.parent)
    if note:
        stage["notes"].append(note)
    suite = S.build_balance_suite(
        {"coarse": classes.coarse, "fine": classes.fine}, min_class_count=settings.min_class_count,
        max_imbalance_ratio=settings.max_imbalance_ratio, reference=reference, reference_name=reference_name,
        max_kl_divergence=settings.max_kl_divergence,
    )
    result = validate_frame(context, suite, balance, [], run_name=run_name)
    stage["suites"].append(summarise_suite(suite.name, result, settings.max_examples))
    stage["label_distribution"] = label_distribution(balance, classes)
    stage["reference"] = reference_name
    stage["passed"] = not any(s["failed_critical"] for s in stage["suites"])
    if stage["passed"]:
        stage["list_path"] = str(write_scan_list(root, raws, validation_dir / SCAN_LIST_NAME))
    for summary in stage["suites"]:
        log.info("Suite %s: %s (%d expectations, %d failed, %d critical)", summary["name"],
                 "passed" if summary["success"] else "FAILED", summary["evaluated"], summary["failed"],
                 summary["failed_critical"])
    return stage


def write_scan_list(root: Path, raws: dict[str, pd.DataFrame | None], path: Path) -> Path:
    """The image files the CSVs reference (split, filename, absolute path), one row each."""
    frames = []
    for split in SPLITS:
        raw = raws.get(split)
        if raw is None or "filename" not in raw.columns:
            continue
        names = raw["filename"].dropna().drop_duplicates()
        names = names[[unsafe_filename_reason(n) is None for n in names]]
        folder = public_dir(root) / split
        frames.append(pd.DataFrame({"split": split, "filename": names.astype(str),
                                    "path": [str(folder / n) for n in names]}))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(LIST_COLUMNS))
    return atomic_write_text(path, table.loc[:, list(LIST_COLUMNS)].to_csv(index=False))


# --------------------------------------------------------------------------------------------
# Stage 3: images


def prepare_image_table(scan: pd.DataFrame, settings: ValidationSettings) -> pd.DataFrame:
    """The scan table plus short side, pixels, usability and the quarantine reason per file."""
    from expectations import suites as S

    table = scan.copy()
    width = table["width"].astype("float64")
    height = table["height"].astype("float64")
    table[S.SHORT_SIDE] = np.fmin(width, height)
    table[S.PIXELS] = width * height
    table["reason"] = unusable_reasons(table, settings)
    usable = table["reason"].isna()
    labelled = table["split"].isin(LABELLED_SPLITS)
    table[S.USABLE_LABELLED] = pd.Series(np.where(labelled, usable, None), index=table.index, dtype=object)
    table[S.USABLE_TEST] = pd.Series(np.where(~labelled, usable, None), index=table.index, dtype=object)
    return table


def unusable_reasons(table: pd.DataFrame, settings: ValidationSettings) -> pd.Series:
    """Why each file cannot be used (None when it can): the first rule it breaks."""
    reasons = pd.Series([None] * len(table), index=table.index, dtype=object)
    short = table["_short_side"] if "_short_side" in table else np.fmin(table["width"], table["height"])
    pixels = table["_pixels"] if "_pixels" in table else table["width"] * table["height"]
    checks = [
        (~table["exists"], lambda r: "file not found"),
        (table["size_bytes"].fillna(0).eq(0) & table["exists"], lambda r: "empty file (0 bytes)"),
        (table["decodes"].map(lambda v: v is not True) & table["exists"] & table["size_bytes"].fillna(0).gt(0),
         lambda r: r["error"] or "does not decode"),
        (pd.Series(pixels, index=table.index).gt(settings.max_image_pixels),
         lambda r: r["error"] or f"more than {settings.max_image_pixels:,} pixels"),
        (pd.Series(short, index=table.index).lt(settings.min_short_side),
         lambda r: f"short side {int(min(r['width'], r['height']))} px < {settings.min_short_side} px"),
    ]
    for mask, reason in checks:
        mask = mask.fillna(False).astype(bool) & reasons.isna()
        for index in table.index[mask]:
            reasons[index] = reason(table.loc[index])
    return reasons


def validate_images(scan_path: Path, validation_dir: Path, settings: ValidationSettings) -> dict[str, Any]:
    """Run the image suite on the scan table; write quarantine.csv; return counts and outcomes."""
    from expectations import suites as S
    from expectations.context import validate_frame

    validation_dir = Path(validation_dir)
    table = prepare_image_table(read_scan(Path(scan_path)), settings)
    suite = S.build_image_suite(min_short_side=settings.min_short_side, max_pixels=settings.max_image_pixels,
                                max_bad_fraction=settings.max_bad_image_fraction)
    result = validate_frame(_gx_context(validation_dir), suite, table.drop(columns=["reason"]),
                            ["split", "filename", "error"], run_name=validation_dir.parent.name)
    summary = summarise_suite(suite.name, result, settings.max_examples)
    bad = table[table["reason"].notna()]
    quarantine_path = validation_dir / QUARANTINE_NAME
    atomic_write_text(quarantine_path, bad.loc[:, ["split", "filename", "path", "reason"]].to_csv(index=False))
    labelled_bad = bad[bad["split"].isin(LABELLED_SPLITS)]
    test_bad = bad[~bad["split"].isin(LABELLED_SPLITS)]
    n_labelled = int(table["split"].isin(LABELLED_SPLITS).sum())
    get_logger(__name__).info("Suite images: %s; %d of %d train/val images quarantined, %d test images flagged",
                      "passed" if summary["success"] else "failed", len(labelled_bad), n_labelled, len(test_bad))
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
    samples, classes = load_samples(data_dir)
    bad = (pd.read_csv(quarantine_path, dtype=str, keep_default_na=False)
           if quarantine_path and Path(quarantine_path).is_file() else pd.DataFrame(columns=["split", "filename"]))
    bad_keys = set(zip(bad["split"], bad["filename"]))
    samples["image_ok"] = [(s, f) not in bad_keys for s, f in zip(samples["split"], samples["filename"])]
    keep = samples["image_ok"] | (samples["split"] == "test")
    samples = samples.loc[keep].reset_index(drop=True)
    path = atomic_write_text(Path(validation_dir) / SAMPLES_NAME,
                             samples.loc[:, [*SAMPLE_COLUMNS, "image_ok"]].to_csv(index=False))
    atomic_write_json(Path(validation_dir) / "classes.json", classes.to_json())
    labelled = samples[samples["split"].isin(LABELLED_SPLITS)]
    fallback = {}
    for target in ("coarse", "fine"):
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
    from expectations.context import build_docs

    run_dir = Path(run_dir)
    validation_dir = run_dir / "validation"
    validation_dir.mkdir(parents=True, exist_ok=True)
    suites = list(csv_stage["suites"]) + ([image_stage["suite"]] if image_stage else [])
    # Broken rules first, then the ones that could not run (usually because of a broken rule).
    outcomes = sorted((o for s in suites for o in s["expectations"] if o["status"] != "passed"),
                      key=lambda o: o["status"] == "error")
    failures = [describe_outcome(o) for o in outcomes if o["severity"] == "critical"]
    warnings = [describe_outcome(o) for o in outcomes if o["severity"] != "critical"]
    warnings += list(csv_stage.get("notes") or [])
    if csv_stage["passed"] and image_stage is None:
        failures.append("[images] the image scan did not run")
    passed = not failures
    docs_index: Path | None = None
    try:
        docs_index = build_docs(_gx_context(validation_dir))
    except Exception as exc:  # Data Docs are a convenience; never hide the validation outcome
        warnings.append(f"Data Docs could not be built: {type(exc).__name__}: {exc}")
    samples_path, fallback = None, {}
    if passed:
        samples_path, fallback = write_validated_samples(
            data_dir, validation_dir, Path(image_stage["quarantine_path"]) if image_stage else None)
    classes = csv_stage.get("classes") or {}
    if image_stage and image_stage["quarantined"]:
        warnings.append(
            f"Quarantined {image_stage['quarantined']} of {image_stage['labelled_images']} train/val images "
            f"(listed in {image_stage['quarantine_path']}, excluded from training): "
            + "; ".join(image_stage["quarantine_examples"]))
    if image_stage and image_stage["flagged_test"]:
        label = fallback.get("coarse")
        name = classes.get("coarse", [])[label] if label is not None and classes.get("coarse") else "?"
        warnings.append(
            f"{image_stage['flagged_test']} test image(s) unusable: they keep their submission row with the "
            f"fallback prediction (most frequent train+val class, coarse {label} {name}): "
            + "; ".join(image_stage["flagged_test_examples"]))
    report = ValidationReport(
        passed=passed,
        data_dir=str(data_dir),
        run_dir=str(run_dir),
        report_path=str(validation_dir / REPORT_NAME),
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
        report.summary_html = str(write_summary_html(report, validation_dir / "summary.html", docs_index))
    atomic_write_json(Path(report.report_path), {
        **report.model_dump(),
        "settings": settings.model_dump(),
        "classes": classes,
        "label_distribution": csv_stage.get("label_distribution"),
        "fallback_rule": "unusable test images are predicted as the most frequent train+val class",
        "image_scan": scan_summary,
        "expectations": [o for s in suites for o in s["expectations"]],
    })
    return report


def run_validation(
    data_dir: Path, run_dir: Path, settings: ValidationSettings, cache_dir: Path
) -> ValidationReport:
    """The whole validation without Prefect (tests, benchmarks, notebooks).

    The same stages, in the same order, as the ``flows.validate.validate_dataset`` flow; raises
    `ValidationFailed` after writing the report when a critical rule is broken.
    """
    from tasks.validation.image_scan import scan_images

    run_dir = Path(run_dir)
    validation_dir = run_dir / "validation"
    csv_stage = validate_csvs(Path(data_dir), validation_dir, settings, runs_root=run_dir.parent)
    scan_summary = image_stage = None
    if csv_stage["passed"]:
        scan_summary = scan_images(Path(csv_stage["list_path"]), validation_dir / SCAN_NAME,
                                   Path(cache_dir) / "image_scan", workers=settings.scan_workers,
                                   max_pixels=settings.max_image_pixels)
        image_stage = validate_images(Path(scan_summary["scan_path"]), validation_dir, settings)
    report = publish_validation(Path(data_dir), run_dir, settings, csv_stage, image_stage, scan_summary)
    if not report.passed:
        raise ValidationFailed(report.failure_message(), report)
    return report


def write_summary_html(report: ValidationReport, path: Path, docs_index: Path) -> Path:
    """A self-contained HTML page of the outcome, linking each suite's Data Docs page.

    GX's own index.html lists validation results with JavaScript loaded from CDNs, so offline
    that list stays empty; this page needs nothing but the files of the run folder.
    """
    from html import escape

    docs = Path(docs_index).parent
    rows = []
    for suite in report.suites:
        pages = sorted(docs.glob(f"validations/{suite.name}/**/*.html"))
        link = (f'<a href="{escape(str(pages[-1].relative_to(path.parent)))}">{escape(suite.name)}</a>'
                if pages else escape(suite.name))
        rows.append(f"<tr><td>{link}</td><td>{'passed' if suite.success else 'failed'}</td>"
                    f"<td>{suite.evaluated}</td><td>{suite.failed}</td><td>{suite.failed_critical}</td></tr>")
    sections = []
    for title, items in (("Failures (the run stops)", report.failures), ("Warnings (the run continues)", report.warnings)):
        if items:
            sections.append(f"<h2>{title}</h2><ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>")
    body = (
        f"<h1>Data validation {'passed' if report.passed else 'FAILED'}</h1>"
        f"<p>Data: <code>{escape(report.data_dir)}</code></p>"
        "<table border=1 cellpadding=4><tr><th>suite (Data Docs page)</th><th>result</th><th>expectations</th>"
        "<th>failed</th><th>critical</th></tr>" + "".join(rows) + "</table>"
        f"<p>Rows: {escape(', '.join(f'{k} {v:,}' for k, v in report.counts.items()))}. "
        f"Quarantined train/val images: {report.quarantined}; flagged test images: {report.flagged_test}. "
        f"Reference distribution: {escape(report.reference)}.</p>" + "".join(sections) +
        f'<p><a href="{escape(str(Path(docs_index).relative_to(path.parent)))}">Great Expectations Data Docs index</a>'
        f' &middot; <a href="{REPORT_NAME}">report.json</a></p>'
    )
    html = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Data validation</title></head><body>{body}</body></html>\n"
    return atomic_write_text(path, html)


def render_markdown(report: ValidationReport, limit: int = 10) -> str:
    """The Prefect artifact: per-suite table, failures and warnings with examples, where things are."""
    verdict = "PASSED" if report.passed else "FAILED"
    lines = [f"# Data validation {verdict}", "", f"Data: `{report.data_dir}`", "",
             "| suite | result | expectations | failed | critical |", "|---|---|---|---|---|"]
    for suite in report.suites:
        lines.append(f"| {suite.name} | {'passed' if suite.success else 'failed'} | {suite.evaluated} | "
                     f"{suite.failed} | {suite.failed_critical} |")
    lines += ["", "Rows: " + ", ".join(f"{k} {v:,}" for k, v in report.counts.items()),
              f"Quarantined train/val images: {report.quarantined}; flagged test images: {report.flagged_test}",
              f"Reference distribution: {report.reference}", ""]
    for title, items in (("Failures (the run stops)", report.failures), ("Warnings (the run continues)", report.warnings)):
        if items:
            lines += [f"## {title}", ""] + [f"- {_md(item)}" for item in items[:limit]]
            if len(items) > limit:
                lines.append(f"- ... and {len(items) - limit} more (see report.json)")
            lines.append("")
    lines += [f"Data Docs: `{report.docs_index}` (offline summary: `{report.summary_html}`)", "",
              f"Report: `{report.report_path}`"]
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

    create_markdown_artifact(key=ARTIFACT_KEY, markdown=render_markdown(report),
                             description="Great Expectations data validation summary")
