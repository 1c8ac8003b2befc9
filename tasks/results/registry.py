"""The champion registry: ``<output-dir>/registry.jsonl``, one JSON line per gate decision
(promoted or kept, and why), appended and synced so it is the audit trail of the champion.

A promoted line carries the ``promotion_id`` that the champion's ``champion.json`` and the
promotion's intent record carry too, so crash recovery (`tasks.results.champion`) can tell
whether an interrupted promotion's line was already written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.confine import check_confined, open_in_place
from tasks.io import writing_to
from tasks.layout import OutputDir

if TYPE_CHECKING:
    from tasks.results.gate import Decision


class RegistryError(RuntimeError):
    """registry.jsonl cannot be read; the message names the file and the line."""


def append_registry(output_dir: Path, entry: Mapping[str, Any]) -> Path:
    """Append one decision as a JSON line (flushed and synced: the registry is the audit trail)."""
    path = OutputDir(output_dir).registry
    line = json.dumps(dict(entry), default=str, sort_keys=False) + "\n"
    with writing_to(path, len(line.encode("utf-8"))):
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        with os.fdopen(open_in_place(path, flags), "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    return path


def read_registry(output_dir: Path) -> list[dict[str, Any]]:
    """Every decision so far, oldest first."""
    path = check_confined(OutputDir(output_dir).registry)  # never read a file elsewhere into a message
    if not path.is_file():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{path} line {number} is not JSON ({exc}): {line[:120]!r}") from exc
        if not isinstance(entry, dict):
            raise RegistryError(f"{path} line {number} is {type(entry).__name__}, expected a JSON object")
        entries.append(entry)
    return entries


def last_promoted(entries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The newest ``promoted`` line, or None when nothing was ever promoted."""
    return next((e for e in reversed(entries) if e.get("decision") == "promoted"), None)


def repair_registry_tail(output_dir: Path) -> str | None:
    """Finish or drop a last line cut short (power loss mid-append); say what was done, or None.

    A cut line that still parses only lacks its newline, which is added; anything else is an
    unfinished write and is removed (its text is in the returned message, for the log). A
    promotion whose line was lost this way is re-recorded from its intent record.
    """
    path = check_confined(OutputDir(output_dir).registry)
    if not path.is_file():
        return None
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return None
    cut = data.rfind(b"\n") + 1
    fragment = data[cut:]
    try:
        complete = isinstance(json.loads(fragment), dict)
    except ValueError:
        complete = False
    with writing_to(path), os.fdopen(open_in_place(path, os.O_RDWR), "r+b") as handle:
        if complete:
            handle.seek(0, os.SEEK_END)
            handle.write(b"\n")
        else:
            handle.truncate(cut)
        handle.flush()
        os.fsync(handle.fileno())
    text = fragment[:200].decode("utf-8", errors="replace")
    if complete:
        return f"added the missing newline after the last line of {path.name}"
    return f"removed an unfinished last line of {path.name} ({len(fragment)} bytes: {text!r})"


def registry_entry(
    challenger: Mapping[str, Any], decision: Decision, promoted: bool, promotion_id: str | None = None
) -> dict[str, Any]:
    """The registry line for one decision (``promotion_id``: only for promotions)."""
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": challenger["run"],
        "target": challenger["target"],
        "model": challenger["model"],
        "macro_f1": challenger["metrics"]["macro_f1"],
        "accuracy": challenger["metrics"]["accuracy"],
        "champion_before": decision.champion_before,
        "decision": "promoted" if promoted else "kept",
        "reason": decision.reason,
        "forced": decision.forced,
        "split_fingerprint": challenger["split_fingerprint"],
        "data_fingerprint": challenger["data_fingerprint"],
        "promotion_id": promotion_id,
    }


def reconciled_entry(record: Mapping[str, Any], champion_before: str | None, reason: str) -> dict[str, Any]:
    """A ``promoted`` line written by reconciliation from the champion's own ``champion.json``
    (marked ``reconciled``: no gate decision of this version wrote it)."""
    metrics = record.get("metrics") or {}
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": record["run"],
        "target": record.get("target"),
        "model": record.get("model"),
        "macro_f1": metrics.get("macro_f1"),
        "accuracy": metrics.get("accuracy"),
        "champion_before": champion_before,
        "decision": "promoted",
        "reason": reason,
        "forced": bool(record.get("forced", False)),
        "split_fingerprint": record.get("split_fingerprint"),
        "data_fingerprint": record.get("data_fingerprint"),
        "promotion_id": record.get("promotion_id"),
        "reconciled": True,
    }
