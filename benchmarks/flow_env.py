"""The environment benchmarks run ``python -m flows.full`` in: offline, quiet, own Prefect home."""

from __future__ import annotations

import os
from pathlib import Path


def flow_env(work: Path) -> dict[str, str]:
    """An offline, quiet environment with a Prefect home of the benchmark's own under ``work``."""
    env = {
        **os.environ,
        "PREFECT_HOME": str(work / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MPLBACKEND": "Agg",
    }
    env.pop("PREFECT_API_URL", None)  # the ephemeral server, as for a user without one
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    return env
