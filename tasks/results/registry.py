"""The champion registry: ``<output-dir>/registry.jsonl``, one JSON line per gate decision
(promoted or kept, and why), appended and synced so it is the audit trail of the champion."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.layout import OutputDir

if TYPE_CHECKING:
    from tasks.results.champion import Decision


def append_registry(output_dir: Path, entry: Mapping[str, Any]) -> Path:
    """Append one decision as a JSON line (flushed and synced: the registry is the audit trail)."""
    path = OutputDir(output_dir).registry
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(dict(entry), default=str, sort_keys=False) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def read_registry(output_dir: Path) -> list[dict[str, Any]]:
    """Every decision so far, oldest first."""
    path = OutputDir(output_dir).registry
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def registry_entry(challenger: Mapping[str, Any], decision: Decision, promoted: bool) -> dict[str, Any]:
    """The registry line for one decision."""
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
    }
