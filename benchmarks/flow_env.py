"""How benchmarks run ``python -m flows.full``: in an offline, quiet environment with a Prefect
home of their own, with the flow's flags given after ``--`` on the benchmark's command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def split_flow_args(argv: list[str] | None) -> tuple[list[str], list[str]]:
    """(the benchmark's own arguments, the flow flags after ``--``); ``None``: ``sys.argv[1:]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        return argv, []
    split = argv.index("--")
    return argv[:split], argv[split + 1 :]


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
