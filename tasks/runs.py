"""Run folders: one per pipeline run under ``<output-dir>/runs/``, never inside the data directory."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path


def new_run_dir(output_dir: Path) -> Path:
    """Create ``<output-dir>/runs/<YYYYmmdd-HHMMSS>-<6 hex>/``; names sort by start time (UTC)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = Path(output_dir).expanduser().resolve() / "runs" / f"{stamp}-{secrets.token_hex(3)}"
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir
