"""Great Expectations results as plain, JSON-friendly outcomes and readable messages.

A GX result is a deep object graph; the Prefect tasks pass small dicts instead (one per
Expectation: rule, severity, status, counts, a few offending rows or files), and the report,
failure message and artifact are written from those. Results are read by attribute only, so this
module does not import Great Expectations.
"""

from __future__ import annotations

import math
from typing import Any

from tasks.data.columns import (
    ALSO_IN,
    FAMILY_COARSE,
    PIXELS,
    ROW,
    SHORT_SIDE,
    TARGETS,
    TAXONOMY_COARSE,
    USABLE_LABELLED,
    USABLE_TEST,
    in_range_column,
    int_column,
)
from tasks.data.dataset import OUTSIDE_PUBLIC, unsafe_filename_reason
from tasks.logs import printable

#: Derived column -> the name a message uses for it.
FRIENDLY = {
    **{int_column(t): t for t in TARGETS},
    **{in_range_column(t): t for t in TARGETS},
    FAMILY_COARSE: "family's majority coarse",
    TAXONOMY_COARSE: "known coarse of this fine",
    ALSO_IN: "also listed in",
    SHORT_SIDE: "short side",
    PIXELS: "pixels",
    USABLE_LABELLED: "usable",
    USABLE_TEST: "usable",
    OUTSIDE_PUBLIC: "resolves outside public/ to",
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
    if ROW in entry:
        parts.append(f"row {entry[ROW]} (line {entry[ROW] + 1})")
    elif "split" in entry and "filename" in entry:
        parts.append(f"{entry['split']}/{entry['filename']}")
    details = []
    if ROW in entry and "filename" in entry:
        entry = {"filename": entry.pop("filename"), **entry}
    for key, value in entry.items():
        if key in (ROW, "split", "error") or (key == "filename" and ROW not in entry):
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
        return f"ratio {observed}", [
            f"largest {big['value']}: {big['count']}, smallest {small['value']}: {small['count']}"
        ]
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
    examples = "; ".join(printable(example) for example in outcome["examples"])  # file names from the data
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
    outcome: dict[str, Any] = {
        "suite": name,
        "expectation": "read_file",
        "column": None,
        "rule": message,
        "severity": "critical",
        "status": "failed",
        "observed": None,
        "element_count": None,
        "unexpected_count": None,
        "error": None,
        "examples": [],
    }
    return {
        "name": name,
        "success": False,
        "evaluated": 1,
        "failed": 1,
        "failed_critical": 1,
        "expectations": [outcome],
    }
