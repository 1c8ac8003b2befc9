"""Logging that goes to the Prefect run log inside a run and to standard logging outside one."""

from __future__ import annotations

import logging
from typing import Any


def get_logger(name: str = "living_things") -> Any:
    """Prefect's run logger when called inside a flow or task run, else a standard logger."""
    try:
        from prefect.exceptions import MissingContextError
        from prefect.logging import get_run_logger

        try:
            return get_run_logger()
        except MissingContextError:
            pass
    except ImportError:  # pragma: no cover - prefect is a hard dependency
        pass
    return logging.getLogger(name)
