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


def printable(text: object) -> str:
    """``text`` with its control characters escaped as ``repr`` escapes them, without the quotes.

    File names come from the data and from prediction inputs: a name holding a newline would forge
    a second log line, and an escape sequence (``\\x1b[...``) would repaint the user's terminal.
    Printable characters, non-ASCII letters included, are kept as they are.
    """
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def printable_lines(text: object) -> str:
    """`printable` line by line: a message of several lines (a validation failure lists its rules one
    a line) keeps its line breaks, while each line's control characters are escaped. Names that may
    hold a newline must be escaped with `printable` where the message is built."""
    return "\n".join(printable(line) for line in str(text).split("\n"))
