"""What a run measured: its data source and size, the settings that decide the scores, and which
stage of the transfer model was published. Shown at the top of the run report and in the console
summary, so that a score is never read without what it was measured on (a user's first run on
the embedded synthetic sample must not look like a result on real photos).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.data.columns import ROLE_HOLDOUT, ROLE_TEST, ROLE_TRAIN
from tasks.layout import RunFolder

SYNTHETIC_CAVEAT = (
    "The embedded sample is synthetic (procedural drawings of subjects in clutter): its scores show the "
    "pipeline works and let recipes be compared, and say nothing about accuracy on real photos."
)


def run_provenance(table: Any, run: RunFolder, data_dir: Path, synthetic: bool, settings: Mapping[str, Any]) -> dict:
    """The provenance record of a run: ``table`` is its split table (one row per image, with roles)."""
    roles = table["role"].value_counts().to_dict()
    record: dict[str, Any] = {
        "data_source": "embedded synthetic sample" if synthetic else "data directory",
        "data_dir": str(data_dir),
        "images": {role: int(roles.get(role, 0)) for role in (ROLE_TRAIN, ROLE_HOLDOUT, ROLE_TEST)},
        "settings": dict(settings),
    }
    if run.training_history.is_file():
        history = json.loads(run.training_history.read_text(encoding="utf-8"))
        if "published" in history:
            record["transfer"] = {"published": history["published"], "reason": history.get("reason", "")}
    if synthetic:
        record["caveat"] = SYNTHETIC_CAVEAT
    return record


def provenance_lines(record: Mapping[str, Any]) -> list[str]:
    """The record as a few plain lines (markdown-safe, used by the report and the console)."""
    images = record["images"]
    settings = ", ".join(f"{key} {value}" for key, value in record["settings"].items())
    lines = [
        f"Data: {record['data_source']} ({record['data_dir']}): {images[ROLE_TRAIN]:,} training, "
        f"{images[ROLE_HOLDOUT]:,} hold-out and {images[ROLE_TEST]:,} test images.",
        f"Settings: {settings}.",
    ]
    transfer = record.get("transfer")
    if transfer:
        lines.append(f"Transfer model published: {transfer['published']} ({transfer['reason']}).")
    if record.get("caveat"):
        lines.append(f"Note: {record['caveat']}")
    return lines
